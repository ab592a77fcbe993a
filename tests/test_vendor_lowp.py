"""The vendor reduced-precision GEMMs (experiments/conv/vendor_lowp.py) against float64 references on
fresh random data, at shapes that break every shape rule of torch._int_mm (few rows, K and N not
multiples of 8). int8 runs torch._int_mm on the CPU too, so the padding and folding are checked here;
fp16's float32-output GEMM exists on GPUs only."""
from __future__ import annotations

import pytest
import torch

from experiments.conv import vendor_lowp
from experiments.runtime import gpu_available

DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not (gpu_available() and torch.cuda.is_available()), reason="no GPU visible to CuPy and torch")])]
SHAPES = [  # groups, M, K, batch, N
    (1, 10, 27, 3, 49),     # 10 rows, K 27, N 49: all padded
    (1, 64, 576, 2, 196),   # a 14x14 layer
    (4, 12, 36, 2, 13),     # grouped
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("groups, m, k, batch, n", SHAPES)
def test_int8_gemm_is_exact(device, groups, m, k, batch, n):
    gen = torch.Generator().manual_seed(m * k + n)
    a = torch.randint(-127, 128, (groups, m, k) if groups > 1 else (m, k), generator=gen, dtype=torch.int8)
    b = torch.randint(-127, 128, (batch, groups * k, n), generator=gen, dtype=torch.int8)
    reference = (a.double().reshape(groups, m, k) @ b.double().reshape(batch, groups, k, n)).reshape(batch, groups * m, n)
    out = vendor_lowp.int8_gemm(a.to(device), b.to(device))
    assert out.dtype == torch.int32 and out.shape == (batch, groups * m, n)
    assert torch.equal(out.cpu().double(), reference)


@pytest.mark.gpu
@pytest.mark.skipif(not (gpu_available() and torch.cuda.is_available()), reason="no GPU visible to CuPy and torch")
@pytest.mark.parametrize("groups, m, k, batch, n", SHAPES + [(1, 256, 4608, 1, 4096)])
def test_fp16_gemm_accumulates_and_returns_float32(groups, m, k, batch, n):
    """Half products are exact in float32: with float32 accumulation and output the error is float32
    rounding only (~1e-6 relative), where a half result would be ~1e-3 off."""
    gen = torch.Generator().manual_seed(m + k + n)
    a = torch.randn((groups, m, k) if groups > 1 else (m, k), generator=gen).half()
    b = torch.randn((batch, groups * k, n), generator=gen).half()
    reference = (a.double().reshape(groups, m, k) @ b.double().reshape(batch, groups, k, n)).reshape(batch, groups * m, n)
    out = vendor_lowp.fp16_gemm(a.cuda(), b.cuda())
    assert out.dtype == torch.float32
    error = ((out.cpu().double() - reference).abs().max() / reference.abs().max()).item()
    assert error < 1e-5, error


@pytest.mark.parametrize("groups, m, k, batch, n", SHAPES)
def test_int8_operands_meet_the_cuda_shape_rules(monkeypatch, groups, m, k, batch, n):
    """The CPU's torch._int_mm takes any shape; cuBLASLt's needs more than 16 rows and K, N multiples
    of 8. A spy checks every call on the CPU, and that a layer is one call per group."""
    calls, real_int_mm = [], torch._int_mm

    def int_mm(a, b):
        calls.append((a.shape, b.shape))
        assert a.shape[0] > 16 and a.shape[1] % 8 == 0 and b.shape[1] % 8 == 0, (a.shape, b.shape)
        return real_int_mm(a, b)

    monkeypatch.setattr(torch, "_int_mm", int_mm)
    a = torch.randint(-127, 128, (groups, m, k) if groups > 1 else (m, k), dtype=torch.int8)
    vendor_lowp.int8_gemm(a, torch.randint(-127, 128, (batch, groups * k, n), dtype=torch.int8))
    assert len(calls) == groups
