"""Launch code for the hip/ kernels, written once for every runtime that has kernels.

The gpu runtime hands CuPy arrays to kernels compiled by NVRTC/hiprtc, the emulator hands
numpy arrays to the same kernels compiled by g++; this module cannot tell them apart.
Geometry comes from experiments.conv.geometry; the launch shapes mirror the comment at the
top of each kernel file.
"""
from __future__ import annotations

import numpy as np

from .geometry import ConvGeometry

ELEMENTWISE_BLOCK = 256   # threads per block of im2col and the shift-add (one output pixel each)
MAX_GRID_Y = 65535        # CUDA and HIP limit; the kernels grid-stride over the rest
GEMM_WPT = 4              # micro-tile side per thread of gemm_blocked (block tile = TILE * WPT)
SCALAR_COB = 16           # output channels per thread of scalar_conv
SCALAR_PIXELS = 128       # threads per block of scalar_conv (must match PIXELS in the kernel)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _ints(*values: int) -> tuple:
    return tuple(np.int32(v) for v in values)


class KernelLauncher:
    """The kernels of one convolution configuration (GEMM back-end and tile) on one runtime."""

    def __init__(self, runtime, gemm: str, tile: int):
        self.runtime, self.xp, self.gemm_name, self.tile = runtime, runtime.xp, gemm, tile

    def _kernel(self, source: str, name: str, **defines: int):
        return self.runtime.load(source, defines).get_function(name)

    def gemm(self, a, b):
        """(M x K) times each (K x N) matrix of b (batch x K x N): batch x M x N."""
        batch, k, n = b.shape
        m = a.shape[0]
        if self.gemm_name == "vendor":
            return self.xp.matmul(a, b)  # cuBLAS / hipBLAS on a GPU, BLAS on the CPU
        c = self.xp.empty((batch, m, n), dtype=self.xp.float32)
        block_tile = self.tile * GEMM_WPT
        kernel = self._kernel("gemm_blocked.hip", "gemm_blocked", TILE=self.tile, WPT=GEMM_WPT)
        kernel((_ceil_div(n, block_tile), _ceil_div(m, block_tile), batch), (self.tile, self.tile),
               (a, b, c, *_ints(m, n, k), np.int64(0), np.int64(k * n), np.int64(m * n)))
        return c

    def im2col(self, x, g: ConvGeometry):
        """N x (C*KH*KW) x (H_o*W_o) columns of the input x (N x C x H x W)."""
        rows, pixels = g.in_channels * g.taps, g.out_h * g.out_w
        cols = self.xp.empty((g.batch, rows, pixels), dtype=self.xp.float32)
        kernel = self._kernel("im2col.hip", "im2col")
        kernel((_ceil_div(pixels, ELEMENTWISE_BLOCK), min(rows, MAX_GRID_Y), g.batch), (ELEMENTWISE_BLOCK,),
               (x, cols, *_ints(g.in_channels, g.in_h, g.in_w, *g.kernel_args())))
        return cols

    def shift_add(self, partial, g: ConvGeometry):
        """Sum of kn2row's k*k shifted partial planes (N x F*KH*KW x H*W) into N x F x H_o x W_o."""
        out = self.xp.empty(g.output_shape, dtype=self.xp.float32)
        kernel = self._kernel("kn2row_shift_add.hip", "kn2row_shift_add")
        kernel((_ceil_div(g.out_h * g.out_w, ELEMENTWISE_BLOCK), min(g.out_channels, MAX_GRID_Y), g.batch),
               (ELEMENTWISE_BLOCK,),
               (partial, out, *_ints(g.out_channels, g.in_h, g.in_w, *g.kernel_args())))
        return out

    def scalar(self, x, w, g: ConvGeometry):
        """Direct scale-and-add convolution of x with the F x C x KH x KW filter w."""
        out = self.xp.empty(g.output_shape, dtype=self.xp.float32)
        kernel = self._kernel("scalar_conv.hip", "scalar_conv", COB=SCALAR_COB)
        kernel((_ceil_div(g.out_h * g.out_w, SCALAR_PIXELS), _ceil_div(g.out_channels, SCALAR_COB), g.batch),
               (SCALAR_PIXELS,),
               (x, w, out, *_ints(g.in_channels, g.in_h, g.in_w, g.out_channels, *g.kernel_args())))
        return out


def im2col(launcher: KernelLauncher, x, w_matrix, g: ConvGeometry):
    """Unfold, then GEMM with the F x (C*KH*KW) filter matrix. Returns (output, workspace bytes)."""
    if g.is_pointwise:
        cols, workspace = x.reshape(g.batch, g.in_channels, g.in_h * g.in_w), 0
    else:
        cols = launcher.im2col(x, g)
        workspace = cols.nbytes
    return launcher.gemm(w_matrix, cols).reshape(g.output_shape), workspace


def kn2row(launcher: KernelLauncher, x, w_rows, g: ConvGeometry):
    """GEMM of the (F*KH*KW) x C filter rows with the input, then the shift-add."""
    partial = launcher.gemm(w_rows, x.reshape(g.batch, g.in_channels, g.in_h * g.in_w))
    if g.is_pointwise:
        return partial.reshape(g.output_shape), 0
    return launcher.shift_add(partial, g), partial.nbytes


def scalar(launcher: KernelLauncher, x, w, g: ConvGeometry):
    return launcher.scalar(x, w, g), 0


ALGORITHMS = {"im2col": im2col, "kn2row": kn2row, "scalar": scalar}
