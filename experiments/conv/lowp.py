"""Reduced-precision convolutions: fp16 (half storage, float32 accumulation) and int8.

    dtype  storage of input and filter       products and sums         output
    fp32   float32                           float32                   float32
    fp16   half (round to nearest even)      float32                   float32
    int8   int8, symmetric (zero point 0)    int32 (exact)             float32, dequantized

int8 scales: the filter has one scale per output channel, s_w[f] = max|W[f]| / 127; the input
one per tensor, s_x = max|x| / 127 of a calibration batch (``act_scale``; without one, of each
input as it comes, i.e. dynamic quantization). q = clamp(rint(v / s), -127, 127), so
y[f] = s_x * s_w[f] * sum(q_x * q_w) + bias: the int32 sum is exact, and the result equals the
float64 convolution of the *dequantized* operands up to the float32 rounding of the last
multiply. That dequantized convolution is the reference the int8 kernels are tested against
exactly; the float32 model is the reference for the accuracy cost (tolerance.py).

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
kernel, so their accuracy cost is modelled but their time is float32's.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from . import vendor_lowp
from .geometry import ConvGeometry
from .kernel_launch import (ELEMENTWISE_BLOCK, GEMM_WPT, MAX_GRID_Y, MAX_GRID_Z, SCALAR_COB, SCALAR_COBS,
                            SCALAR_PIXELS, KernelLauncher)

DTYPES = ("fp32", "fp16", "int8")
INT8_MAX = 127
ELEMENT_BYTES = {"fp32": 4, "fp16": 2, "int8": 1}
BLOCK = 256                 # threads per block of the conversion kernels (hip/quantize.hip)
MAX_GRID_X = 65535          # the conversion kernels grid-stride beyond this many blocks


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

    @property
    def shape(self):
        return self.values.shape

    def output_scale(self, s_x: float, xp):
        """float32 s_x * s_w[f] per output channel (int8)."""
        return (self.channel_scale * np.float32(s_x)).astype(xp.float32)   # the runtime's array first (cupy)


def prepare(weight, algo: str, groups: int, dtype: str, xp, act_scale: float | None = None,
            depthwise: bool = False, has_kernels: bool = True) -> LowpFilter:
    """Quantize a float32 F x C/G x KH x KW filter once, in the layout ``algo`` multiplies with."""
    from .plan import prepare_weight
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


def layer_cost(cost, g: ConvGeometry, dtype: str):
    """The float32 accounting with the input and filter at the dtype's element size (output float32)."""
    if dtype == "fp32":
        return cost
    e = ELEMENT_BYTES[dtype]
    min_bytes = (e * g.batch * g.in_channels * g.in_h * g.in_w
                 + e * g.out_channels * g.group_in_channels * g.taps
                 + 4 * g.batch * g.out_channels * g.out_h * g.out_w)
    return replace(cost, min_bytes=min_bytes, kernel=f"{cost.kernel}/{dtype}")


# --- execution ------------------------------------------------------------------------------

def run(plan, x, g: ConvGeometry):
    """A reduced-precision plan on a float32 input; returns (float32 output without bias, workspace bytes)."""
    w: LowpFilter = plan.prepared_weight
    xp = plan.runtime.xp
    if g.is_depthwise:
        from . import kernel_launch, reference
        s_x = w.act_scale if w.act_scale is not None or w.dtype != "int8" else activation_scale(x)
        xr = xp.ascontiguousarray(round_trip(x, w.dtype, s_x, xp))
        if plan.runtime.has_kernels:
            launcher = kernel_launch.KernelLauncher(plan.runtime, "vendor", plan.tile)
            return kernel_launch.depthwise(launcher, xr, w.values, g)
        return reference.depthwise(xr, w.values, g)
    if plan.runtime.has_kernels:
        return _run_kernels(plan, x, g)
    return _run_numpy(plan, x, g)


