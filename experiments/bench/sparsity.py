"""make bench-sparsity: where does the CSR SpMM beat the dense GEMM? A density sweep on resnet18.

For each distinct conv layer of the model (resnet18 by default) and each GEMM algorithm
(im2col, kn2row), the filter is pruned at random (unstructured, exactly the given fraction of
nonzeros kept) at each density from 1.0 down to 0.05, and the layer is timed with the dense GEMM
(vendor: BLAS / cuBLAS; on a kernel runtime also our blocked GEMM at --tile) and with the sparse
one (gemm='sparse': scipy's CSR product on the numpy backend, hip/spmm_csr.hip on a GPU), by the
protocol of docs/design.md: each variant is first checked against float64 PyTorch on the same pruned
filter (a variant over tolerance is reported as failed, never timed).

The crossover density of a layer is the highest density of the sweep at which the SpMM is faster
than the best dense GEMM. The whole-model crossover sums every layer (times the number of layers
sharing its shape) per density: it is the threshold that ``gemm='auto_sparse'`` should use on that
device (``SPARSE_DENSITY_THRESHOLD`` in experiments/conv/sparse.py).

    python -m experiments.bench.sparsity [--model resnet18] [--densities 1 0.5 ...] [--input-size 224]
                                         [--batch 1] [--backend auto] [--out results/x.md]
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from experiments.bench import document
from experiments.bench.layers import Bench, distinct_conv_layers
from experiments.conv import Variant
from experiments.conv.api import validate
from experiments.conv.plan import ConvPlan
from experiments.conv.sparse import SPARSE_DENSITY_THRESHOLD
from experiments.conv.tolerance import RELATIVE_TOLERANCE, relative_error
from experiments.measure.timing import Protocol, measure
from experiments.runtime import device_memory

DENSITIES = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05)
# Shorter than bench-layers' protocol: this sweep times 2 algorithms x 2-3 GEMMs x 11 densities per layer.
PROTOCOL = Protocol(warmup=3, min_samples=5, min_time_s=0.1, max_time_s=2.0)
TOLERANCE = RELATIVE_TOLERANCE["fp32"]


def prune(w: np.ndarray, density: float, rng: np.random.Generator) -> np.ndarray:
    """w with all but round(density * size) entries, chosen at random, set to zero."""
    keep = int(round(density * w.size))
    mask = np.zeros(w.size, bool)
    mask[rng.permutation(w.size)[:keep]] = True
    return np.where(mask.reshape(w.shape), w, np.float32(0))


class SparsityBench(Bench):
    def __init__(self, backend: str, tile: int):
        super().__init__(backend)
        self.dense_gemms = [("vendor", None)] + ([("blocked", tile)] if self.runtime.has_kernels else [])

    def _time(self, fn, label: str) -> float:
        """Median ms by this benchmark's protocol; noisy labels (IQR/median > 10%) are collected."""
        m = measure(fn, PROTOCOL, self.clock, label, first_call_s=self.clock.time(fn))
        if m.noisy:
            self.noisy.append(label)
        return m.median * 1e3

    def layer(self, g, densities, name: str = "") -> list[dict]:
        """One row per (algorithm, density): median ms of each dense GEMM and of the SpMM."""
        x = self.rng.standard_normal((g.batch, g.in_channels, g.in_h, g.in_w), dtype=np.float32)
        w_full = self.rng.standard_normal((g.out_channels, g.group_in_channels, g.kernel_h, g.kernel_w),
                                          dtype=np.float32)
        conv_args = dict(stride=g.stride, padding=g.padding, dilation=g.dilation, groups=g.groups)
        xd = self.xp.asarray(x)
        xt, wt = (torch.from_numpy(a).to(self.torch_device) for a in (x, w_full))   # copied before timing
        rows = []
        pytorch = self._time(lambda: F.conv2d(xt, wt, **conv_args), f"{name}/pytorch")
        for density in densities:
            w = prune(w_full, density, self.rng)
            reference = F.conv2d(torch.from_numpy(x).double(), torch.from_numpy(w).double(), **conv_args).numpy()
            for algo in ("im2col", "kn2row"):
                row = {"algo": algo, "density": density, "pytorch (dense)": pytorch}
                for gemm, tile in self.dense_gemms + [("sparse", None)]:
                    variant = Variant.of(algo, gemm, tile)
                    label = variant.gemm_label
                    plan = ConvPlan.build(self.xp.asarray(w), None, g.stride, g.padding, g.dilation, g.groups,
                                          variant, self.runtime)
                    y = plan(xd)
                    err = relative_error(y if isinstance(y, np.ndarray) else y.get(), reference)
                    row[label] = (f"FAILED err={err:.1e}" if err > TOLERANCE
                                  else self._time(lambda: plan(xd), f"{name}/{algo}/{label}@{density}"))
                rows.append(row)
        return rows


