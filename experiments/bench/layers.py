"""make bench-layers: every algorithm and GEMM back-end on the conv layers of real models.

For each distinct conv layer of the models (resnet18 and vgg16 by default) this times
PyTorch's conv2d (the baseline, in the same run) and every convbench variant the backend
offers, by the protocol of docs/design.md: correctness against float64 PyTorch first (a variant
over tolerance is reported as failed, never timed), then warm-up, then timed calls until the
protocol's minimum time and sample count are met. On a kernel runtime it also times the blocked
GEMM against the vendor GEMM (cuBLAS FP32, TF32 off) at --gemm-size^3 (4096) and on the im2col GEMMs
of the layers the conv table covers (depthwise layers run no GEMM).

    python -m experiments.bench.layers [--models resnet18 vgg16] [--input-size 224]
                                       [--batch 1] [--backend auto] [--out results/x.md]

--backend emulator runs the same code on the CPU (make gpu-check's rehearsal): its times are
emulated, never performance. With --out, the file is rewritten after every layer and GEMM, so a
run stopped midway keeps what it measured.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from experiments.bench import document
from experiments.conv import TILES, ConvGeometry, Variant, layer_cost
from experiments.conv.api import validate
from experiments.conv.kernel_launch import KernelLauncher
from experiments.conv.plan import ConvPlan
from experiments.conv.variant import GEMM_ALGORITHMS
from experiments.conv.tolerance import GEMM_TOLERANCE, RELATIVE_TOLERANCE, relative_error
from experiments.conv.swap import conv_inputs, conv_layers
from experiments.harness.models import build_model, make_input
from experiments.measure.timing import CpuClock, EventClock, Measurement, Protocol, measure
from experiments.runtime import device_memory, resolve

IM2COL_VENDOR = Variant.of("im2col", "vendor").label
PROTOCOL = Protocol(warmup=10, min_samples=10, min_time_s=0.3, max_time_s=5.0)
QUICK_PROTOCOL = Protocol(warmup=3, min_samples=5, min_time_s=0.05, max_time_s=1.0)   # --quick (make gpu-check)
TOLERANCE = RELATIVE_TOLERANCE["fp32"]


def variants_for(runtime) -> list[Variant]:
    """Every fp32 (algorithm, GEMM, tile) the runtime can run; scalar has no GEMM, so it appears once."""
    gemms = [("blocked", t) for t in TILES] if runtime.has_kernels else []
    gemms.append(("vendor", None))
    return [Variant.of(a, g, t) for a in GEMM_ALGORITHMS for g, t in gemms] + [Variant.of("scalar")]


def distinct_conv_layers(model_name: str, batch: int, input_size: int,
                         max_layers: int | None = None) -> list[tuple[str, ConvGeometry, int]]:
    """(first layer name, geometry, how many layers share it) for each distinct conv of the model (the first
    ``max_layers`` of them), on the model's own input (3 x input_size^2 images; digits_cnn its 1 x 8 x 8 digits)."""
    model = build_model(model_name, None, seed=0)
    inputs = conv_inputs(model, make_input(batch, input_size, 0, model_name))
    seen: dict[ConvGeometry, list[str]] = {}
    for name, module in conv_layers(model):
        g = ConvGeometry.from_shapes(tuple(inputs[name].shape), module.weight.shape, module.stride, module.padding,
                                     module.dilation, module.groups)
        seen.setdefault(g, []).append(name)
    return [(names[0], g, len(names)) for g, names in seen.items()][:max_layers]


def to_host(array) -> np.ndarray:
    return array if isinstance(array, np.ndarray) else array.get()


class Bench:
    def __init__(self, backend: str, protocol: Protocol = PROTOCOL):
        self.runtime = resolve(backend)
        self.protocol = protocol
        self.xp = self.runtime.xp
        self.torch_device = "cuda" if self.runtime.is_gpu else "cpu"
        self.clock = EventClock("cupy") if self.runtime.is_gpu else CpuClock(self.runtime.synchronize)
        self.rng = np.random.default_rng(0)
        self.noisy: list[str] = []

    def _time(self, fn, label: str) -> float:
        """Median ms by the protocol; labels of noisy measurements (IQR/median > 10%) are collected."""
        first = self.clock.time(fn)
        m: Measurement = measure(fn, self.protocol, self.clock, label, first_call_s=first)
        if m.noisy:
            self.noisy.append(label)
        return m.median * 1e3

    def layer(self, g: ConvGeometry) -> dict[str, float | str]:
        """Median ms of PyTorch and of each variant on one layer (str for a failed variant)."""
        x = torch.from_numpy(self.rng.standard_normal((g.batch, g.in_channels, g.in_h, g.in_w), dtype=np.float32))
        w = torch.from_numpy(self.rng.standard_normal(
            (g.out_channels, g.in_channels, g.kernel_h, g.kernel_w), dtype=np.float32))
        conv_args = dict(stride=g.stride, padding=g.padding, dilation=g.dilation)
        reference = F.conv2d(x.double(), w.double(), **conv_args).numpy()
        xt, wt = x.to(self.torch_device), w.to(self.torch_device)
        row: dict[str, float | str] = {
            "pytorch": self._time(lambda: F.conv2d(xt, wt, **conv_args), "pytorch")}
        xd = self.xp.asarray(x.numpy())
        for v in variants_for(self.runtime):
            plan = ConvPlan.build(self.xp.asarray(w.numpy()), None, g.stride, g.padding, g.dilation, 1,
                                  v, self.runtime)
            y = plan(xd)
            err = relative_error(to_host(y), reference)
            if err > TOLERANCE:
                row[v.label] = f"FAILED err={err:.1e}"
                continue
            row[v.label] = self._time(lambda: plan(xd), v.label)
        return row

    def gemm(self, m: int, n: int, k: int) -> dict[str, float]:
        """Blocked GEMM at each tile against cupy.matmul (cuBLAS SGEMM; CuPy uses TF32 only if CUPY_TF32=1)."""
        a = self.xp.asarray(self.rng.standard_normal((m, k), dtype=np.float32))
        b = self.xp.asarray(self.rng.standard_normal((1, k, n), dtype=np.float32))
        reference = self.xp.matmul(a.astype(np.float64), b.astype(np.float64))
        row = {"vendor": self._time(lambda: self.xp.matmul(a, b), "vendor")}
        for tile in TILES:
            launcher = KernelLauncher(self.runtime, Variant.of("im2col", "blocked", tile))
            err = relative_error(to_host(launcher.gemm(a, b)), to_host(reference))
            if err > GEMM_TOLERANCE:
                raise AssertionError(f"blocked GEMM tile {tile} at {m}x{n}x{k}: relative error {err:.1e}")
            row[f"blocked-t{tile}"] = self._time(lambda: launcher.gemm(a, b), f"blocked-t{tile}")
        return row


