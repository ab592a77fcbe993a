"""Is a reduced-precision layer right? Answered exactly, by arithmetic independent of the code under test.

int8 products of int8 values summed in int32 are exact, so a right int8 layer is known to the bit:

    int8, GEMM layers   the reference quantizes the input and filter by the stated maths (lowp.quantize,
                        lowp.quantize_weight: the same int8 tensors the layer computes with), sums the
                        products in int64 torch arithmetic (its own unfold, not our kernels), and
                        dequantizes as the layer must: float32(acc) * float32(s_x * s_w[f]) + bias, in
                        float32. im2col, scalar and 1x1 kn2row: the output must equal that bit for bit.
                        kn2row with KH*KW > 1 sums the dequantized partial planes in float32: each plane
                        must be bit-exact, so the output must lie within the float32 rounding of a
                        KH*KW-term sum of them (the bound below, with n = KH*KW + 1).

fp16 (and int8 depthwise layers, which round their operands and run the float32 depthwise kernel) is
float32 accumulation of rounded operands. The reference is the float64 convolution of the same rounded
input and filter; any float32 summation order of K = C/G * KH * KW terms (plus the product's rounding
where products of the operands are not exact in float32, and the bias add) lies within

    |y - y64| <= gamma(n) * (|x| * |w| + |b|),   gamma(n) = n u / (1 - n u), u = 2^-24

elementwise (Higham, Accuracy and Stability of Numerical Algorithms, 3.1), where ``*`` is the convolution;
every GEMM here, the vendor's on a GPU included (experiments/conv/vendor_lowp.py), accumulates and returns
float32 (int8: int32). A tap
read from the wrong place moves an output by about one term, ~1/K of |x| * |w|: above gamma(K) for K up
to about 4000 (fp16); int8 GEMM layers catch any wrong integer at any K. Where the operands overflow
half (|x| > 65504), the reference holds the same infinities (or NaN) the layer must give.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from . import lowp
from .api import resolve_padding

UNIT_ROUNDOFF = 2.0 ** -24    # float32


def gamma(n: int, unit: float = UNIT_ROUNDOFF) -> float:
    """Higham's gamma_n = n u / (1 - n u): the relative error bound of an n-term float sum."""
    return n * unit / (1.0 - n * unit)


@dataclass(frozen=True)
class Verdict:
    """The gate's answer for one layer."""

    layer: str
    dtype: str
    method: str          # "bit-exact" | "bit-exact planes, float32 shift-add" | "float32 bound"
    outputs: int         # elements compared
    wrong: int           # elements off the reference (beyond the bound)
    detail: str = ""     # the worst element, when wrong

    @property
    def ok(self) -> bool:
        return self.wrong == 0

    def describe(self) -> str:
        if self.ok:
            return f"{self.layer}: {self.dtype} {self.method} ({self.outputs} outputs)"
        reference = "the int64 reference" if self.method == "bit-exact" else "the float64 reference's bound"
        return (f"{self.layer}: {self.wrong} of {self.outputs} {self.dtype} outputs off {reference} "
                f"({self.method}); {self.detail}")


@dataclass(frozen=True)
class LayerSpec:
    """What the reference needs of a layer: its parameters, as nn.Conv2d holds them, and how it ran."""

    name: str
    weight: torch.Tensor            # F x C/G x KH x KW float32
    bias: torch.Tensor | None
    stride: tuple[int, int]
    padding: object                 # int, pair, "same" or "valid" (nn.Conv2d's)
    dilation: tuple[int, int]
    groups: int
    padding_mode: str
    dtype: str                      # fp16 | int8
    algo: str                       # im2col | kn2row | scalar
    act_scale: float | None         # int8: calibrated input scale; None: from each input

    @classmethod
    def of(cls, layer) -> "LayerSpec":
        """From an experiments.conv.swap.ConvbenchConv2d."""
        return cls(layer.name, layer.weight.detach(), None if layer.bias is None else layer.bias.detach(),
                   tuple(layer.stride), layer.padding, tuple(layer.dilation), layer.groups, layer.padding_mode,
                   layer.variant.dtype, layer.variant.algo, layer.act_scale)

    @property
    def depthwise(self) -> bool:
        return self.groups > 1 and self.weight.shape[1] == 1

    @property
    def taps(self) -> int:
        return int(self.weight.shape[2] * self.weight.shape[3])

    @property
    def reduction(self) -> int:
        """K: the products summed into one output."""
        return int(self.weight.shape[1]) * self.taps