def crossover(densities, ratios) -> float:
    """The highest density of the sweep at which, and at every lower density, the SpMM beat the best
    dense GEMM (ratio sparse/dense < 1); nan when it lost even at the lowest density. Requiring every
    lower density to win too keeps one noisy win at a high density from moving the crossover."""
    found = float("nan")
    for density, ratio in sorted(zip(densities, ratios)):
        if not ratio < 1:
            break
        found = float(density)
    return found


def run(bench: SparsityBench, model: str, batch: int, input_size: int, densities) -> pd.DataFrame:
    rows = []
    for name, g, count in distinct_conv_layers(model, batch, input_size):
        print(f"  {model} {name} ...", file=sys.stderr, flush=True)
        for row in bench.layer(g, densities, name):
            rows.append({"layer": name, "layers": count,
                         "shape": f"{g.in_channels}->{g.out_channels} {g.in_h}x{g.in_w} k{g.kernel_h} s{g.stride[0]}",
                         **row})
        device_memory.release(bench.runtime)   # each layer starts from an empty pool
    frame = pd.DataFrame(rows)
    dense_cols = [c for c in frame.columns if c in ("vendor",) or c.startswith("blocked")]
    numeric = frame[dense_cols + ["sparse"]].apply(pd.to_numeric, errors="coerce")
    frame["best dense"] = numeric[dense_cols].min(axis=1)
    frame["sparse"] = numeric["sparse"]
    frame["sparse/dense"] = frame["sparse"] / frame["best dense"]
    return frame


def tables(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(sparse/dense ratio per layer and density, crossover per layer, whole-model totals per density)."""
    ratio = frame.pivot_table(index=["layer", "shape", "algo"], columns="density", values="sparse/dense",
                              sort=False)
    ratio = ratio[sorted(ratio.columns, reverse=True)]
    ratio.columns = [f"d={d:g}" for d in ratio.columns]
    cross = (frame.groupby(["layer", "shape", "algo"], sort=False)
             .apply(lambda part: crossover(part["density"], part["sparse/dense"]), include_groups=False)
             .rename("crossover density").reset_index())
    weighted = frame.assign(dense_total=frame["best dense"] * frame["layers"],
                            sparse_total=frame["sparse"] * frame["layers"])
    totals = weighted.groupby(["algo", "density"], sort=False)[["dense_total", "sparse_total"]].sum().reset_index()
    totals["sparse/dense"] = totals["sparse_total"] / totals["dense_total"]
    totals = totals.rename(columns={"dense_total": "all layers, best dense ms", "sparse_total": "all layers, sparse ms"})
    return ratio.reset_index(), cross, totals


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--densities", nargs="+", type=float, default=list(DENSITIES))
    args = document.parse_args(parser, argv, tile=True)
    validate("im2col", "sparse", args.tile, args.backend)
    bench = SparsityBench(args.backend, args.tile)
    kind = "gpu" if bench.runtime.is_gpu else "cpu"
    header = document.header(
        "sparsity", bench.runtime, argv,
        f"model {args.model}, batch {args.batch}, input {args.input_size}x{args.input_size}; "
        f"protocol {PROTOCOL}; times are medians in ms; sparse = "
        + ("hip/spmm_csr.hip" if bench.runtime.has_kernels else "scipy.sparse CSR (single thread)")
        + "; dense = " + ", ".join(Variant.of("im2col", g, t).gemm_label for g, t in bench.dense_gemms))
    print(header)
    frame = run(bench, args.model, args.batch, args.input_size, args.densities)
    ratio, cross, totals = tables(frame)
    summary = []
    for algo, part in totals.groupby("algo", sort=False):
        found = crossover(part["density"], part["sparse/dense"])
        summary.append(f"- {algo}: whole-model crossover density {found:g} "
                       f"(median of the layers' crossovers {cross[cross['algo'] == algo]['crossover density'].median():g}); "
                       f"gemm='auto_sparse' uses SPARSE_DENSITY_THRESHOLD[{kind!r}] = {SPARSE_DENSITY_THRESHOLD[kind]:g}")
    sections = [header, "## Summary\n", "\n".join(summary),
                "\n## Sparse / best dense time per layer (below 1: the SpMM wins)\n",
                ratio.to_markdown(index=False, floatfmt=".3g"),
                "\n## Crossover density per layer: the SpMM won at it and every lower density (nan: not even at the lowest)\n", cross.to_markdown(index=False, floatfmt=".3g"),
                "\n## Whole model (every conv layer, times the layers sharing its shape)\n",
                totals.to_markdown(index=False, floatfmt=".4g"),
                "\n## Raw medians (ms)\n", frame.drop(columns=["sparse/dense"]).to_markdown(index=False, floatfmt=".4g")]
    document.emit(sections, args.out, bench.noisy)
    return 0


if __name__ == "__main__":
    sys.exit(main())
