"""make bench-grouped: grouped and depthwise models on our kernels against PyTorch eager.

For mobilenet_v2 (depthwise-separable: depthwise 3x3 + pointwise), shufflenet_v2_x1_0 (depthwise
3x3 + pointwise) and resnext50_32x4d (grouped 3x3, 32 groups) this measures

1. the whole model end to end: PyTorch eager against the same model with every nn.Conv2d swapped
   for each convbench variant (swap_conv2d), both checked against the float64 model first;
2. every distinct grouped layer (groups > 1): torch.nn.functional.conv2d against each variant's
   prepared plan, naming the kernel that ran (depthwise layers run hip/depthwise_conv.hip, or its
   numpy reference, whatever the algorithm; grouped layers run all groups' GEMMs in one launch).

Same protocol as bench-layers (correctness before timing, warm-up, minimum time and samples);
speedup = PyTorch's median / ours, both measured in this run.

    python -m experiments.bench.grouped [--models ...] [--input-size 224] [--batch 1]
                                        [--backend auto] [--out results/x.md]
"""
from __future__ import annotations

import argparse
import copy
import sys

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from experiments.bench import document
from experiments.bench.layers import Bench, distinct_conv_layers, variants_for
from experiments.conv import Variant, layer_cost, swap_variant
from experiments.conv.api import validate
from experiments.conv.plan import ConvPlan
from experiments.conv.tolerance import RELATIVE_TOLERANCE, relative_error
from experiments.harness.models import build_model
from experiments.runtime import device_memory

MODELS = ("mobilenet_v2", "shufflenet_v2_x1_0", "resnext50_32x4d")
TOLERANCE = RELATIVE_TOLERANCE["fp32"]


def _host(y) -> np.ndarray:
    if isinstance(y, torch.Tensor):
        return y.detach().cpu().numpy()
    return y if isinstance(y, np.ndarray) else y.get()


class GroupedBench(Bench):
    def __init__(self, backend: str, tile: int):
        super().__init__(backend)
        # blocked at one tile (bench-layers sweeps the tiles), vendor, and scalar
        self.variants = [v for v in variants_for(self.runtime) if v.gemm != "blocked" or v.tile == tile]

    def model(self, name: str, batch: int, input_size: int) -> dict:
        """Median ms of PyTorch eager and of each variant end to end, with their errors."""
        model = build_model(name, None, seed=0).to(self.torch_device)
        x = torch.randn(batch, 3, input_size, input_size, generator=torch.Generator().manual_seed(0))
        x = x.to(self.torch_device)
        with torch.inference_mode():
            reference = _host(copy.deepcopy(model).double()(x.double()))
            row: dict[str, float | str] = {
                "model": name, "pytorch": self._time(lambda: model(x), f"{name}/pytorch"),
                "pytorch err": relative_error(_host(model(x)), reference)}
            errors = []
            for v in self.variants:
                swapped = swap_variant(copy.deepcopy(model), v, self.runtime)
                err = relative_error(_host(swapped(x)), reference)
                errors.append(err)
                row[v.label] = (f"FAILED err={err:.1e}" if err > TOLERANCE
                                else self._time(lambda: swapped(x), f"{name}/{v.label}"))
        numeric = {k: row[k] for k in (v.label for v in self.variants) if isinstance(row[k], float)}
        best = min(numeric, key=numeric.get)
        row.update({"max err (ours)": max(errors), "best": best, "speedup (pytorch/best)": row["pytorch"] / numeric[best]})
        return row

    def layer(self, g, name: str = "") -> dict:
        """Median ms of F.conv2d and of each variant on one grouped layer; the variant each ran."""
        x = self.rng.standard_normal((g.batch, g.in_channels, g.in_h, g.in_w), dtype=np.float32)
        w = self.rng.standard_normal((g.out_channels, g.group_in_channels, g.kernel_h, g.kernel_w), dtype=np.float32)
        conv_args = dict(stride=g.stride, padding=g.padding, dilation=g.dilation, groups=g.groups)
        reference = F.conv2d(torch.from_numpy(x).double(), torch.from_numpy(w).double(), **conv_args).numpy()
        xt, wt = torch.from_numpy(x).to(self.torch_device), torch.from_numpy(w).to(self.torch_device)
        row: dict[str, float | str] = {"pytorch": self._time(lambda: F.conv2d(xt, wt, **conv_args), f"{name}/pytorch")}
        xd, ran, depthwise_ms = self.xp.asarray(x), [], None
        for v in self.variants:
            if g.is_depthwise and depthwise_ms is not None:   # every algorithm runs the same depthwise kernel
                row[v.label] = depthwise_ms
                continue
            plan = ConvPlan.build(self.xp.asarray(w), None, g.stride, g.padding, g.dilation, g.groups,
                                  v, self.runtime)
            err = relative_error(_host(plan(xd)), reference)
            ran.append(plan.last_cost.variant)
            row[v.label] = (f"FAILED err={err:.1e}" if err > TOLERANCE
                            else self._time(lambda: plan(xd), f"{name}/{v.label}"))
            if g.is_depthwise and isinstance(row[v.label], float):
                depthwise_ms = row[v.label]
        row["ran"] = " ".join(dict.fromkeys(ran))
        return row


