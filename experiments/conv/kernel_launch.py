"""Launch code for the hip/ kernels, written once for every runtime that has kernels.

The gpu runtime hands CuPy arrays to kernels compiled by NVRTC/hiprtc, the emulator hands
numpy arrays to the same kernels compiled by g++; this module cannot tell them apart.
Geometry comes from experiments.conv.geometry; the launch shapes mirror the comment at the
top of each kernel file.
"""
from __future__ import annotations

import numpy as np

from .geometry import ConvGeometry
from .sparse import CsrFilter

ELEMENTWISE_BLOCK = 256   # threads per block of im2col and the shift-add (one output pixel each)
MAX_GRID_Y = 65535        # CUDA and HIP limit; the kernels grid-stride over the rest
GEMM_WPT = 4              # micro-tile side per thread of gemm_blocked (block tile = TILE * WPT)
SCALAR_COB = 16           # output channels per thread of scalar_conv
SCALAR_COBS = (4, 8, 16)  # compiled variants: a grouped layer with few channels per group takes the smallest that fits
SCALAR_PIXELS = 128       # threads per block of scalar_conv (must match PIXELS in the kernel)
MAX_GRID_Z = 65535        # CUDA's limit on gridDim.z (the batch of gemm_blocked and spmm_csr)
DEPTHWISE_THREADS = 256   # threads per block of depthwise_conv (must match DW_THREADS in the kernel)
SPMM_LANES, SPMM_ROWS, SPMM_CPT = 32, 8, 4   # spmm_csr's block (SP_LANES x SP_ROWS) and columns per thread


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
        """(M x K) times each (K x N) matrix of b (batch x K x N): batch x M x N.

        Grouped: a is G x M x K and each matrix of b is G blocks of K rows (batch x G*K x N);
        group g of each image is multiplied by a[g], all in one launch: batch x G*M x N.
        Sparse: a is a CsrFilter (M x K, block-diagonal over the groups): the CSR SpMM kernel.
        """
        if isinstance(a, CsrFilter):
            return self.spmm(a, b)
        batch, rows, n = b.shape
        groups, m, k = (1, *a.shape) if a.ndim == 2 else a.shape
        if self.gemm_name != "blocked":   # cuBLAS / hipBLAS on a GPU, BLAS on the CPU
            if groups == 1:
                return self.xp.matmul(a, b)
            return self.xp.matmul(a, b.reshape(batch, groups, k, n)).reshape(batch, groups * m, n)
        if batch * groups > MAX_GRID_Z:
            raise ValueError(f"gemm_blocked: {batch} images x {groups} groups exceeds the grid's z limit of {MAX_GRID_Z}")
        c = self.xp.empty((batch, groups * m, n), dtype=self.xp.float32)
        block_tile = self.tile * GEMM_WPT
        kernel = self._kernel("gemm_blocked.hip", "gemm_blocked", TILE=self.tile, WPT=GEMM_WPT)
        kernel((_ceil_div(n, block_tile), _ceil_div(m, block_tile), batch * groups), (self.tile, self.tile),
               (a, b, c, *_ints(m, n, k, groups), np.int64(m * k), np.int64(k * n), np.int64(m * n)))
        return c

    def spmm(self, a: CsrFilter, b):
        """The CSR matrix a (M x K) times each (K x N) matrix of b (batch x K x N): batch x M x N."""
        batch, k, n = b.shape
        m = a.shape[0]
        if k != a.shape[1]:
            raise ValueError(f"spmm_csr: a {a.shape[0]} x {a.shape[1]} filter times {k} x {n} matrices")
        if batch > MAX_GRID_Z:
            raise ValueError(f"spmm_csr: a batch of {batch} exceeds the grid's z limit of {MAX_GRID_Z}")
        c = self.xp.empty((batch, m, n), dtype=self.xp.float32)
        kernel = self._kernel("spmm_csr.hip", "spmm_csr")
        kernel((_ceil_div(n, SPMM_LANES * SPMM_CPT), _ceil_div(m, SPMM_ROWS), batch), (SPMM_LANES, SPMM_ROWS),
               (a.row_ptr, a.col_idx, a.values, b, c, *_ints(m, n), np.int64(k * n), np.int64(m * n)))
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
        """Direct scale-and-add convolution of x with the F x C/G x KH x KW filter w (G groups)."""
        out = self.xp.empty(g.output_shape, dtype=self.xp.float32)
        per_group = g.group_out_channels
        cob = next((c for c in SCALAR_COBS if c >= per_group), SCALAR_COB) if g.groups > 1 else SCALAR_COB
        kernel = self._kernel("scalar_conv.hip", "scalar_conv", COB=cob)
        kernel((_ceil_div(g.out_h * g.out_w, SCALAR_PIXELS), g.groups * _ceil_div(per_group, cob), g.batch),
               (SCALAR_PIXELS,),
               (x, w, out, *_ints(g.in_channels, g.in_h, g.in_w, g.out_channels, g.groups, *g.kernel_args())))
        return out

    def depthwise(self, x, w, g: ConvGeometry):
        """Direct depthwise convolution (groups == C) of x with the F x 1 x KH x KW filter w."""
        out = self.xp.empty(g.output_shape, dtype=self.xp.float32)
        kernel = self._kernel("depthwise_conv.hip", "depthwise_conv")
        kernel((_ceil_div(g.out_channels * g.out_h * g.out_w, DEPTHWISE_THREADS), 1, g.batch), (DEPTHWISE_THREADS,),
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


def depthwise(launcher: KernelLauncher, x, w, g: ConvGeometry):
    """Every algorithm's depthwise layer: the direct kernel, no workspace."""
    return launcher.depthwise(x, w, g), 0


ALGORITHMS = {"im2col": im2col, "kn2row": kn2row, "scalar": scalar}
