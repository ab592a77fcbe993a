"""convbench: convolution algorithms for CNN inference, measured."""
# The runtimes first: their CPU thread policy (runtime/threads.py) must reach the environment before
# anything imports numpy or torch.
from . import runtime  # noqa: F401, I001
from .conv import conv2d, swap_conv2d  # noqa: E402

__all__ = ["conv2d", "swap_conv2d"]
