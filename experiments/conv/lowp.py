"""Reduced precision's maths: fp16 (half storage, float32 accumulation) and int8 quantization.

The launch code is the float32 one (experiments/conv/kernel_launch.py: precision is a parameter of
the launcher); this module holds what the precisions compute: scales, rounding, the prepared
filter and the numpy backend's exact emulation (calibration: experiments/compress/quantization.py).

    dtype  storage of input and filter       products and sums         output
    fp32   float32                           float32                   float32
    fp16   half (round to nearest even)      float32                   float32
    int8   int8, symmetric (zero point 0)    int32 (exact)             float32, dequantized

int8 scales: the filter has one scale per output channel, s_w[f] = max|W[f]| / 127; the input
one per tensor from a calibration batch (``act_scale``: max|x| / 127 or a percentile of |x|,
experiments/compress/quantization.py; without one, max|x| / 127 of each input as it comes, i.e.
dynamic quantization). q = clamp(rint(v / s), -127, 127), so y[f] = s_x * s_w[f] * sum(q_x * q_w)
+ bias: the int32 sum is exact, so a right int8 layer's output is known to the bit, which is how
experiments/conv/exactness.py gates it; what the rounding costs against the float32 model is
measured apart (experiments/compress/precision_cost.py).

Where each algorithm does it (hip/ kernels; the numpy backend follows the same steps):

    fp16  x -> half (to_half);  im2col_fp16 | gemm_blocked_fp16 or vendor | scalar_conv_fp16
          kn2row: float32 partial planes, the float32 shift-add
    int8  x -> int8 (quantize_int8);  im2col_int8 | gemm_blocked_int8 or vendor | scalar_conv_int8
          -> int32 -> dequantize_int32 (kn2row: dequantize the partial planes, then shift-add)

Vendor GEMMs: on a GPU, experiments/conv/vendor_lowp.py (half in, float32 accumulation and
output; int8 in, int32 out; one call per layer). On the CPU there is no half or int8 BLAS:
half values are multiplied by float32 BLAS (products of two halves are exact in float32, so this
is exactly half storage with float32 accumulation), int8 values by float64 BLAS (exact for these
integers: the same result as int32 accumulation, faster than numpy's integer matmul). So on the
CPU the reduced precisions cost conversions and deliver no speedup: that is what this CPU gives.

Depthwise layers (groups == C_in) have no reduced-precision kernel: their input and filter are
rounded to the dtype (fp16, or int8 with the same scales) and run by the float32 depthwise
kernel, so their accuracy cost is modelled but their time is float32's. ``quant.skip`` keeps
chosen layers in float32 altogether (swap_conv2d's ``fp32_layers``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .geometry import ConvGeometry
from .layout import prepare_weight
from .variant import DTYPES

INT8_MAX = 127


def check_dtype(dtype: str, gemm: str = "vendor") -> None:
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; valid: {', '.join(DTYPES)}")
    if dtype != "fp32" and gemm in ("sparse", "auto_sparse"):
        raise ValueError(f"gemm={gemm!r} (CSR SpMM) is float32 only; dtype={dtype!r} runs the blocked or vendor GEMM")


# --- quantization ---------------------------------------------------------------------------

def activation_scale(x) -> float:
    """The per-tensor int8 scale of x: max|x| / 127 (1 for an all-zero tensor)."""
    peak = float(abs(x).max()) if x.size else 0.0
    return peak / INT8_MAX if peak > 0 else 1.0


def quantize(x, scale: float, xp=np):
    """Symmetric int8: clamp(rint(x / scale), -127, 127), computed as x * float32(1/scale) like the kernel."""
    inv = np.float32(1.0 / scale)
    return xp.clip(xp.rint(x * inv), -INT8_MAX, INT8_MAX).astype(xp.int8)


def channel_scales(w, xp=np):
    """Per-output-channel int8 scales of a F x ... filter: max|W[f]| / 127 (1 for an all-zero channel)."""
    peak = xp.abs(w.reshape(w.shape[0], -1)).max(axis=1).astype(xp.float32)
    return xp.where(peak > 0, peak / np.float32(INT8_MAX), np.float32(1.0)).astype(xp.float32)


def quantize_weight(w, xp=np):
    """(int8 filter, float32 per-channel scales) of a float32 F x C x KH x KW filter."""
    scales = channel_scales(w, xp)
    q = xp.clip(xp.rint(w / scales.reshape(-1, *([1] * (w.ndim - 1)))), -INT8_MAX, INT8_MAX).astype(xp.int8)
    return q, scales


def round_trip(x, dtype: str, scale: float | None = None, xp=np):
    """x as the dtype stores it, back in float32 (the values a reduced-precision layer computes with)."""
    if dtype == "fp16":
        return x.astype(xp.float16).astype(xp.float32)
    if dtype == "int8":
        scale = activation_scale(x) if scale is None else scale
        return quantize(x, scale, xp).astype(xp.float32) * np.float32(scale)
    return x


@dataclass
class LowpFilter:
    """A filter prepared for a reduced-precision plan (``ConvPlan.prepared_weight``)."""

    dtype: str
    values: object                  # half or int8, in the algorithm's layout (plan.prepare_weight);
                                    # depthwise: float32 values rounded to the dtype
    channel_scale: object | None    # int8: float32 s_w per output channel
    act_scale: float | None         # int8: calibrated s_x; None: from each input
    host: object | None = None      # numpy backend: the values as float32 (fp16) or float64 (int8) for BLAS
    vendor: object | None = None    # gemm=vendor on a GPU: the values ready for it (vendor_lowp.PreparedFilter)

    @property
    def shape(self):
        return self.values.shape

    def output_scale(self, s_x: float, xp):
        """float32 s_x * s_w[f] per output channel (int8)."""
        return (self.channel_scale * np.float32(s_x)).astype(xp.float32)   # the runtime's array first (cupy)


def prepare(weight, algo: str, groups: int, dtype: str, xp, act_scale: float | None = None,
            depthwise: bool = False, has_kernels: bool = True) -> LowpFilter:
    """Quantize a float32 F x C/G x KH x KW filter once, in the layout ``algo`` multiplies with."""
    check_dtype(dtype)
    scales = None
    if dtype == "fp16":
        q = weight.astype(xp.float16)
    else:
        q, scales = quantize_weight(weight, xp)
    if depthwise:
        rounded = q.astype(xp.float32) if dtype == "fp16" else q.astype(xp.float32) * scales.reshape(-1, 1, 1, 1)
        return LowpFilter(dtype, prepare_weight(rounded.astype(xp.float32), "scalar", xp, groups), scales, act_scale)
    values = prepare_weight(q, algo, xp, groups)
    host = None
    if not has_kernels:
        host = values.astype(np.float32 if dtype == "fp16" else np.float64)
    return LowpFilter(dtype, values, scales, None if act_scale is None else float(act_scale), host)


# --- the numpy backend -------------------------------------------------------------------------

def run_reference(algorithm, x, w: LowpFilter, g: ConvGeometry):
    """A reference algorithm (experiments/conv/reference.py) at the filter's precision, exactly: see the
    module docstring; returns (float32 output without bias, workspace bytes)."""
    if g.is_depthwise:
        return algorithm(np.ascontiguousarray(round_trip(x, w.dtype, w.act_scale)), w.values, g)
    if w.dtype == "fp16":
        return algorithm(x.astype(np.float16).astype(np.float32), w.host, g)
    s_x = w.act_scale if w.act_scale is not None else activation_scale(x)
    acc, workspace = algorithm(quantize(x, s_x), w.host, g)     # exact integer sums (float64 BLAS)
    scale = w.output_scale(s_x, np).reshape(1, -1, 1, 1)
    return np.ascontiguousarray(acc.astype(np.float32) * scale), workspace
