"""The vendors' reduced-precision GEMMs, one call per layer, on torch tensors (DLPack views of CuPy arrays).

    fp16_gemm   half operands, float32 accumulation and float32 output: torch.bmm(..., out_dtype=float32),
                cublasGemmEx / hipBLAS(Lt) with a float32 C. (CuPy's matmul of halves returns half: every
                result would be rounded to half, and on ROCm CuPy computes half matmul in float32.)
    int8_gemm   int8 operands, int32 output: torch._int_mm, cuBLASLt's int8 GEMM (hipBLASLt on ROCm). Its
                shape rules (more than 16 rows, K and N multiples of 8) are met by zero padding; the batch
                is folded into N so a layer is one call (a grouped layer: one call per group).

Shapes as in experiments/conv/lowp.py: the filter a is M x K or G x M x K, the columns b are
batch x (G*K) x N; the result is batch x (G*M) x N.
"""
from __future__ import annotations

import torch

from .grid import round_up

INT_MM_MIN_ROWS = 17   # torch._int_mm on CUDA: "self.size(0) needs to be greater than 16"
INT_MM_MULTIPLE = 8    # ... K and N "a multiple of 8"


def gemm(a, b):
    """CuPy arrays in and out, through DLPack views (no copies): int8 -> int32, float16 -> float32."""
    import cupy
    ta, tb = torch.from_dlpack(a), torch.from_dlpack(b)
    return cupy.from_dlpack(int8_gemm(ta, tb) if ta.dtype == torch.int8 else fp16_gemm(ta, tb))


def _grouped(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """a as G x M x K, b as batch x G x K x N."""
    a3 = a if a.dim() == 3 else a.unsqueeze(0)
    groups, _, k = a3.shape
    return a3, b.reshape(b.shape[0], groups, k, b.shape[-1])


def fp16_gemm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """float16 filter times float16 columns -> float32, accumulated in float32, in one batched call."""
    a3, b4 = _grouped(a, b)
    batch, groups, k, n = b4.shape
    m = a3.shape[1]
    filters = a3.unsqueeze(0).expand(batch, groups, m, k).reshape(batch * groups, m, k)
    out = torch.bmm(filters, b4.reshape(batch * groups, k, n), out_dtype=torch.float32)
    return out.reshape(batch, groups * m, n)


def int8_gemm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """int8 filter times int8 columns -> int32 (exact), the batch folded into N."""
    a3, b4 = _grouped(a, b)
    batch, groups, k, n = b4.shape
    m = a3.shape[1]
    rows = round_up(max(m, INT_MM_MIN_ROWS), INT_MM_MULTIPLE)
    depth = round_up(k, INT_MM_MULTIPLE)
    cols = round_up(batch * n, INT_MM_MULTIPLE)
    out = torch.empty((batch, groups * m, n), dtype=torch.int32, device=b.device)
    filt = torch.zeros((rows, depth), dtype=torch.int8, device=a.device)
    folded = torch.zeros((depth, cols), dtype=torch.int8, device=b.device)
    for g in range(groups):
        filt[:m, :k] = a3[g]
        folded[:k, :batch * n].view(k, batch, n).copy_(b4[:, g].permute(1, 0, 2))
        try:
            c = torch._int_mm(filt, folded)
        except RuntimeError as err:
            raise RuntimeError(f"the vendor int8 GEMM (torch._int_mm) refused a {rows}x{depth} by {depth}x{cols} "
                               f"product on this device ({err}); use gemm=blocked for int8 here") from err
        out[:, g * m:(g + 1) * m] = c[:m, :batch * n].view(m, batch, n).permute(1, 0, 2)
    return out
