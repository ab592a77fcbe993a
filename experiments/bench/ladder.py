"""The GEMM ladder on a GPU: every rung and tile against cuBLAS FP32 (TF32 off), and the memory-bound
kernels (im2col, kn2row's shift-add, depthwise) as fractions of the measured device-to-device copy
bandwidth.

    python -m experiments.bench.ladder [--backend gpu] [--size 4096] [--batches 1 32] [--quick] [--out results/x.md]
    python -m experiments.bench.ladder --backend emulator --size 40 --input-size 32 --batches 1 2

GEMMs: size^3, and the im2col GEMMs of the models' distinct conv layers (resnet18 and vgg16) at each
batch (filter M x K times batch x K x N). Every rung is checked against float64 before it is timed
(an error above 1e-4 relative is reported as FAILED, never timed). On the emulator the same code runs
for correctness only: the tables show the errors, no times (emulated timings are not performance).
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import pandas as pd

from experiments.bench import document
from experiments.bench.layers import distinct_conv_layers
from experiments.conv import layer_cost, ladder
from experiments.conv.kernel_launch import KernelLauncher
from experiments.conv.tolerance import relative_error
from experiments.conv.variant import Variant
from experiments.harness.timing import CpuClock, EventClock, Protocol, measure
from experiments.runtime import device_memory, resolve

PROTOCOL = Protocol(warmup=5, min_samples=10, min_time_s=0.2, max_time_s=3.0)
QUICK = Protocol(warmup=2, min_samples=5, min_time_s=0.02, max_time_s=1.0)   # make gpu-check
GEMM_TOLERANCE = 1e-4
COPY_BYTES = 1 << 30


class LadderBench:
    def __init__(self, backend: str, protocol: Protocol = PROTOCOL):
        self.runtime, self.protocol = resolve(backend), protocol
        if not self.runtime.has_kernels:
            raise SystemExit("bench-ladder: the ladder runs on a kernel runtime: --backend gpu (or emulator, "
                             "correctness only)")
        if os.environ.get("CUPY_TF32", "0") != "0":
            raise SystemExit("bench-ladder: CUPY_TF32 is set; the vendor baseline is FP32 with TF32 off")
        self.timed = self.runtime.is_gpu
        self.xp = self.runtime.xp
        self.clock = EventClock("cupy") if self.timed else CpuClock(self.runtime.synchronize)
        self.rng = np.random.default_rng(0)

    def _ms(self, fn) -> float:
        return measure(fn, self.protocol, self.clock, "ladder", first_call_s=self.clock.time(fn)).median * 1e3

    def _host(self, array) -> np.ndarray:
        return array if isinstance(array, np.ndarray) else array.get()

    def gemm_row(self, label: str, m: int, n: int, k: int, batch: int) -> dict:
        a = self.rng.standard_normal((m, k), dtype=np.float32)
        b = self.rng.standard_normal((batch, k, n), dtype=np.float32)
        ad, bd = self.xp.asarray(a), self.xp.asarray(b)
        reference = self._host(self.xp.matmul(ad.astype(np.float64), bd.astype(np.float64)))   # on the device
        row: dict = {"gemm": label, "M": m, "N": n, "K": k, "batch": batch}
        vendor = self._ms(lambda: self.xp.matmul(ad, bd)) if self.timed else None
        if vendor is not None:
            row["cuBLAS ms"] = vendor
        for rung in ladder.RUNGS:
            for tile in ladder.TILES:
                name = f"{rung.name}-t{tile}"
                c = ladder.gemm(self.runtime, rung.name, tile, ad, bd, 1)
                err = relative_error(self._host(c), reference)
                if not err <= GEMM_TOLERANCE:
                    row[name] = f"FAILED err={err:.1e}"
                elif self.timed:
                    row[name] = vendor / self._ms(lambda: ladder.gemm(self.runtime, rung.name, tile, ad, bd, 1))
                else:
                    row[name] = f"ok {err:.0e}"
        return row

    def copy_bandwidth(self) -> float:
        """Device-to-device copy, GB/s counting read and write (the ceiling of a copy kernel)."""
        src = self.xp.empty(COPY_BYTES // 4, dtype=self.xp.float32)
        dst = self.xp.empty_like(src)
        return 2 * COPY_BYTES / (self._ms(lambda: dst.__setitem__(Ellipsis, src)) * 1e-3) / 1e9

    def memory_row(self, label: str, g, copy_gbs: float | None) -> dict:
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
            row[name] = (nbytes / (self._ms(fn) * 1e-3) / 1e9) / copy_gbs if self.timed else "ran"
        return row


def gemm_shapes(models: list[str], batches: list[int], input_size: int, size: int):
    shapes = [(f"square {size}", size, size, size, 1)]
    for model in models:
        for batch in batches:
            for name, g, _ in distinct_conv_layers(model, 1, input_size):
                if g.groups == 1:
                    cost = layer_cost(g, "im2col")
                    shapes.append((f"{model} {name}", cost.gemm_m, cost.gemm_n, cost.gemm_k, batch))
    return shapes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="gpu", choices=["gpu", "emulator"])
    parser.add_argument("--size", type=int, default=4096, help="side of the square GEMM")
    parser.add_argument("--models", nargs="*", default=["resnet18", "vgg16"])
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--quick", action="store_true", help=f"shorter protocol ({QUICK}), for make gpu-check")
    parser.add_argument("--out", help="also write the tables as markdown to this file")
    args = parser.parse_args(argv)
    bench = LadderBench(args.backend, QUICK if args.quick else PROTOCOL)
    unit = "rung time as a fraction of cuBLAS throughput (cuBLAS ms / rung ms)" if bench.timed else \
        "emulator: correctness only (relative error vs float64), no times"
    header = document.header("ladder", bench.runtime, argv, f"protocol {bench.protocol}; {unit}")
    print(header, file=sys.stderr)
    rows = []
    for shape in gemm_shapes(args.models, args.batches, args.input_size, args.size):
        print(f"  GEMM {shape[0]} batch {shape[-1]} ...", file=sys.stderr, flush=True)
        rows.append(bench.gemm_row(*shape))
        device_memory.release(bench.runtime)   # each shape starts from an empty pool
    gemms = pd.DataFrame(rows)
    copy_gbs = bench.copy_bandwidth() if bench.timed else None
    layers = [(f"{model} {name} b{batch}", g) for model in args.models for batch in args.batches
              for name, g, _ in distinct_conv_layers(model, batch, args.input_size) if g.groups == 1 and g.taps > 1]
    memory_rows = []
    for label, g in layers:
        memory_rows.append(bench.memory_row(label, g, copy_gbs))
        device_memory.release(bench.runtime)
    memory = pd.DataFrame(memory_rows)
    sections = [header, "## GEMM ladder vs cuBLAS FP32 (TF32 off)\n", gemms.to_markdown(index=False, floatfmt=".3g"),
                "\n## Memory-bound kernels as a fraction of device-to-device copy bandwidth"
                + (f" ({copy_gbs:.0f} GB/s, read + write)\n" if copy_gbs else "\n"),
                memory.to_markdown(index=False, floatfmt=".3g")]
    document.emit(sections, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
