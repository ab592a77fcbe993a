"""The numpy runtime (no kernels: the reference algorithms with BLAS) and host facts."""
from __future__ import annotations

import platform
from functools import lru_cache

import numpy

from .threads import cpu_execution


@lru_cache(maxsize=1)
def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class NumpyRuntime:
    """Runs the readable numpy implementations in experiments/conv/reference.py."""

    name = "numpy"
    kind = "cpu"
    xp = numpy
    is_gpu = False
    has_kernels = False
    emulated = False

    def __init__(self) -> None:
        self.execution = cpu_execution()   # torch's and BLAS's thread pools side by side (threads.py)

    def device_name(self) -> str:
        return cpu_name()

    def synchronize(self) -> None:
        pass
