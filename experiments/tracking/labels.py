"""What ran, in words a reader cannot misread: every job line, the sweep's table and the report use these.

The numpy backend is the readable reference implementation on BLAS, not the HIP kernels; the emulator
runs the real kernels on the CPU for correctness only; only the gpu backend times the kernels themselves.
"""
from __future__ import annotations

NUMPY = "numpy reference on the CPU, not the HIP kernels"
EMULATOR = "emulator: correctness only, HIP kernels run on the CPU"
GPU = "HIP/CUDA kernels on the GPU"

_BY_BACKEND = {"numpy": NUMPY, "emulator": EMULATOR, "gpu": GPU}


def what_ran(backend: str, device: str | None = None) -> str:
    """e.g. 'HIP/CUDA kernels on the GPU NVIDIA H200', 'numpy reference on the CPU, not the HIP kernels'."""
    text = _BY_BACKEND.get(backend, f"backend {backend}")
    if backend == "gpu" and device:
        text += f" {device}"
    return text


def ratio_text(speedup: float, digits: int = 3) -> str:
    """A speedup in words: '1.56× faster', '1.6× slower' (never '0.63× faster'), 'as fast' at 1."""
    if speedup != speedup or speedup <= 0:   # NaN or nonsense: say nothing rather than something wrong
        return "—"
    if round(speedup, digits - 1) == 1:
        return "as fast (1.00×)"
    factor = speedup if speedup > 1 else 1 / speedup
    text = f"{factor:.{digits - 1}f}" if factor < 10 else significant(factor, digits)
    return f"{text}× {'faster' if speedup > 1 else 'slower'}"


def significant(value: float, digits: int = 4) -> str:
    """`digits` significant digits, never in exponent form: 1234.5 -> '1235', 12345.6 -> '12350', 0.5 -> '0.5'."""
    import numpy as np
    if value != value:
        return "—"
    return np.format_float_positional(float(value), precision=digits, unique=False, fractional=False, trim="-")
