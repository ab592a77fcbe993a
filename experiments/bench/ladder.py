"""The GEMM ladder on a GPU: every rung and tile against cuBLAS FP32 (TF32 off), and the memory-bound
kernels (im2col, kn2row's shift-add, depthwise) as fractions of the measured device-to-device copy
bandwidth.

    python -m experiments.bench.ladder [--backend gpu] [--size 4096] [--batches 1 32] [--quick] [--out results/x.md]
    python -m experiments.bench.ladder --backend emulator --size 40 --input-size 32 --batches 1 2 --copy-mb 4

GEMMs: size^3, and the im2col GEMMs of the models' distinct conv layers (resnet18 and vgg16) at each
batch (filter M x K times batch x K x N). Every rung is checked against float64 before it is timed
(an error above GEMM_TOLERANCE, 1e-5 relative, is reported as FAILED, never timed). On the emulator the same code runs,
timed by the CPU clock: its numbers check the code path and are EMULATED, never performance. With
--out the file is rewritten after every row, so a run stopped midway keeps what it measured.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from experiments.bench import document
from experiments.bench.layers import distinct_conv_layers, to_host
from experiments.conv import layer_cost, ladder
from experiments.conv.kernel_launch import KernelLauncher
from experiments.conv.tolerance import GEMM_TOLERANCE, relative_error
from experiments.conv.variant import Variant
from experiments.measure.timing import CpuClock, EventClock, Protocol, measure
from experiments.runtime import device_memory, resolve

PROTOCOL = Protocol(warmup=5, min_samples=10, min_time_s=0.2, max_time_s=3.0)
QUICK = Protocol(warmup=2, min_samples=5, min_time_s=0.02, max_time_s=1.0)   # make gpu-check
COPY_MB = 1024   # the device-to-device copy that measures the bandwidth ceiling


class LadderBench:
    def __init__(self, backend: str, protocol: Protocol = PROTOCOL, copy_mb: int = COPY_MB):
        self.runtime, self.protocol, self.copy_bytes = resolve(backend), protocol, copy_mb << 20
        if not self.runtime.has_kernels:
            raise SystemExit("bench-ladder: the ladder runs on a kernel runtime: --backend gpu (or emulator, "
                             "emulated times)")
        if os.environ.get("CUPY_TF32", "0") != "0":
            raise SystemExit("bench-ladder: CUPY_TF32 is set; the vendor baseline is FP32 with TF32 off")
        self.xp = self.runtime.xp
        self.clock = EventClock("cupy") if self.runtime.is_gpu else CpuClock(self.runtime.synchronize)
        self.rng = np.random.default_rng(0)

    def _ms(self, fn) -> float:
        return measure(fn, self.protocol, self.clock, "ladder", first_call_s=self.clock.time(fn)).median * 1e3

    def gemm_row(self, label: str, m: int, n: int, k: int, batch: int) -> dict:
        a = self.rng.standard_normal((m, k), dtype=np.float32)
        b = self.rng.standard_normal((batch, k, n), dtype=np.float32)
        ad, bd = self.xp.asarray(a), self.xp.asarray(b)
        reference = to_host(self.xp.matmul(ad.astype(np.float64), bd.astype(np.float64)))   # on the device
        vendor = self._ms(lambda: self.xp.matmul(ad, bd))
        row: dict = {"gemm": label, "M": m, "N": n, "K": k, "batch": batch, "vendor ms": vendor}
        for rung in ladder.RUNGS:
            for tile in ladder.TILES:
                name = f"{rung.name}-t{tile}"
                c = ladder.gemm(self.runtime, rung.name, tile, ad, bd, 1)
                err = relative_error(to_host(c), reference)
                if not err <= GEMM_TOLERANCE:
                    row[name] = f"FAILED err={err:.1e}"
                else:
                    row[name] = vendor / self._ms(lambda: ladder.gemm(self.runtime, rung.name, tile, ad, bd, 1))
        return row

    def copy_bandwidth(self) -> float:
        """Device-to-device copy, GB/s counting read and write (the ceiling of a copy kernel)."""
        src = self.xp.empty(self.copy_bytes // 4, dtype=self.xp.float32)
        dst = self.xp.empty_like(src)
        return 2 * self.copy_bytes / (self._ms(lambda: dst.__setitem__(Ellipsis, src)) * 1e-3) / 1e9

    def memory_row(self, label: str, g, copy_gbs: float) -> dict:
        """im2col, shift-add and depthwise on one layer's shape: bytes read + written / time vs copy."""
        launcher = KernelLauncher(self.runtime, Variant.of("im2col", "vendor"))
        x = self.xp.asarray(self.rng.standard_normal((g.batch, g.in_channels, g.in_h, g.in_w), dtype=np.float32))
        partial = self.xp.asarray(self.rng.standard_normal(
            (g.batch, g.out_channels * g.taps, g.in_h * g.in_w), dtype=np.float32))
        w = self.xp.asarray(self.rng.standard_normal((g.in_channels, 1, g.kernel_h, g.kernel_w), dtype=np.float32))
        from experiments.conv.geometry import ConvGeometry
        dw = ConvGeometry.from_shapes((g.batch, g.in_channels, g.in_h, g.in_w), (g.in_channels, 1, g.kernel_h,
                                      g.kernel_w), g.stride, g.padding, g.dilation, g.in_channels)
        out_elems = g.batch * g.out_h * g.out_w
        kernels = {
            "im2col": (lambda: launcher.im2col(x, g), 4 * (x.size + out_elems * g.in_channels * g.taps)),
            "shift-add": (lambda: launcher.shift_add(partial, g), 4 * (partial.size + out_elems * g.out_channels)),
            "depthwise": (lambda: launcher.depthwise(x, w, dw), 4 * (x.size + w.size + out_elems * g.in_channels)),
        }
        row: dict = {"layer": label}
        for name, (fn, nbytes) in kernels.items():
            fn()   # compiles; correctness of these kernels: tests/test_conv_kernels.py
            row[name] = (nbytes / (self._ms(fn) * 1e-3) / 1e9) / copy_gbs
        return row


