"""A convolution layer prepared once for one algorithm, GEMM back-end and runtime."""
from __future__ import annotations

from dataclasses import dataclass, field

from . import kernel_launch, reference
from .accounting import LayerCost, layer_cost
from .geometry import ConvGeometry, as_pair
from .kernel_launch import KernelLauncher


def prepare_weight(w, algo: str, xp):
    """The F x C x KH x KW filter in the layout its algorithm multiplies with:

        im2col  F x (C*KH*KW)     rows are output channels, as the unfolded input's rows
        kn2row  (F*KH*KW) x C     row (f*KH + kh)*KW + kw: one filter tap of one output channel
        scalar  F x C x KH x KW   as given (the kernel reads it as F x (C*KH*KW))
    """
    f, c, kh, kw = w.shape
    if algo == "im2col":
        prepared = w.reshape(f, c * kh * kw)
    elif algo == "kn2row":
        prepared = w.transpose(0, 2, 3, 1).reshape(f * kh * kw, c)
    else:
        prepared = w
    return xp.ascontiguousarray(prepared)


@dataclass
class ConvPlan:
    """Weights in the algorithm's layout on the runtime's device, ready to run on any input shape."""

    algo: str
    gemm: str
    tile: int
    runtime: object
    weight_shape: tuple[int, int, int, int]
    prepared_weight: object
    bias: object | None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    last_cost: LayerCost | None = field(default=None, init=False)

    @classmethod
    def build(cls, weight, bias, stride, padding, dilation, groups, algo, gemm, tile, runtime) -> "ConvPlan":
        if groups != 1:
            raise NotImplementedError(
                f"groups={groups}: grouped and depthwise convolutions are not implemented by "
                f"convbench's algorithms yet (only groups=1); use algo='pytorch' for such layers")
        return cls(algo, gemm, tile, runtime, tuple(weight.shape), prepare_weight(weight, algo, runtime.xp), bias,
                   as_pair(stride, "stride"), as_pair(padding, "padding"), as_pair(dilation, "dilation"), groups)

    def geometry(self, x_shape) -> ConvGeometry:
        return ConvGeometry.from_shapes(x_shape, self.weight_shape, self.stride, self.padding,
                                        self.dilation, self.groups)

    def __call__(self, x):
        """Convolve a C-contiguous float32 array of the runtime; records ``last_cost``."""
        g = self.geometry(x.shape)
        if self.runtime.has_kernels:
            launcher = KernelLauncher(self.runtime, self.gemm, self.tile)
            y, workspace = kernel_launch.ALGORITHMS[self.algo](launcher, x, self.prepared_weight, g)
        else:
            y, workspace = reference.ALGORITHMS[self.algo](x, self.prepared_weight, g)
        if self.bias is not None:
            y += self.bias.reshape(1, -1, 1, 1)
        cost = layer_cost(g, self.algo)
        self.last_cost = LayerCost(cost.flops, cost.gemm_m, cost.gemm_n, cost.gemm_k, cost.min_bytes, workspace)
        return y
