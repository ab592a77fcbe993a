"""convbench: convolution algorithms for CNN inference, measured."""
from .conv import conv2d, swap_conv2d

__all__ = ["conv2d", "swap_conv2d"]