def check_layer(layer, x: torch.Tensor, y: torch.Tensor) -> Verdict:
    """Gate the output ``y`` that the ConvbenchConv2d ``layer`` (fp16 or int8) gave for input ``x``."""
    return check(LayerSpec.of(layer), x, y)


def check(spec: LayerSpec, x: torch.Tensor, y: torch.Tensor) -> Verdict:
    if spec.dtype not in ("fp16", "int8"):
        raise ValueError(f"the exactness gate is for fp16 and int8 layers; {spec.name} is {spec.dtype!r}")
    x = _padded(spec, x.detach().float().cpu())
    y = y.detach().cpu().to(torch.float64)
    if spec.dtype == "int8" and not spec.depthwise:
        return _check_int8(spec, x, y)
    return _check_float(spec, x, y)


def _padded(spec: LayerSpec, x: torch.Tensor) -> torch.Tensor:
    """x with the layer's padding applied (nn.Conv2d's semantics), so the references convolve unpadded."""
    (ph, pw), (eh, ew) = resolve_padding(spec.padding, tuple(spec.weight.shape), spec.stride, spec.dilation)
    pad = (pw, pw + ew, ph, ph + eh)
    if not any(pad):
        return x
    return F.pad(x, pad, mode="constant" if spec.padding_mode == "zeros" else spec.padding_mode)


def _input_scale(spec: LayerSpec, x: torch.Tensor) -> float:
    return spec.act_scale if spec.act_scale is not None else lowp.activation_scale(x.numpy())


