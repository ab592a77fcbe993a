"""The vendors' reduced-precision GEMMs, one call per layer (per group), on torch tensors (DLPack views of CuPy arrays).

    fp16_gemm   half operands, float32 accumulation and float32 output: torch.bmm(..., out_dtype=float32),
                cublasGemmEx / hipBLAS(Lt) with a float32 C. (CuPy's matmul of halves returns half: every
                result would be rounded to half, and on ROCm CuPy computes half matmul in float32.)
    int8_gemm   int8 operands, int32 output: torch._int_mm, cuBLASLt's int8 GEMM (hipBLASLt on ROCm). Its
                shape rules (more than 16 rows, K and N multiples of 8) are met by zero padding; the batch
                is folded into N so a layer is one call (a grouped layer: one call per group).

What is the same in every call of a layer is prepared once, by ConvPlan.build (``prepare``), outside the
timed calls: the filter as a torch view (fp16) or zero-padded to _int_mm's shapes (int8). fp16 multiplies
each image with the same filter through a stride-0 batch (``expand``: no copy of it per image); int8 folds
each call's columns into one padded K x (batch*N) matrix, which is the input of that call (its padding
strips zeroed, the rest written by the fold), so it stays in the call's time.

Shapes as in experiments/conv/lowp.py: the filter a is M x K or G x M x K, the columns b are
batch x (G*K) x N; the result is batch x (G*M) x N.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .grid import round_up

INT_MM_MIN_ROWS = 17   # torch._int_mm on CUDA: "self.size(0) needs to be greater than 16"
INT_MM_MULTIPLE = 8    # ... K and N "a multiple of 8"


@dataclass(frozen=True)
class PreparedFilter:
    """A layer's filter made ready for the vendor GEMM once: G x M x K half, or G x rows x depth int8 (M x K
    of each group's zero-padded to _int_mm's shape rules)."""

    tensor: torch.Tensor
    m: int
    k: int

    @property
    def groups(self) -> int:
        return self.tensor.shape[0]


def prepare(a) -> PreparedFilter:
    """The filter (a CuPy array or a torch tensor, M x K or G x M x K, half or int8), once per layer."""
    ta = a if isinstance(a, torch.Tensor) else torch.from_dlpack(a)
    a3 = ta if ta.dim() == 3 else ta.unsqueeze(0)
    groups, m, k = a3.shape
    if a3.dtype != torch.int8:
        return PreparedFilter(a3, m, k)
    padded = torch.zeros((groups, round_up(max(m, INT_MM_MIN_ROWS), INT_MM_MULTIPLE), round_up(k, INT_MM_MULTIPLE)),
                         dtype=torch.int8, device=a3.device)
    padded[:, :m, :k] = a3
    return PreparedFilter(padded, m, k)


def gemm(a: PreparedFilter, b):
    """The prepared filter times CuPy columns, through DLPack views (no copies): int8 -> int32, float16 -> float32,
    as a CuPy array."""
    import cupy
    tb = torch.from_dlpack(b)
    return cupy.from_dlpack(int8_gemm(a, tb) if a.tensor.dtype == torch.int8 else fp16_gemm(a, tb))


def _prepared(a) -> PreparedFilter:
    return a if isinstance(a, PreparedFilter) else prepare(a)


def fp16_gemm(a, b: torch.Tensor) -> torch.Tensor:
    """float16 filter times float16 columns -> float32, accumulated in float32: per group one batched call
    whose filter operand is the same matrix for every image (a stride-0 batch, no copy)."""
    a = _prepared(a)
    batch, n = b.shape[0], b.shape[-1]
    b4 = b.reshape(batch, a.groups, a.k, n)
    if a.groups == 1:
        return torch.bmm(a.tensor[0].expand(batch, a.m, a.k), b4[:, 0], out_dtype=torch.float32)
    out = torch.empty((batch, a.groups * a.m, n), dtype=torch.float32, device=b.device)
    for g in range(a.groups):
        out[:, g * a.m:(g + 1) * a.m] = torch.bmm(a.tensor[g].expand(batch, a.m, a.k), b4[:, g],
                                                  out_dtype=torch.float32)
    return out


def int8_gemm(a, b: torch.Tensor) -> torch.Tensor:
    """int8 filter times int8 columns -> int32 (exact), the batch folded into N."""
    a = _prepared(a)
    m, k = a.m, a.k
    rows, depth = a.tensor.shape[1:]
    batch, n = b.shape[0], b.shape[-1]
    b4 = b.reshape(batch, a.groups, k, n)
    cols = round_up(batch * n, INT_MM_MULTIPLE)
    out = torch.empty((batch, a.groups * m, n), dtype=torch.int32, device=b.device)
    folded = torch.empty((depth, cols), dtype=torch.int8, device=b.device)
    folded[k:].zero_()                 # the padding only: the fold below writes the rest
    folded[:k, batch * n:].zero_()
    for g in range(a.groups):
        folded[:k, :batch * n].view(k, batch, n).copy_(b4[:, g].permute(1, 0, 2))
        try:
            c = torch._int_mm(a.tensor[g], folded)
        except RuntimeError as err:
            raise RuntimeError(f"the vendor int8 GEMM (torch._int_mm) refused a {rows}x{depth} by {depth}x{cols} "
                               f"product on this device ({err}); use gemm=blocked for int8 here") from err
        out[:, g * m:(g + 1) * m] = c[:m, :batch * n].view(m, batch, n).permute(1, 0, 2)
    return out
