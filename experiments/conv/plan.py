"""A convolution layer prepared once for one variant (algorithm, GEMM back-end, tile, dtype) and runtime."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from . import kernel_launch, lowp, reference, vendor_lowp
from .accounting import LayerCost, layer_cost
from .geometry import ConvGeometry, as_pair
from .kernel_launch import KernelLauncher
from .layout import prepare_weight
from .memory import check_workspace
from .sparse import CsrFilter, density, density_threshold
from .variant import GEMM_ALGORITHMS, Variant


def resolve_gemm(gemm: str, algo: str, density: float, runtime) -> str:
    """The GEMM back-end a layer runs: auto_sparse becomes sparse at or below the runtime's density
    threshold (experiments.conv.sparse), else vendor; GEMM-free layers keep the choice as given."""
    if gemm != "auto_sparse" or algo not in GEMM_ALGORITHMS:
        return gemm
    return "sparse" if density <= density_threshold(runtime) else "vendor"


@dataclass
class ConvPlan:
    """Weights in the algorithm's layout on the runtime's device, ready to run on any input shape.

    ``variant`` is the choice as given; ``layer_variant`` what runs this layer: auto_sparse resolved to
    sparse or vendor by the filter's density, a depthwise layer's direct kernel for every algorithm.
    """

    variant: Variant
    runtime: object
    weight_shape: tuple[int, int, int, int]
    prepared_weight: object         # fp16/int8: an experiments.conv.lowp.LowpFilter
    bias: object | None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    density: float = 1.0            # nonzeros / size of the filter
    layer_variant: Variant | None = None
    name: str = ""                  # the model's layer name, for errors (swap_conv2d sets it)
    last_cost: LayerCost | None = field(default=None, init=False)
    _fits: set = field(default_factory=set, init=False, repr=False)   # input shapes whose workspace fits

    @property
    def depthwise(self) -> bool:
        """groups == C_in > 1 (one input channel per group): the dedicated depthwise kernel, any algorithm."""
        return self.groups > 1 and self.weight_shape[1] == 1

    @classmethod
    def build(cls, weight, bias, stride, padding, dilation, groups, variant: Variant, runtime,
              act_scale: float | None = None) -> "ConvPlan":
        """``act_scale``: int8's calibrated input scale (None: from each input as it comes)."""
        f = int(weight.shape[0])
        if groups < 1 or f % groups:
            raise ValueError(f"groups={groups} must be >= 1 and divide the {f} output channels of the weight")
        depthwise = groups > 1 and weight.shape[1] == 1
        fraction = density(weight) if variant.gemm in ("sparse", "auto_sparse") else 1.0
        if depthwise:
            layer_variant = Variant("depthwise", dtype=variant.dtype)
        else:
            layer_variant = variant.with_gemm(resolve_gemm(variant.gemm, variant.algo, fraction, runtime)) \
                if variant.uses_gemm else variant
        algo, xp = "scalar" if depthwise else variant.algo, runtime.xp
        if variant.dtype != "fp32":   # the filter quantized once
            lowp.check_dtype(variant.dtype, variant.gemm)
            prepared = lowp.prepare(weight, variant.algo, groups, variant.dtype, xp, act_scale, depthwise,
                                    runtime.has_kernels)
            if layer_variant.gemm == "vendor" and runtime.is_gpu and not depthwise:   # once, not in every call
                prepared = replace(prepared, vendor=vendor_lowp.prepare(prepared.values))
        else:
            prepared = prepare_weight(weight, algo, xp, groups)
            if layer_variant.gemm == "sparse":
                prepared = CsrFilter.from_dense(prepared, xp)   # once: block-diagonal over the groups
        return cls(variant, runtime, tuple(weight.shape), prepared, bias, as_pair(stride, "stride"),
                   as_pair(padding, "padding"), as_pair(dilation, "dilation"), groups, fraction, layer_variant)

    def geometry(self, x_shape) -> ConvGeometry:
        return ConvGeometry.from_shapes(x_shape, self.weight_shape, self.stride, self.padding,
                                        self.dilation, self.groups)

    def __call__(self, x):
        """Convolve a C-contiguous float32 array of the runtime; records ``last_cost``."""
        g = self.geometry(x.shape)
        if x.shape not in self._fits:   # once per shape: the timed calls do not pay for it
            check_workspace(g, self.layer_variant, self.runtime, self.name)
            self._fits.add(x.shape)
        w = self.prepared_weight
        if self.runtime.has_kernels:
            run = kernel_launch.depthwise if g.is_depthwise else kernel_launch.LAUNCHES[self.variant.algo]
            y, workspace = run(KernelLauncher(self.runtime, self.layer_variant), x, w, g)
        else:
            run = reference.depthwise if g.is_depthwise else reference.SPECIFICATIONS[self.variant.algo]
            y, workspace = lowp.run_reference(run, x, w, g) if isinstance(w, lowp.LowpFilter) else run(x, w, g)
        if self.bias is not None:
            y += self.bias.reshape(1, -1, 1, 1)
        self.last_cost = replace(layer_cost(g, self.layer_variant), workspace_bytes=workspace)
        return y