def gemm_shapes(models: list[str], batches: list[int], input_size: int, size: int, max_layers: int | None = None):
    """(label, M, N, K, batch): the square GEMM, then each model's distinct non-grouped layers' im2col GEMM
    (grouped and depthwise layers run no single GEMM) at each batch."""
    shapes = [(f"square {size}", size, size, size, 1)]
    im2col = Variant.of("im2col", "vendor")
    for model in models:
        layers = [(name, layer_cost(g, im2col)) for name, g, _ in distinct_conv_layers(model, 1, input_size, max_layers)
                  if g.groups == 1]
        shapes += [(f"{model} {name}", cost.gemm_m, cost.gemm_n, cost.gemm_k, batch)
                   for batch in batches for name, cost in layers]
    return shapes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="gpu", choices=["gpu", "emulator"])
    parser.add_argument("--size", type=int, default=4096, help="side of the square GEMM")
    parser.add_argument("--models", nargs="*", default=["resnet18", "vgg16"])
    parser.add_argument("--max-layers", type=int, help="only the first N distinct conv layers of each model")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--copy-mb", type=int, default=COPY_MB, help="size of the copy that measures the bandwidth")
    parser.add_argument("--quick", action="store_true", help=f"shorter protocol ({QUICK}), for make gpu-check")
    parser.add_argument("--out", help="also write the tables as markdown to this file")
    args = parser.parse_args(argv)
    for option in ("max_layers", "copy_mb"):
        value = getattr(args, option)
        if value is not None and value < 1:
            parser.error(f"--{option.replace('_', '-')} {value}: give at least 1")
    bench = LadderBench(args.backend, QUICK if args.quick else PROTOCOL, args.copy_mb)
    unit = "rung time as a fraction of the vendor GEMM's throughput (vendor ms / rung ms; cuBLAS on NVIDIA)"
    if not bench.runtime.is_gpu:
        unit += "; EMULATED times: they check the code path, they are not performance"
    header = document.header("ladder", bench.runtime, argv, f"protocol {bench.protocol}; {unit}")
    print(header, file=sys.stderr)
    tables = document.Tables(header, args.out)
    for shape in gemm_shapes(args.models, args.batches, args.input_size, args.size, args.max_layers):
        print(f"  GEMM {shape[0]} batch {shape[-1]} ...", file=sys.stderr, flush=True)
        tables.add("GEMM ladder vs the vendor GEMM, FP32 (TF32 off)", bench.gemm_row(*shape))
        device_memory.release(bench.runtime)   # each shape starts from an empty pool
    copy_gbs = bench.copy_bandwidth()
    layers = [(f"{model} {name} b{batch}", g) for model in args.models for batch in args.batches
              for name, g, _ in distinct_conv_layers(model, batch, args.input_size, args.max_layers)
              if g.groups == 1 and g.taps > 1]
    memory = (f"Memory-bound kernels as a fraction of device-to-device copy bandwidth ({copy_gbs:.3g} GB/s, "
              f"read + write, {args.copy_mb} MB)")
    for label, g in layers:
        print(f"  memory-bound kernels on {label} ...", file=sys.stderr, flush=True)
        tables.add(memory, bench.memory_row(label, g, copy_gbs))
        device_memory.release(bench.runtime)
    tables.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
