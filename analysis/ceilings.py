"""Roofline ceilings: peak float32 compute [GFLOP/s] and memory bandwidth [GB/s] of a device.

Measured by `python -m analysis.ceilings` on the machine itself (a large float32 matmul and
a large copy; CuPy on a GPU when one is visible, else torch/numpy on the CPU), written to
reports/ceilings.json keyed by device name. Where no measurement exists for a device, the
report falls back to the datasheet values configured below and says so.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

# The harness's own device naming, so a measured entry's key equals the runs' `device` tag.
from experiments.runtime.gpu import GpuRuntime, gpu_available
from experiments.runtime.host import cpu_name

DEFAULT_PATH = Path("reports") / "ceilings.json"

# Datasheet FP32 peak without tensor cores [GFLOP/s] and memory bandwidth [GB/s], matched
# by substring of the device name (longest key first). FP32 because the kernels are FP32 CUDA
# cores; tensor-core peaks (TF32/FP16) would put every point far under the roof.
CONFIGURED = {
    "H100 PCIe": (51_200, 2_000),
    "H100": (66_900, 3_350),        # SXM5 (e.g. "NVIDIA H100 80GB HBM3")
    "H200": (66_900, 4_800),
    "A100": (19_500, 2_039),
    "MI300X": (163_400, 5_300),
    "MI250X": (47_900, 3_276),
}


@dataclass
class Ceilings:
    device: str
    peak_gflops: float
    bandwidth_gbs: float
    source: str               # "measured" or "configured"
    method: str = ""          # how: "cupy matmul 8192^3 float32; cupy copy 1 GiB" or datasheet
    measured_at: str = ""

    @property
    def ridge_intensity(self) -> float:
        """FLOP/B where the bandwidth roof meets the compute roof."""
        return self.peak_gflops / self.bandwidth_gbs

    def describe(self) -> str:
        what = (f"peak {self.peak_gflops:,.0f} GFLOP/s, bandwidth {self.bandwidth_gbs:,.0f} GB/s "
                f"({self.source}")
        return what + (f": {self.method})" if self.method else ")")


def load_measured(path: Path) -> dict[str, Ceilings]:
    """The measured ceilings file, {} when there is none."""
    if not path.is_file():
        return {}
    entries = json.loads(path.read_text())
    return {device: Ceilings(device=device, **{k: v for k, v in entry.items() if k != "device"})
            for device, entry in entries.items()}


def ceilings_for(device: str, measured: dict[str, Ceilings]) -> Ceilings | None:
    """Measured ceilings of the device if any, else configured datasheet values, else None."""
    if device in measured:
        return measured[device]
    lowered = device.lower()
    for name, entry in measured.items():
        if name.lower() in lowered or lowered in name.lower():
            return entry
    for key in sorted(CONFIGURED, key=len, reverse=True):
        if key.lower() in lowered:
            peak, bandwidth = CONFIGURED[key]
            return Ceilings(device, peak, bandwidth, "configured", f"datasheet values for {key}")
    return None


# --- measurement ----------------------------------------------------------------------

def _best_seconds(run, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        best = min(best, run())
    return best


def measure_gpu(matmul_n: int, copy_mib: int, repeats: int) -> Ceilings:
    import cupy

    name = GpuRuntime().device_name()
    a = cupy.random.random((matmul_n, matmul_n), dtype=cupy.float32)
    b = cupy.random.random((matmul_n, matmul_n), dtype=cupy.float32)
    src = cupy.ones(copy_mib * 2**20 // 4, dtype=cupy.float32)
    dst = cupy.empty_like(src)

    def timed(fn):
        def run():
            start, stop = cupy.cuda.Event(), cupy.cuda.Event()
            start.record()
            fn()
            stop.record()
            stop.synchronize()
            return cupy.cuda.get_elapsed_time(start, stop) / 1e3
        return run

    timed(lambda: a @ b)()  # warm-up: cuBLAS handle and kernel selection
    matmul_s = _best_seconds(timed(lambda: a @ b), repeats)
    copy_s = _best_seconds(timed(lambda: cupy.copyto(dst, src)), repeats)
    return Ceilings(
        device=name,
        peak_gflops=2 * matmul_n**3 / matmul_s / 1e9,
        bandwidth_gbs=2 * src.nbytes / copy_s / 1e9,  # read + write
        source="measured",
        method=(f"cupy {cupy.__version__} float32 matmul {matmul_n}^3, "
                f"device copy {copy_mib} MiB (read+write), best of {repeats}"),
        measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


def measure_cpu(matmul_n: int, copy_mib: int, repeats: int) -> Ceilings:
    import numpy as np
    import torch

    a = torch.rand(matmul_n, matmul_n, dtype=torch.float32)
    b = torch.rand(matmul_n, matmul_n, dtype=torch.float32)
    src = np.ones(copy_mib * 2**20 // 4, dtype=np.float32)
    dst = np.empty_like(src)

    def timed(fn):
        def run():
            start = time.perf_counter_ns()
            fn()
            return (time.perf_counter_ns() - start) / 1e9
        return run

    torch.mm(a, b)  # warm-up: thread pool, oneDNN/BLAS kernel choice
    matmul_s = _best_seconds(timed(lambda: torch.mm(a, b)), repeats)
    copy_s = _best_seconds(timed(lambda: np.copyto(dst, src)), repeats)
    return Ceilings(
        device=cpu_name(),
        peak_gflops=2 * matmul_n**3 / matmul_s / 1e9,
        bandwidth_gbs=2 * src.nbytes / copy_s / 1e9,
        source="measured",
        method=(f"torch {torch.__version__} float32 matmul {matmul_n}^3 on "
                f"{torch.get_num_threads()} threads, numpy copy {copy_mib} MiB (read+write), "
                f"best of {repeats}"),
        measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


def measure(target: str = "auto", matmul_n: int | None = None, copy_mib: int | None = None,
            repeats: int = 5) -> Ceilings:
    use_gpu = target == "gpu" or (target == "auto" and gpu_available())
    if use_gpu:
        return measure_gpu(matmul_n or 8192, copy_mib or 1024, repeats)
    return measure_cpu(matmul_n or 2048, copy_mib or 256, repeats)


def save(ceilings: Ceilings, path: Path) -> None:
    """Add or replace this device's entry, keeping the other devices' entries."""
    entries = json.loads(path.read_text()) if path.is_file() else {}
    entry = asdict(ceilings)
    entries[entry.pop("device")] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m analysis.ceilings",
        description="Measure this machine's roofline ceilings for `make report`.")
    parser.add_argument("--out", type=Path, default=DEFAULT_PATH,
                        help=f"JSON file to add this device to (default {DEFAULT_PATH})")
    parser.add_argument("--target", choices=["auto", "gpu", "cpu"], default="auto",
                        help="gpu (CuPy), cpu (torch/numpy), or auto: gpu when CuPy sees one")
    parser.add_argument("--device-name", default=None,
                        help="key to store under; must equal the runs' `device` tag "
                             "(default: the name the harness tags runs with)")
    parser.add_argument("--matmul-n", type=int, default=None,
                        help="matmul size n (n x n x n); default 8192 on GPU, 2048 on CPU")
    parser.add_argument("--copy-mib", type=int, default=None,
                        help="copied buffer size in MiB; default 1024 on GPU, 256 on CPU")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    ceilings = measure(args.target, args.matmul_n, args.copy_mib, args.repeats)
    if args.device_name:
        ceilings.device = args.device_name
    save(ceilings, args.out)
    print(f"{ceilings.device}: {ceilings.describe()} -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
