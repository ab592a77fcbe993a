"""The three algorithms of lecture 11 in plain numpy: the readable specification.

Each function takes a C-contiguous float32 input (N, C, H, W) and the filter in the layout its
algorithm wants (``experiments.conv.layout.prepare_weight``), and returns the output
(N, F, H_o, W_o) plus the workspace it allocated, in bytes. The GEMMs
are numpy's matmul (BLAS): this is the ``numpy`` backend's honest CPU implementation and the
model the hip/ kernels follow.

Groups: input channels c and output channels f split into G groups of C/G and F/G; group g's
outputs see only group g's inputs. The unfolded input (im2col) and the input itself (kn2row)
already hold the groups as consecutive row blocks, so each GEMM becomes G GEMMs batched over
(image, group), one ``matmul`` with the filter stacked G x (F/G) x ...; with a sparse filter
(``experiments.conv.sparse.CsrFilter``, block-diagonal over the groups) it is one SpMM.
Depthwise layers (groups == C) have their own direct function, ``depthwise``.
"""
from __future__ import annotations

import numpy as np

from .geometry import ConvGeometry
from .sparse import CsrFilter


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


def _gemm(a, b: np.ndarray, groups: int) -> np.ndarray:
    """C[n, g] = A[g] B[n, g] for b of shape N x (G*K) x P; returns N x (G*M) x P.

    ``a`` is the dense G x M x K filter stack (or M x K when G = 1), or a CsrFilter of the
    block-diagonal (G*M) x (G*K) matrix, which multiplies all groups at once.
    """
    if isinstance(a, CsrFilter):
        return a.matmul(b)
    if groups == 1:
        return np.matmul(a, b)
    n, rows, p = b.shape
    return np.matmul(a, b.reshape(n, groups, rows // groups, p)).reshape(n, -1, p)


def im2col(x: np.ndarray, w_matrix, g: ConvGeometry) -> tuple[np.ndarray, int]:
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
    y = _gemm(w_matrix, cols, g.groups)
    workspace = 0 if g.is_pointwise else cols.nbytes
    return y.reshape(g.output_shape), workspace


def kn2row(x: np.ndarray, w_rows, g: ConvGeometry) -> tuple[np.ndarray, int]:
    """One GEMM of the (F*KH*KW) x C filter rows with the C x (H*W) input, then shift-add of the partial planes."""
    n, c, f = g.batch, g.in_channels, g.out_channels
    partial = _gemm(w_rows, x.reshape(n, c, g.in_h * g.in_w), g.groups)   # row (f*KH + kh)*KW + kw
    if g.is_pointwise:
        return partial.reshape(g.output_shape), 0
    planes = _pad(partial.reshape(n, f, g.kernel_h, g.kernel_w, g.in_h, g.in_w), g)
    y = np.zeros(g.output_shape, np.float32)
    for kh in range(g.kernel_h):
        for kw in range(g.kernel_w):
            y += _shifted_planes(planes[:, :, kh, kw], g, kh, kw)
    return y, partial.nbytes


def scalar(x: np.ndarray, w: np.ndarray, g: ConvGeometry) -> tuple[np.ndarray, int]:
    """For each offset (kh, kw): out += W[:, :, kh, kw] times the shifted input planes. No workspace.

    With groups, output channel block g (F/G channels) scales only input channel block g.
    """
    padded = _pad(x, g)
    n, groups = g.batch, g.groups
    y = np.zeros((n, g.out_channels, g.out_h * g.out_w), np.float32)
    for kh in range(g.kernel_h):
        for kw in range(g.kernel_w):
            shifted = _shifted_planes(padded, g, kh, kw)              # N x C x H_o x W_o
            taps = w[:, :, kh, kw]                                     # F x C/G
            if groups > 1:
                taps = taps.reshape(groups, g.group_out_channels, g.group_in_channels)
            y += _gemm(taps, shifted.reshape(n, g.in_channels, -1), groups)
    return y.reshape(g.output_shape), 0


def depthwise(x: np.ndarray, w: np.ndarray, g: ConvGeometry) -> tuple[np.ndarray, int]:
    """Depthwise (groups == C): output channel f is input channel f // (F/C) convolved with its own
    KH x KW filter w[f, 0], one scale-and-add per offset. No workspace, no GEMM."""
    padded = _pad(x, g)
    multiplier = g.out_channels // g.in_channels
    if multiplier > 1:
        padded = np.repeat(padded, multiplier, axis=1)               # channel f reads input f // multiplier
    y = np.zeros(g.output_shape, np.float32)
    for kh in range(g.kernel_h):
        for kw in range(g.kernel_w):
            y += w[None, :, 0, kh, kw, None, None] * _shifted_planes(padded, g, kh, kw)
    return y, 0


SPECIFICATIONS = {"im2col": im2col, "kn2row": kn2row, "scalar": scalar}   # each algorithm's numpy specification