def _run_numpy(plan, x, g: ConvGeometry):
    """The numpy backend: the reference algorithms on the stored values (see the module docstring)."""
    from . import reference
    w: LowpFilter = plan.prepared_weight
    algorithm = reference.ALGORITHMS[plan.algo]
    if w.dtype == "fp16":
        return algorithm(x.astype(np.float16).astype(np.float32), w.host, g)
    s_x = w.act_scale if w.act_scale is not None else activation_scale(x)
    acc, workspace = algorithm(quantize(x, s_x), w.host, g)     # exact integer sums (float64 BLAS)
    scale = w.output_scale(s_x, np).reshape(1, -1, 1, 1)
    return np.ascontiguousarray(acc.astype(np.float32) * scale), workspace


def _run_kernels(plan, x, g: ConvGeometry):
    w: LowpFilter = plan.prepared_weight
    launcher = LowpLauncher(plan.runtime, plan.kernel_gemm or plan.gemm, plan.tile)
    fp16 = w.dtype == "fp16"
    if fp16:
        xq, scale = launcher.to_half(x), None
    else:
        s_x = w.act_scale if w.act_scale is not None else activation_scale(x)
        xq, scale = launcher.quantize(x, s_x), w.output_scale(s_x, launcher.xp)
    pixels = g.out_h * g.out_w
    if plan.algo == "scalar":
        acc = launcher.scalar(xq, w.values, g)
        y = acc if fp16 else launcher.dequantize(acc, scale, g.out_channels, pixels, 1)
        return y.reshape(g.output_shape), 0
    if plan.algo == "im2col":
        if g.is_pointwise:
            cols, workspace = xq.reshape(g.batch, g.in_channels, g.in_h * g.in_w), 0
        else:
            cols = launcher.im2col(xq, g)
            workspace = cols.nbytes
        acc = launcher.gemm(w.values, cols)
        y = acc if fp16 else launcher.dequantize(acc, scale, g.out_channels, pixels, 1)
        return y.reshape(g.output_shape), workspace
    # kn2row: one GEMM on the input as it is, float32 partial planes, the float32 shift-add
    acc = launcher.gemm(w.values, xq.reshape(g.batch, g.in_channels, g.in_h * g.in_w))
    workspace = acc.nbytes
    if fp16:
        partial = acc
    else:
        partial = launcher.dequantize(acc, scale, g.out_channels * g.taps, g.in_h * g.in_w, g.taps)
        workspace += partial.nbytes
    if g.is_pointwise:
        return partial.reshape(g.output_shape), 0
    return launcher.shift_add(partial, g), workspace


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class LowpLauncher(KernelLauncher):
    """The reduced-precision kernels (hip/gemm_lowp.hip, im2col_lowp.hip, scalar_conv_lowp.hip,
    quantize.hip) on one runtime; the float32 shift-add comes from KernelLauncher."""

    def _elementwise(self, n: int) -> tuple:
        return (min(_ceil_div(max(n, 1), BLOCK), MAX_GRID_X),), (BLOCK,)

    def to_half(self, x):
        y = self.xp.empty(x.shape, dtype=self.xp.float16)
        grid, block = self._elementwise(x.size)
        self._kernel("quantize.hip", "to_half")(grid, block, (x, y, np.int64(x.size)))
        return y

    def quantize(self, x, scale: float):
        q = self.xp.empty(x.shape, dtype=self.xp.int8)
        grid, block = self._elementwise(x.size)
        self._kernel("quantize.hip", "quantize_int8")(grid, block, (x, q, np.float32(1.0 / scale), np.int64(x.size)))
        return q

    def dequantize(self, acc, scale, rows: int, cols: int, rows_per_scale: int):
        """float32 acc * scale[row // rows_per_scale] for acc of shape batch x rows x cols (any view of it)."""
        y = self.xp.empty(acc.shape, dtype=self.xp.float32)
        grid, block = self._elementwise(acc.size)
        self._kernel("quantize.hip", "dequantize_int32")(
            grid, block, (acc, scale, y, np.int32(rows), np.int32(cols), np.int32(rows_per_scale), np.int64(acc.size)))
        return y

    def gemm(self, a, b):
        """(M x K) or G x M x K low-precision filter times batch x (G*K) x N: float32 (fp16) or int32 (int8)."""
        batch, _, n = b.shape
        groups, m, k = (1, *a.shape) if a.ndim == 2 else a.shape
        int8 = a.dtype == np.int8
        if self.gemm_name != "blocked":
            return self._vendor(a, b, groups, m, k, int8)
        if batch * groups > MAX_GRID_Z:
            raise ValueError(f"gemm_blocked: {batch} images x {groups} groups exceeds the grid's z limit of {MAX_GRID_Z}")
        c = self.xp.empty((batch, groups * m, n), dtype=self.xp.int32 if int8 else self.xp.float32)
        block_tile = self.tile * GEMM_WPT
        name = "gemm_blocked_int8" if int8 else "gemm_blocked_fp16"
        kernel = self._kernel("gemm_lowp.hip", name, TILE=self.tile, WPT=GEMM_WPT)
        kernel((_ceil_div(n, block_tile), _ceil_div(m, block_tile), batch * groups), (self.tile, self.tile),
               (a, b, c, np.int32(m), np.int32(n), np.int32(k), np.int32(groups),
                np.int64(m * k), np.int64(k * n), np.int64(m * n)))
        return c

    def _vendor(self, a, b, groups, m, k, int8):
        if self.runtime.is_gpu:
            return vendor_lowp.gemm(a, b)
        batch, n = b.shape[0], b.shape[2]
        bg = b.reshape(batch, groups, k, n) if groups > 1 else b
        # no half or int8 BLAS on the CPU: exact emulation with float BLAS
        wide = np.float64 if int8 else np.float32
        out = np.matmul(a.astype(wide), bg.astype(wide))
        out = out.astype(np.int32) if int8 else out
        return out.reshape(batch, groups * m, n)

    def scalar(self, x, w, g: ConvGeometry):
        int8 = w.dtype == np.int8
        out = self.xp.empty(g.output_shape, dtype=self.xp.int32 if int8 else self.xp.float32)
        per_group = g.group_out_channels
        cob = next((c for c in SCALAR_COBS if c >= per_group), SCALAR_COB) if g.groups > 1 else SCALAR_COB
        kernel = self._kernel("scalar_conv_lowp.hip", "scalar_conv_int8" if int8 else "scalar_conv_fp16", COB=cob)
        kernel((_ceil_div(g.out_h * g.out_w, SCALAR_PIXELS), g.groups * _ceil_div(per_group, cob), g.batch),
               (SCALAR_PIXELS,),
               (x, w, out, *(np.int32(v) for v in (g.in_channels, g.in_h, g.in_w, g.out_channels, g.groups,
                                                   *g.kernel_args()))))
        return out

    def im2col(self, x, g: ConvGeometry):
        rows, pixels = g.in_channels * g.taps, g.out_h * g.out_w
        cols = self.xp.empty((g.batch, rows, pixels), dtype=x.dtype)
        name = "im2col_int8" if x.dtype == np.int8 else "im2col_fp16"
        self._kernel("im2col_lowp.hip", name)(
            (_ceil_div(pixels, ELEMENTWISE_BLOCK), min(rows, MAX_GRID_Y), g.batch), (ELEMENTWISE_BLOCK,),
            (x, cols, *(np.int32(v) for v in (g.in_channels, g.in_h, g.in_w, *g.kernel_args()))))
        return cols


# --- calibration ----------------------------------------------------------------------------

def calibrate(model, batch) -> dict[str, float]:
    """Static int8 calibration: each ``nn.Conv2d``'s per-tensor input scale (max|x| / 127) over one
    forward of the float32 ``model`` on a calibration ``batch``; layer name -> scale (for swap_conv2d)."""
    import torch
    from torch import nn

    peaks: dict[str, float] = {}

    def observe(name):
        def hook(module, args):
            peak = float(args[0].detach().abs().max()) if args[0].numel() else 0.0
            peaks[name] = max(peaks.get(name, 0.0), peak)
        return hook

    hooks = [m.register_forward_pre_hook(observe(name)) for name, m in model.named_modules() if type(m) is nn.Conv2d]
    try:
        with torch.no_grad():
            model(batch)
    finally:
        for hook in hooks:
            hook.remove()
    return {name: (peak / INT8_MAX if peak > 0 else 1.0) for name, peak in peaks.items()}