def layer_rows(bench: Bench, models: list[str], batch: int, input_size: int,
               max_layers: int | None = None) -> Iterator[dict]:
    """One row per distinct non-grouped conv layer (grouped and depthwise layers: make bench-grouped)."""
    for model in models:
        for name, g, count in distinct_conv_layers(model, batch, input_size, max_layers):
            if g.groups != 1:
                continue
            print(f"  {model} {name} ...", file=sys.stderr, flush=True)
            bench.noisy = []
            times = bench.layer(g)
            device_memory.release(bench.runtime)   # each layer starts from an empty pool
            numeric = {k: v for k, v in times.items() if isinstance(v, float) and k != "pytorch"}
            best = min(numeric, key=numeric.get)
            yield {
                "model": model, "layer": name, "layers": count,
                "shape": f"{g.in_channels}->{g.out_channels} {g.in_h}x{g.in_w} k{g.kernel_h} s{g.stride[0]}",
                "GFLOP": layer_cost(g, Variant("pytorch")).flops / 1e9, **times,
                "best": best, "best/pytorch": numeric[best] / times["pytorch"],
                "im2col/pytorch": times[IM2COL_VENDOR] / times["pytorch"]
                if isinstance(times.get(IM2COL_VENDOR), float) else np.nan,
                "noisy (IQR>10%)": " ".join(bench.noisy),
            }


def gemm_shapes(models: list[str], batch: int, input_size: int, size: int,
                max_layers: int | None = None) -> list[tuple[str, int, int, int]]:
    """The square size^3 GEMM and the im2col GEMM of each layer of the conv table (grouped and depthwise
    layers run no single GEMM: theirs would be 0 x 0 x 0)."""
    shapes = [("square", size, size, size)]
    for model in models:
        for name, g, _ in distinct_conv_layers(model, batch, input_size, max_layers):
            if g.groups == 1:
                cost = layer_cost(g, Variant.of("im2col", "vendor"))
                shapes.append((f"{model} {name} im2col", cost.gemm_m, cost.gemm_n, cost.gemm_k))
    return shapes


def gemm_rows(bench: Bench, shapes: list[tuple[str, int, int, int]]) -> Iterator[dict]:
    for label, m, n, k in shapes:
        print(f"  GEMM {label} ...", file=sys.stderr, flush=True)
        bench.noisy = []
        times = bench.gemm(m, n, k)
        device_memory.release(bench.runtime)
        best_tile = min((t for t in times if t != "vendor"), key=times.get)
        yield {"gemm": label, "M": m, "N": n, "K": k, **times, "best blocked": best_tile,
               "blocked/vendor throughput": times["vendor"] / times[best_tile],
               "vendor TFLOP/s": 2 * m * n * k / times["vendor"] / 1e9,
               "noisy (IQR>10%)": " ".join(bench.noisy)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "vgg16"])
    parser.add_argument("--gemm-size", type=int, default=4096, help="side of the square GEMM (kernel runtimes)")
    parser.add_argument("--max-layers", type=int, help="only the first N distinct conv layers of each model "
                        "(grouped ones count, then are left out as always)")
    parser.add_argument("--quick", action="store_true", help=f"the shorter protocol {QUICK_PROTOCOL}")
    args = document.parse_args(parser, argv, emulator=True)
    if args.max_layers is not None and args.max_layers < 1:
        parser.error(f"--max-layers {args.max_layers}: give at least 1")
    validate("im2col", "vendor", None, args.backend)
    bench = Bench(args.backend, QUICK_PROTOCOL if args.quick else PROTOCOL)
    times = "times are medians in ms" + ("" if bench.runtime.is_gpu or not bench.runtime.has_kernels
                                         else ", EMULATED: they check the code path, they are not performance")
    header = document.header("layers", bench.runtime, argv,
                             f"batch {args.batch}, input {args.input_size}x{args.input_size}; protocol {bench.protocol}; "
                             f"{times}")
    print(header)
    tables = document.Tables(header, args.out)
    for row in layer_rows(bench, args.models, args.batch, args.input_size, args.max_layers):
        tables.add("Conv layers", row)
    if bench.runtime.has_kernels:
        for row in gemm_rows(bench, gemm_shapes(args.models, args.batch, args.input_size, args.gemm_size,
                                                  args.max_layers)):
            tables.add("Blocked GEMM vs vendor GEMM (FP32, TF32 off)", row)
    else:
        tables.note("Blocked GEMM vs vendor GEMM",
                    "The blocked GEMM needs a kernel runtime: GEMM comparison skipped on the numpy backend.")
    tables.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
