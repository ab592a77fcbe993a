"""convbench: convolution algorithms for CNN inference, measured."""
import os

# On the CPU backends a forward alternates torch ops (OpenMP threads) with numpy GEMMs (OpenBLAS
# threads); by default each pool keeps spinning after its work and starves the other (resnet18 at
# 224 with im2col: 216 ms instead of 45 ms on 2 cores; PyTorch alone unchanged, 27 ms). Both
# spins are shortened here, before this package imports torch and numpy, so that run.py, the
# benchmarks and the tests all get it; a value set by the user wins.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

from .conv import conv2d, swap_conv2d  # noqa: E402

__all__ = ["conv2d", "swap_conv2d"]
