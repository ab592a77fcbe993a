"""Per-layer, per-algorithm accounting: the numbers a report needs to explain a timing.

FLOPs count a multiply-add as 2. ``min_bytes`` is the compulsory float32 traffic (read the
input and the filter once, write the output once) that any algorithm pays. Each algorithm
adds its workspace, written once and read once, so the arithmetic intensity below is the
algorithm's own at the DRAM level: im2col inflates the input k*k times, kn2row the output
k*k times, and scalar allocates nothing.

    algorithm  GEMM (M x N x K, per the whole batch)         workspace (floats)
    im2col     C_out      x  N*H_o*W_o  x  C_in*k*k           N * C_in*k*k * H_o*W_o
    kn2row     C_out*k*k  x  N*H*W      x  C_in               N * C_out*k*k * H*W
    scalar     (no GEMM)                                      0

With ``groups`` = G > 1 the GEMM dimensions are those of one group (C_in and C_out divided by
G) and ``gemm_groups`` = G such GEMMs run, all in one launch; the workspace is the same as
above (every group's columns or partial planes). A depthwise layer (groups == C_in) runs the
dedicated direct kernel whatever the algorithm: no GEMM (``gemm_groups`` = 0), no workspace.
``kernel`` names what ran, as the label of its variant (experiments/conv/variant.py):
``im2col/blocked-t16/fp32``, ``kn2row/sparse/fp32``, ``scalar/int8``, ``depthwise/fp32``...
fp16 and int8 read the input and the filter at their element size (the output stays float32).
FLOPs are always the dense convolution's, also for a sparse GEMM (which skips the zeros):
a sparse speedup is then a speedup on the same work.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from . import variant as variants
from .geometry import ConvGeometry
from .variant import Variant

FLOAT32_BYTES = 4
ELEMENT_BYTES = {"fp32": 4, "fp16": 2, "int8": 1}
NOT_ALGORITHMS = ("pytorch", "depthwise")   # what else runs a layer: the baseline, the depthwise kernel


@dataclass(frozen=True)
class LayerCost:
    flops: int
    gemm_m: int
    gemm_n: int
    gemm_k: int
    min_bytes: int
    workspace_bytes: int
    gemm_groups: int = 0    # GEMMs of gemm_m x gemm_n x gemm_k per layer (= groups), 0 without a GEMM
    variant: str = ""       # the label of the variant that ran, e.g. im2col/blocked-t16/fp32, depthwise/fp32

    @property
    def arithmetic_intensity(self) -> float:
        """FLOP per byte moved, counting the workspace written once and read once."""
        return self.flops / (self.min_bytes + 2 * self.workspace_bytes)

    def as_dict(self) -> dict:
        return {**asdict(self), "arithmetic_intensity": self.arithmetic_intensity}


def layer_cost(g: ConvGeometry, variant: Variant) -> LayerCost:
    """The accounting of ``variant`` (what runs the layer: its algorithm, GEMM and dtype) on ``g``."""
    algo, per_group_in, per_group_out, groups = variant.algo, g.group_in_channels, g.group_out_channels, g.groups
    known = (*variants.ALGORITHMS, *NOT_ALGORITHMS)
    if algo not in known:
        raise ValueError(f"unknown algorithm {algo!r}; valid: {', '.join(known)}")
    flops = 2 * g.batch * g.out_channels * g.out_h * g.out_w * per_group_in * g.taps
    min_bytes = (ELEMENT_BYTES[variant.dtype] * (g.batch * g.in_channels * g.in_h * g.in_w
                                                  + g.out_channels * per_group_in * g.taps)
                 + FLOAT32_BYTES * g.batch * g.out_channels * g.out_h * g.out_w)
    gemm_groups = groups
    if algo not in variants.GEMM_ALGORITHMS or g.is_depthwise:
        m = n = k = workspace = gemm_groups = 0
    elif algo == "im2col":
        m, n, k = per_group_out, g.batch * g.out_h * g.out_w, per_group_in * g.taps
        workspace = 0 if g.is_pointwise else g.batch * g.in_channels * g.taps * g.out_h * g.out_w
    else:  # kn2row
        m, n, k = per_group_out * g.taps, g.batch * g.in_h * g.in_w, per_group_in
        workspace = 0 if g.is_pointwise else g.batch * g.out_channels * g.taps * g.in_h * g.in_w
    return LayerCost(flops, m, n, k, min_bytes, FLOAT32_BYTES * workspace, gemm_groups, variant.label)
