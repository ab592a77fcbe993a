"""Kernel runtimes: where the kernels of hip/ are compiled and launched.

A runtime has an array module ``xp`` (cupy or numpy) and, when ``has_kernels``,
``load(source, defines)``, which returns a compiled module whose functions are called
like CuPy's RawKernel:

    fn = runtime.load("gemm_1_blocked.hip", kernel_defines("gemm_1_blocked.hip", 16)).get_function("gemm_blocked")
    fn(grid, block, (a, b, c, np.int32(m), np.int32(n), np.int32(k), ...))

The launch code in experiments/conv/kernel_launch.py is written once against this
interface; the gpu and emulator runtimes differ only in the module loader.

    backend    runtime          arrays  kernels
    gpu        GpuRuntime       cupy    hip/ via NVRTC or hiprtc
    emulator   EmulatorRuntime  numpy   hip/ via g++ and a CPU port of the HIP runtime
    numpy      NumpyRuntime     numpy   none: the reference algorithms, BLAS for GEMMs
    auto       gpu when CuPy and torch both see the device, else numpy (one line on stderr says why)
"""
from __future__ import annotations

import sys
from functools import lru_cache

from . import threads  # noqa: F401, I001  (first: the CPU thread policy, before numpy loads)
from .gpu import GpuRuntime, GpuUnavailableError, auto_backend, gpu_available
from .host import NumpyRuntime

BACKENDS = ("auto", "gpu", "emulator", "numpy")


def resolve(backend: str = "auto"):
    """The runtime for a backend name; one instance per name per process."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    if backend == "auto":
        backend = _auto_choice()
    return _runtime(backend)


@lru_cache(maxsize=None)
def _auto_choice() -> str:
    """Decided and said once per process."""
    backend, why = auto_backend()
    print(f"[convbench] backend=auto -> {backend}: {why}", file=sys.stderr, flush=True)
    return backend


@lru_cache(maxsize=None)
def _runtime(backend: str):
    if backend == "gpu":
        return GpuRuntime()
    if backend == "emulator":
        from .emulator import EmulatorRuntime
        return EmulatorRuntime()
    return NumpyRuntime()


__all__ = ["BACKENDS", "GpuUnavailableError", "gpu_available", "resolve"]
