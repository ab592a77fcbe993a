"""The three algorithms of lecture 11 in plain numpy: the readable specification.

Each function takes a C-contiguous float32 input (N, C, H, W) and the filter in the layout its
algorithm wants (``experiments.conv.plan.prepare_weight``), and returns the output
(N, F, H_o, W_o) plus the workspace it allocated, in bytes. The GEMMs
are numpy's matmul (BLAS): this is the ``numpy`` backend's honest CPU implementation and the
model the hip/ kernels follow. groups == 1 here; the caller checks.
"""
from __future__ import annotations

import numpy as np

from .geometry import ConvGeometry


def _shifted_planes(padded: np.ndarray, g: ConvGeometry, kh: int, kw: int) -> np.ndarray:
    """The view of a zero-padded (..., H+2P, W+2P) array that offset (kh, kw) reads.

    Output pixel (oh, ow) sees input pixel (oh*SH - PH + kh*DH, ow*SW - PW + kw*DW), which is
    padded pixel (oh*SH + kh*DH, ow*SW + kw*DW).
    """
    (sh, sw), (dh, dw) = g.stride, g.dilation
    top, left = kh * dh, kw * dw
    return padded[..., top: top + sh * (g.out_h - 1) + 1: sh, left: left + sw * (g.out_w - 1) + 1: sw]


def _pad(a: np.ndarray, g: ConvGeometry) -> np.ndarray:
    ph, pw = g.padding
    if ph == pw == 0:
        return a
    return np.pad(a, [(0, 0)] * (a.ndim - 2) + [(ph, ph), (pw, pw)])


def im2col(x: np.ndarray, w_matrix: np.ndarray, g: ConvGeometry) -> tuple[np.ndarray, int]:
    """Unfold the input to (C*KH*KW) x (H_o*W_o) per image, then one GEMM with the F x (C*KH*KW) filter."""
    n = g.batch
    if g.is_pointwise:
        cols = x.reshape(n, g.in_channels, g.in_h * g.in_w)
    else:
        padded = _pad(x, g)
        cols6 = np.empty((n, g.in_channels, g.kernel_h, g.kernel_w, g.out_h, g.out_w), np.float32)
        for kh in range(g.kernel_h):
            for kw in range(g.kernel_w):
                cols6[:, :, kh, kw] = _shifted_planes(padded, g, kh, kw)
        cols = cols6.reshape(n, -1, g.out_h * g.out_w)
    y = np.matmul(w_matrix, cols)
    workspace = 0 if g.is_pointwise else cols.nbytes
    return y.reshape(g.output_shape), workspace


def kn2row(x: np.ndarray, w_rows: np.ndarray, g: ConvGeometry) -> tuple[np.ndarray, int]:
    """One GEMM of the (F*KH*KW) x C filter rows with the C x (H*W) input, then shift-add of the partial planes."""
    n, c, f = g.batch, g.in_channels, g.out_channels
    partial = np.matmul(w_rows, x.reshape(n, c, g.in_h * g.in_w))
    if g.is_pointwise:
        return partial.reshape(g.output_shape), 0
    planes = _pad(partial.reshape(n, f, g.kernel_h, g.kernel_w, g.in_h, g.in_w), g)
    y = np.zeros(g.output_shape, np.float32)
    for kh in range(g.kernel_h):
        for kw in range(g.kernel_w):
            y += _shifted_planes(planes[:, :, kh, kw], g, kh, kw)
    return y, partial.nbytes


def scalar(x: np.ndarray, w: np.ndarray, g: ConvGeometry) -> tuple[np.ndarray, int]:
    """For each offset (kh, kw): out += W[:, :, kh, kw] times the shifted input planes. No workspace."""
    padded = _pad(x, g)
    y = np.zeros(g.output_shape, np.float32)
    for kh in range(g.kernel_h):
        for kw in range(g.kernel_w):
            shifted = _shifted_planes(padded, g, kh, kw)              # N x C x H_o x W_o
            y += np.einsum("fc,nchw->nfhw", w[:, :, kh, kw], shifted, optimize=True)
    return y, 0


ALGORITHMS = {"im2col": im2col, "kn2row": kn2row, "scalar": scalar}