def integer_conv(qx: torch.Tensor, qw: torch.Tensor, stride, dilation, groups: int,
                 per_tap: bool = False) -> torch.Tensor:
    """Unpadded convolution in int64: N x C x H x W and F x C/G x KH x KW -> N x F x HO x WO
    (x KH*KW with ``per_tap``: each filter offset's partial sum, kn2row's partial planes)."""
    qx, qw = qx.to(torch.int64), qw.to(torch.int64)
    n, f, (cg, kh, kw) = qx.shape[0], qw.shape[0], qw.shape[1:]
    (sh, sw), (dh, dw) = stride, dilation
    windows = qx.unfold(2, (kh - 1) * dh + 1, sh).unfold(3, (kw - 1) * dw + 1, sw)[..., ::dh, ::dw]
    ho, wo = windows.shape[2:4]
    windows = windows.reshape(n, groups, cg, ho, wo, kh, kw)
    filters = qw.reshape(groups, f // groups, cg, kh, kw)
    if per_tap:
        return torch.einsum("ngchwij,gfcij->ngfhwij", windows, filters).reshape(n, f, ho, wo, kh * kw)
    return torch.einsum("ngchwij,gfcij->ngfhw", windows, filters).reshape(n, f, ho, wo)


def _check_int8(spec: LayerSpec, x: torch.Tensor, y: torch.Tensor) -> Verdict:
    s_x = _input_scale(spec, x)
    qx = torch.from_numpy(lowp.quantize(x.numpy(), s_x))
    qw, s_w = lowp.quantize_weight(spec.weight.cpu().numpy())
    scale = torch.from_numpy((s_w * np.float32(s_x)).astype(np.float32))       # float32 s_x * s_w[f]
    bias = None if spec.bias is None else spec.bias.cpu().float()
    shift_add = spec.algo == "kn2row" and spec.taps > 1
    acc = integer_conv(qx, torch.from_numpy(qw), spec.stride, spec.dilation, spec.groups, per_tap=shift_add)
    if not shift_add:    # one int32 sum per output, dequantized once: the result is known to the bit
        reference = acc.to(torch.float32) * scale.reshape(1, -1, 1, 1)
        if bias is not None:
            reference = reference + bias.reshape(1, -1, 1, 1)
        return _compare_exact(spec, y, reference.to(torch.float64))
    planes = (acc.to(torch.float32) * scale.reshape(1, -1, 1, 1, 1)).to(torch.float64)   # each bit-exact
    reference, magnitude = planes.sum(-1), planes.abs().sum(-1)
    if bias is not None:
        reference, magnitude = reference + _b64(bias), magnitude + _b64(bias).abs()
    return _compare_bounded(spec, y, reference, gamma(spec.taps + 1) * magnitude, "bit-exact planes, float32 shift-add")


def _check_float(spec: LayerSpec, x: torch.Tensor, y: torch.Tensor) -> Verdict:
    w = spec.weight.cpu().float()
    if spec.dtype == "fp16":
        xr, wr = x.half().double(), w.half().double()
        products_exact = True     # 11 x 11 significant bits fit in float32's 24
    else:   # int8 depthwise: the operands the layer rounds, as float32, to the float32 kernel
        s_x = _input_scale(spec, x)
        qw, s_w = lowp.quantize_weight(w.numpy())
        xr = torch.from_numpy(lowp.quantize(x.numpy(), s_x).astype(np.float32) * np.float32(s_x)).double()
        wr = torch.from_numpy(qw.astype(np.float32) * s_w.reshape(-1, 1, 1, 1)).double()
        products_exact = False
    conv = dict(stride=spec.stride, dilation=spec.dilation, groups=spec.groups)
    reference = F.conv2d(xr, wr, **conv)
    magnitude = F.conv2d(xr.abs(), wr.abs(), **conv)
    terms = spec.reduction + (0 if products_exact else 1) + 1      # + the bias add
    bound = gamma(terms) * magnitude
    if spec.bias is not None:
        b = _b64(spec.bias.cpu().float())
        reference, bound = reference + b, bound + gamma(terms) * b.abs()
    return _compare_bounded(spec, y, reference, bound)


def _b64(bias: torch.Tensor) -> torch.Tensor:
    return bias.to(torch.float64).reshape(1, -1, 1, 1)


def _compare_exact(spec: LayerSpec, y: torch.Tensor, reference: torch.Tensor) -> Verdict:
    _same_shape(spec, y, reference)
    wrong = y != reference
    return Verdict(spec.name, spec.dtype, "bit-exact", y.numel(), int(wrong.sum()), _worst(y, reference, wrong))


def _compare_bounded(spec: LayerSpec, y: torch.Tensor, reference: torch.Tensor, bound: torch.Tensor,
                     method: str = "float32 bound") -> Verdict:
    _same_shape(spec, y, reference)
    excess = (y - reference).abs() - bound
    # operands past half's range give the reference infinities (or NaN, inf - inf): the kernel must match
    same = (y == reference) | (y.isnan() & reference.isnan())
    wrong = ~(same | (excess <= 0))
    return Verdict(spec.name, spec.dtype, method, y.numel(), int(wrong.sum()),
                   _worst(y, reference, wrong, bound))


def _same_shape(spec: LayerSpec, y: torch.Tensor, reference: torch.Tensor) -> None:
    if y.shape != reference.shape:
        raise ValueError(f"{spec.name}: output shape {tuple(y.shape)}, the reference's {tuple(reference.shape)}")


def _worst(y, reference, wrong, bound=None) -> str:
    if not bool(wrong.any()):
        return ""
    gap = torch.where(wrong, (y - reference).abs().nan_to_num(float("inf")), torch.zeros_like(y))
    index = np.unravel_index(int(gap.argmax()), tuple(y.shape))
    where = ", ".join(map(str, index))
    text = f"worst at [{where}]: {float(y[index]):.9g}, reference {float(reference[index]):.9g}"
    return text + (f" (bound {float(bound[index]):.3g})" if bound is not None else "")
