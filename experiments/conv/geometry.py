"""Shape of one convolution layer: everything the algorithms and the accounting need."""
from __future__ import annotations

from dataclasses import dataclass


def as_pair(value, name: str) -> tuple[int, int]:
    """Normalise an int or a length-2 sequence of ints (torch's convention) to a pair."""
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) for v in pair):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return pair  # type: ignore[return-value]


@dataclass(frozen=True)
class ConvGeometry:
    """A 2-D convolution of an N x C_in x H x W input with a C_out x C_in/groups x KH x KW filter.

    Output size per axis: (in + 2*pad - dil*(k-1) - 1) // stride + 1, as in torch.
    """

    batch: int
    in_channels: int
    out_channels: int
    in_h: int
    in_w: int
    kernel_h: int
    kernel_w: int
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    def __post_init__(self) -> None:
        for name in ("stride", "dilation"):
            if min(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if min(self.padding) < 0:
            raise ValueError(f"padding must be >= 0, got {self.padding}")
        if self.groups < 1 or self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(
                f"groups={self.groups} must divide in_channels={self.in_channels} "
                f"and out_channels={self.out_channels}")
        if self.out_h < 1 or self.out_w < 1:
            raise ValueError(
                f"input {self.in_h}x{self.in_w} is too small for a {self.kernel_h}x{self.kernel_w} "
                f"kernel with padding {self.padding} and dilation {self.dilation}")

    @classmethod
    def from_shapes(cls, x_shape, w_shape, stride=1, padding=0, dilation=1, groups=1) -> "ConvGeometry":
        if len(x_shape) != 4 or len(w_shape) != 4:
            raise ValueError(
                f"expected a 4-D input (N, C, H, W) and a 4-D weight (C_out, C_in/groups, KH, KW), "
                f"got shapes {tuple(x_shape)} and {tuple(w_shape)}")
        n, c, h, w = (int(v) for v in x_shape)
        f, c_per_group, kh, kw = (int(v) for v in w_shape)
        if c_per_group * groups != c:
            raise ValueError(
                f"weight of shape {tuple(w_shape)} with groups={groups} expects {c_per_group * groups} "
                f"input channels, but the input has {c}")
        return cls(n, c, f, h, w, kh, kw, as_pair(stride, "stride"), as_pair(padding, "padding"),
                   as_pair(dilation, "dilation"), groups)

    @property
    def out_h(self) -> int:
        return (self.in_h + 2 * self.padding[0] - self.dilation[0] * (self.kernel_h - 1) - 1) // self.stride[0] + 1

    @property
    def out_w(self) -> int:
        return (self.in_w + 2 * self.padding[1] - self.dilation[1] * (self.kernel_w - 1) - 1) // self.stride[1] + 1

    @property
    def taps(self) -> int:
        """Kernel offsets (kh, kw): the k*k of the lecture."""
        return self.kernel_h * self.kernel_w

    @property
    def is_pointwise(self) -> bool:
        """A 1x1, stride-1, unpadded convolution is already a GEMM on the input as it lies."""
        return self.taps == 1 and self.stride == (1, 1) and self.padding == (0, 0)

    @property
    def group_in_channels(self) -> int:
        """Input channels each group sees (C_in / groups)."""
        return self.in_channels // self.groups

    @property
    def group_out_channels(self) -> int:
        """Output channels each group produces (C_out / groups)."""
        return self.out_channels // self.groups

    @property
    def is_depthwise(self) -> bool:
        """One input channel per group (groups == C_in > 1), C_out a multiple of C_in: the
        depthwise kernel's case (MobileNet, ShuffleNet); every algorithm runs it directly."""
        return self.groups > 1 and self.groups == self.in_channels

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.out_channels, self.out_h, self.out_w)

    def kernel_args(self) -> tuple[int, ...]:
        """The geometry as the kernels of hip/ take it: KH, KW, SH, SW, PH, PW, DH, DW, HO, WO."""
        return (self.kernel_h, self.kernel_w, *self.stride, *self.padding, *self.dilation, self.out_h, self.out_w)