def layer_table(bench: GroupedBench, models, batch: int, input_size: int) -> pd.DataFrame:
    rows = []
    labels = [v.label for v in bench.variants]
    for model in models:
        for name, g, count in distinct_conv_layers(model, batch, input_size):
            if g.groups == 1:
                continue
            print(f"  {model} {name} ...", file=sys.stderr, flush=True)
            times = bench.layer(g, f"{model}/{name}")
            device_memory.release(bench.runtime)   # each layer starts from an empty pool
            numeric = {k: times[k] for k in labels if isinstance(times[k], float)}
            best = "depthwise (every algorithm)" if g.is_depthwise else min(numeric, key=numeric.get)
            best_ms = min(numeric.values())
            rows.append({
                "model": model, "layer": name, "layers": count,
                "shape": f"{g.in_channels}->{g.out_channels} g{g.groups} {g.in_h}x{g.in_w} k{g.kernel_h} s{g.stride[0]}",
                "GFLOP": layer_cost(g, Variant("pytorch")).flops / 1e9, **times,
                "best": best, "speedup (pytorch/best)": times["pytorch"] / best_ms})
    return pd.DataFrame(rows)


def totals(layers: pd.DataFrame, labels) -> pd.DataFrame:
    """Per model: the grouped layers' time summed (times the layers sharing each shape), ours against PyTorch."""
    rows = []
    for model, part in layers.groupby("model", sort=False):
        row = {"model": model, "grouped layers": int(part["layers"].sum()),
               "pytorch": float((part["pytorch"] * part["layers"]).sum())}
        for label in labels:
            values = pd.to_numeric(part[label], errors="coerce")
            row[label] = float((values * part["layers"]).sum()) if values.notna().all() else np.nan
        best = min(labels, key=lambda label: row[label] if not np.isnan(row[label]) else np.inf)
        row.update({"best": best, "speedup (pytorch/best)": row["pytorch"] / row[best]})
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    args = document.parse_args(parser, argv, tile=True)
    validate("im2col", "vendor", args.tile, args.backend)
    bench = GroupedBench(args.backend, args.tile)
    header = document.header("grouped", bench.runtime, argv,
                             f"batch {args.batch}, input {args.input_size}x{args.input_size}; protocol as bench-layers; "
                             f"times are medians in ms; speedup = PyTorch eager / ours")
    print(header)
    labels = [v.label for v in bench.variants]
    models = []
    for name in args.models:
        print(f"  {name} end to end ...", file=sys.stderr, flush=True)
        models.append(bench.model(name, args.batch, args.input_size))
    layers = layer_table(bench, args.models, args.batch, args.input_size)
    sections = [header, "## Whole models, end to end\n", pd.DataFrame(models).to_markdown(index=False, floatfmt=".3g"),
                "\n## Grouped layers only, summed over each model\n",
                totals(layers, labels).to_markdown(index=False, floatfmt=".3g"),
                "\n## Each distinct grouped layer\n", layers.to_markdown(index=False, floatfmt=".3g")]
    document.emit(sections, args.out, bench.noisy)
    return 0


if __name__ == "__main__":
    sys.exit(main())
