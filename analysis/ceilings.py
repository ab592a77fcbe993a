"""Roofline ceilings: peak float32 compute [GFLOP/s] and memory bandwidth [GB/s] of a device.

Measured by `python -m analysis.ceilings` on the machine itself (a large float32 matmul and
a large copy; CuPy on a GPU when one is visible, else torch/numpy on the CPU), written to
reports/ceilings.json keyed by device name. Where no measurement exists for a device, the
report falls back to the datasheet values configured below and says so.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

# The harness's own device naming, so a measured entry's key equals the runs' `device` tag.
from experiments.runtime.gpu import GpuRuntime, gpu_available
from experiments.runtime.host import cpu_name

DEFAULT_PATH = Path("reports") / "ceilings.json"

@dataclass(frozen=True)
class DevicePeak:
    """A vendor's published FP32 peak without tensor/matrix cores and its memory bandwidth."""

    name: str              # matched as a substring of the runs' device tag (longest first)
    peak_gflops: float
    bandwidth_gbs: float
    source: str            # where the numbers are published


# FP32 on the CUDA/vector cores, because our kernels are plain FP32 code: tensor-core or matrix-core
# peaks (TF32, FP16, "FP32 matrix") would put every point far under a roof no FP32 kernel can reach.
DATASHEET = (
    DevicePeak("H100 PCIe", 51_200, 2_000, "NVIDIA H100 datasheet (PCIe: FP32 51 TFLOP/s, 2.0 TB/s), "
               "nvidia.com/en-us/data-center/h100"),
    DevicePeak("H100", 66_900, 3_350, "NVIDIA H100 datasheet (SXM: FP32 67 TFLOP/s, HBM3 3.35 TB/s), "
               "nvidia.com/en-us/data-center/h100"),
    DevicePeak("H200", 66_900, 4_800, "NVIDIA H200 datasheet (SXM: FP32 67 TFLOP/s, HBM3e 4.8 TB/s), "
               "nvidia.com/en-us/data-center/h200"),
    DevicePeak("A100", 19_500, 2_039, "NVIDIA A100 datasheet (80GB SXM: FP32 19.5 TFLOP/s, HBM2e 2,039 GB/s), "
               "nvidia.com/en-us/data-center/a100"),
    DevicePeak("MI250X", 47_900, 3_277, "AMD Instinct MI250X specifications (FP32 vector 47.9 TFLOP/s; matrix "
               "95.7; HBM2e 3.2768 TB/s), amd.com/en/products/accelerators/instinct/mi200/mi250x.html"),
    DevicePeak("MI300X", 81_700, 5_300, "AMD Instinct MI300X specifications (FP32 vector 81.7 TFLOP/s; matrix "
               "163.4; HBM3 5.3 TB/s), amd.com/en/products/accelerators/instinct/mi300/mi300x.html"),
)


@dataclass
class Ceilings:
    device: str
    peak_gflops: float
    bandwidth_gbs: float
    source: str               # "measured", "datasheet" or "observed" (envelope of the points)
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
    for peak in sorted(DATASHEET, key=lambda p: len(p.name), reverse=True):
        if peak.name.lower() in lowered:
            return Ceilings(device, peak.peak_gflops, peak.bandwidth_gbs, "datasheet", peak.source)
    return None


def observed_envelope(device: str, intensity, achieved) -> Ceilings:
    """When neither a measurement nor a datasheet is known: the smallest roof over the points
    themselves (their highest GFLOP/s, and the steepest bandwidth line through them). A lower bound
    of the device's real roof, labelled as such."""
    import numpy as np
    intensity, achieved = np.asarray(intensity, float), np.asarray(achieved, float)
    return Ceilings(device, float(achieved.max()), float((achieved / intensity).max()), "observed",
                    "envelope of the measured points: the real roof is at least this high")


def device_peaks(measured: dict[str, Ceilings]) -> "pd.DataFrame":
    """Every datasheet entry and every measured device, each with where its numbers come from."""
    import pandas as pd
    rows = [{"device": name, "peak [GFLOP/s]": entry.peak_gflops, "bandwidth [GB/s]": entry.bandwidth_gbs,
             "ridge [FLOP/B]": entry.ridge_intensity,
             "source": f"measured ({entry.measured_at or 'date unknown'}): {entry.method}"}
            for name, entry in sorted(measured.items())]
    rows += [{"device": peak.name, "peak [GFLOP/s]": peak.peak_gflops, "bandwidth [GB/s]": peak.bandwidth_gbs,
              "ridge [FLOP/B]": peak.peak_gflops / peak.bandwidth_gbs, "source": f"datasheet: {peak.source}"}
             for peak in DATASHEET]
    return pd.DataFrame(rows)


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
    """BLAS sgemm (torch.mm on all cores) at the best of three sizes around matmul_n: a CPU's peak is
    what its BLAS reaches, and one size can land on a bad blocking or a busy moment."""
    import numpy as np
    import torch

    src = np.ones(copy_mib * 2**20 // 4, dtype=np.float32)
    dst = np.empty_like(src)

    def timed(fn):
        def run():
            start = time.perf_counter_ns()
            fn()
            return (time.perf_counter_ns() - start) / 1e9
        return run

    best_gflops, best_n = 0.0, matmul_n
    for n in (matmul_n // 2, matmul_n, matmul_n * 3 // 2):
        a, b = torch.rand(n, n, dtype=torch.float32), torch.rand(n, n, dtype=torch.float32)
        torch.mm(a, b)  # warm-up: thread pool, BLAS kernel choice
        gflops = 2 * n**3 / _best_seconds(timed(lambda: torch.mm(a, b)), repeats) / 1e9
        if gflops > best_gflops:
            best_gflops, best_n = gflops, n
    copy_s = _best_seconds(timed(lambda: np.copyto(dst, src)), repeats)
    return Ceilings(
        device=cpu_name(),
        peak_gflops=best_gflops,
        bandwidth_gbs=2 * src.nbytes / copy_s / 1e9,
        source="measured",
        method=(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; "
                f"BLAS sgemm: torch {torch.__version__} float32 matmul, best of {matmul_n // 2}, {matmul_n}, "
                f"{matmul_n * 3 // 2} (peak at {best_n}^3) on "
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
