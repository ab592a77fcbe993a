"""How the CPU runtimes run: the thread pools of torch (OpenMP) and numpy (OpenBLAS) side by side.

On the CPU a forward alternates torch ops (OpenMP threads) with numpy GEMMs (OpenBLAS threads); by
default each pool keeps spinning after its work and starves the other (resnet18 at 224 with im2col:
216 ms instead of 45 ms on 2 cores; PyTorch alone unchanged, 27 ms). Both spins are shortened by
environment variables, which the libraries read once, when they load: this module sets them when
convbench is imported (experiments/__init__.py imports the runtimes first), and a value the user
set wins.

A script that imported numpy before convbench has its OpenBLAS loaded without the short spin; there
the CPU runtimes limit OpenBLAS to one thread instead (threadpoolctl), so that the library API, the
benches and the harness never measure the two pools fighting. ``cpu_execution()`` says which policy
is in effect; the harness logs it with each run.
"""
from __future__ import annotations

import os
import sys

SPIN_DEFAULTS = {"GOMP_SPINCOUNT": "10000", "OPENBLAS_THREAD_TIMEOUT": "4"}
_USER_SET = {"OPENBLAS_NUM_THREADS", "OPENBLAS_THREAD_TIMEOUT", "OMP_NUM_THREADS"} & set(os.environ)
_BLAS_LOADED_BEFORE = "numpy" in sys.modules      # its OpenBLAS read the environment already
for _name, _value in SPIN_DEFAULTS.items():
    os.environ.setdefault(_name, _value)


def cpu_execution() -> str:
    """Apply the CPU thread policy (once per process; idempotent) and describe it."""
    if _USER_SET:
        return "threads as set by the user: " + ", ".join(f"{k}={os.environ[k]}" for k in sorted(_USER_SET))
    if not _BLAS_LOADED_BEFORE:
        return "short spin: " + ", ".join(f"{k}={v}" for k, v in SPIN_DEFAULTS.items())
    from threadpoolctl import threadpool_limits   # installed with scikit-learn (requirements.txt)
    threadpool_limits(limits=1, user_api="blas")
    return "BLAS on one thread (numpy was loaded before convbench: its spin could not be shortened)"
