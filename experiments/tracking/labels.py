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
    text = _factor(speedup if speedup > 1 else 1 / speedup, digits)
    return f"{text}× {'faster' if speedup > 1 else 'slower'}"


def interval_text(low: float, high: float, digits: int = 3) -> str:
    """A speedup's interval read the same way as its point estimate: '2.30–2.38× slower', '1.2–1.9× faster';
    one that contains 1 names both ends, '1.05× slower to 1.10× faster'."""
    if low != low or high != high or low <= 0 or high <= 0:
        return "—"
    if low > 1:
        return f"{_factor(low, digits)}–{_factor(high, digits)}× faster"
    if high < 1:
        return f"{_factor(1 / high, digits)}–{_factor(1 / low, digits)}× slower"
    return f"{ratio_text(low, digits)} to {ratio_text(high, digits)}"


def versus_pytorch_text(best_of_ours: float, digits: int = 3) -> str:
    """The fastest of a comparison against PyTorch, given PyTorch's time over our best one: '3.6× faster', or
    'PyTorch fastest, ours 3.6× slower' (never 'as fast' where PyTorch wins)."""
    if best_of_ours != best_of_ours or best_of_ours <= 0:
        return "—"
    text = ratio_text(best_of_ours, digits)
    return text if best_of_ours >= 1 else f"PyTorch fastest, ours {text}"


def _factor(factor: float, digits: int) -> str:
    return f"{factor:.{digits - 1}f}" if factor < 10 else significant(factor, digits)


def significant(value: float, digits: int = 4) -> str:
    """`digits` significant digits, never in exponent form: 1234.5 -> '1235', 12345.6 -> '12350', 0.5 -> '0.5'."""
    import numpy as np
    if value != value:
        return "—"
    return np.format_float_positional(float(value), precision=digits, unique=False, fractional=False, trim="-")
