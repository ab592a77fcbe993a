"""What every kernel launch shares: the grid limits of CUDA and HIP and the division that sizes a grid."""
from __future__ import annotations

MAX_GRID_Y = 65535   # CUDA and HIP limits on gridDim.y and .z (x: 2**31 - 1)
MAX_GRID_Z = 65535
GRID_STRIDE_MAX_BLOCKS = 65535   # grid-stride kernels (conversions, split-K reduction) launch at most this many
                                 # blocks along x: a choice, well under x's limit, that keeps every SM busy


def ceil_div(a: int, b: int) -> int:
    """The blocks of ``b`` items that cover ``a`` items (the last one partial)."""
    return -(-a // b)


def round_up(value: int, multiple: int) -> int:
    """``value`` rounded up to a multiple of ``multiple``."""
    return ceil_div(value, multiple) * multiple
