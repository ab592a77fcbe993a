"""A convolution layer prepared once for one algorithm, GEMM back-end and runtime."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from . import kernel_launch, lowp, reference
from .accounting import LayerCost, layer_cost
from .geometry import ConvGeometry, as_pair
from .kernel_launch import KernelLauncher
from .sparse import CsrFilter, density, density_threshold


def prepare_weight(w, algo: str, xp, groups: int = 1):
    """The F x C x KH x KW filter in the layout its algorithm multiplies with:

        im2col  F x (C*KH*KW)     rows are output channels, as the unfolded input's rows
        kn2row  (F*KH*KW) x C     row (f*KH + kh)*KW + kw: one filter tap of one output channel
        scalar  F x C x KH x KW   as given (the kernel reads it as F x (C*KH*KW))

    With groups = G > 1 the filter is F x C/G x KH x KW and the GEMM layouts are stacked per
    group, G x (F/G) x (C/G*KH*KW) and G x (F/G*KH*KW) x C/G (the batched GEMM's A[g]).
    """
    f, c, kh, kw = w.shape
    if algo == "im2col":
        prepared = w.reshape(f, c * kh * kw)
    elif algo == "kn2row":
        prepared = w.transpose(0, 2, 3, 1).reshape(f * kh * kw, c)
    else:
        prepared = w
    if groups > 1 and algo in ("im2col", "kn2row"):
        prepared = prepared.reshape(groups, -1, prepared.shape[1])   # rows of group g are consecutive
    return xp.ascontiguousarray(prepared)


def resolve_gemm(gemm: str, algo: str, density: float, runtime) -> str:
    """The GEMM back-end a layer runs: auto_sparse becomes sparse at or below the runtime's density
    threshold (experiments.conv.sparse), else vendor; GEMM-free layers keep the choice as given."""
    if gemm != "auto_sparse" or algo not in ("im2col", "kn2row"):
        return gemm
    return "sparse" if density <= density_threshold(runtime) else "vendor"


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
    density: float = 1.0            # nonzeros / size of the filter
    kernel_gemm: str = ""           # the GEMM back-end that runs (auto_sparse resolved; "" without a GEMM)
    dtype: str = "fp32"             # fp32, fp16 or int8 (experiments.conv.lowp: prepared_weight is a LowpFilter)
    last_cost: LayerCost | None = field(default=None, init=False)

    @property
    def depthwise(self) -> bool:
        """groups == C_in > 1 (one input channel per group): the dedicated depthwise kernel, any algorithm."""
        return self.groups > 1 and self.weight_shape[1] == 1

    @classmethod
    def build(cls, weight, bias, stride, padding, dilation, groups, algo, gemm, tile, runtime,
              dtype: str = "fp32", act_scale: float | None = None) -> "ConvPlan":
        f = int(weight.shape[0])
        if groups < 1 or f % groups:
            raise ValueError(f"groups={groups} must be >= 1 and divide the {f} output channels of the weight")
        depthwise = groups > 1 and weight.shape[1] == 1
        uses_gemm = algo in ("im2col", "kn2row") and not depthwise
        fraction = density(weight) if gemm in ("sparse", "auto_sparse") else 1.0
        kernel_gemm = resolve_gemm(gemm, algo, fraction, runtime) if uses_gemm else ""
        prepared = prepare_weight(weight, "scalar" if depthwise else algo, runtime.xp, groups)
        if kernel_gemm == "sparse":
            prepared = CsrFilter.from_dense(prepared, runtime.xp)   # once: block-diagonal over the groups
        if dtype != "fp32":   # fp16 / int8: the filter quantized once (act_scale: int8's calibrated input scale)
            lowp.check_dtype(dtype, gemm)
            prepared = lowp.prepare(weight, algo, groups, dtype, runtime.xp, act_scale, depthwise, runtime.has_kernels)
        return cls(algo, gemm, tile, runtime, tuple(weight.shape), prepared, bias,
                   as_pair(stride, "stride"), as_pair(padding, "padding"), as_pair(dilation, "dilation"), groups,
                   fraction, kernel_gemm, dtype)

    def geometry(self, x_shape) -> ConvGeometry:
        return ConvGeometry.from_shapes(x_shape, self.weight_shape, self.stride, self.padding,
                                        self.dilation, self.groups)

    def __call__(self, x):
        """Convolve a C-contiguous float32 array of the runtime; records ``last_cost``."""
        g = self.geometry(x.shape)
        if self.dtype != "fp32":
            y, workspace = lowp.run(self, x, g)
        elif self.runtime.has_kernels:
            launcher = KernelLauncher(self.runtime, self.kernel_gemm or self.gemm, self.tile)
            run = kernel_launch.depthwise if g.is_depthwise else kernel_launch.ALGORITHMS[self.algo]
            y, workspace = run(launcher, x, self.prepared_weight, g)
        else:
            run = reference.depthwise if g.is_depthwise else reference.ALGORITHMS[self.algo]
            y, workspace = run(x, self.prepared_weight, g)
        if self.bias is not None:
            y += self.bias.reshape(1, -1, 1, 1)
        cost = lowp.layer_cost(layer_cost(g, self.algo, self.kernel_gemm or self.gemm), g, self.dtype)
        self.last_cost = replace(cost, workspace_bytes=workspace)
        return y
