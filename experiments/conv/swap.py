"""Swap every nn.Conv2d of a torch model for one that runs a convbench algorithm."""
from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from .accounting import LayerCost
from .api import resolve, resolve_padding, rung_argument
from .arrays import from_runtime, to_runtime
from .geometry import ConvGeometry
from .plan import ConvPlan
from .variant import DEFAULT_TILE, Variant


class ConvbenchConv2d(nn.Module):
    """Inference-only stand-in for an ``nn.Conv2d``; its weights are prepared once, at construction.

    Keeps the original ``weight`` and ``bias`` parameters (so ``state_dict`` is unchanged); call
    ``refresh()`` after changing them. ``geometry`` and ``cost`` describe the last forward.
    ``variant`` is what runs (experiments.conv.variant); ``act_scale`` int8's calibrated input scale.
    """

    def __init__(self, conv: nn.Conv2d, name: str, variant: Variant, runtime, act_scale: float | None = None):
        super().__init__()
        self.name, self.variant, self.runtime, self.act_scale = name, variant, runtime, act_scale
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.kernel_size, self.stride, self.dilation, self.groups = (
            conv.kernel_size, conv.stride, conv.dilation, conv.groups)
        self.padding, self.padding_mode = conv.padding, conv.padding_mode
        self.weight, self.bias = conv.weight, conv.bias
        symmetric, extra = resolve_padding(conv.padding, tuple(conv.weight.shape), conv.stride, conv.dilation)
        if conv.padding_mode == "zeros":
            # torch's F.pad order is (left, right, top, bottom)
            self._explicit_pad, self._plan_padding = (0, extra[1], 0, extra[0]), symmetric
        else:  # reflect / replicate / circular: pad the input, convolve unpadded
            ph, pw = symmetric
            self._explicit_pad, self._plan_padding = (pw, pw + extra[1], ph, ph + extra[0]), (0, 0)
        self.geometry: ConvGeometry | None = None
        self.refresh()

    def refresh(self) -> None:
        """Re-prepare the weights (after they were changed in place)."""
        rt = self.runtime
        bias = None if self.bias is None else to_runtime(self.bias, rt)
        self.plan = ConvPlan.build(to_runtime(self.weight, rt), bias, self.stride, self._plan_padding,
                                   self.dilation, self.groups, self.variant, rt, self.act_scale)
        self.plan.name = self.name

    @property
    def cost(self) -> LayerCost | None:
        return self.plan.last_cost

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self._explicit_pad):
            mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
            x = F.pad(x, self._explicit_pad, mode=mode)
        xd = to_runtime(x, self.runtime)
        y = self.plan(xd)
        self.geometry = self.plan.geometry(xd.shape)
        return from_runtime(y, like=x)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, variant={self.variant.label}, backend={self.runtime.name}")


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """The layers swap_conv2d replaces, in model order (plain nn.Conv2d: not our own layers, not subclasses)."""
    return [(name, m) for name, m in model.named_modules() if type(m) is nn.Conv2d]


def conv_inputs(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The input each of ``conv_layers(model)`` receives in one forward of ``x`` (its first call, for a layer
    called twice): what a layer is checked and tuned on, one layer at a time."""
    inputs: dict[str, torch.Tensor] = {}

    def capture(name):
        return lambda module, args: inputs.setdefault(name, args[0].detach().clone())

    forward_once(model, x, [conv.register_forward_pre_hook(capture(name)) for name, conv in conv_layers(model)])
    return inputs


def forward_once(model: nn.Module, x, hooks) -> None:
    """One forward pass of ``model`` on ``x`` without gradients, for what its ``hooks`` (handles of hooks
    just registered) record; the hooks are removed afterwards, also when the forward fails."""
    try:
        with torch.no_grad():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()


def swap_conv2d(model: nn.Module, algo: str = "im2col", gemm: str = "blocked", tile: int = DEFAULT_TILE,
                backend="auto", dtype: str = "fp32", act_scales: dict[str, float] | None = None,
                fp32_layers=(), rung: str | None = None, gemm_kernel: str | None = None) -> nn.Module:
    """Replace every ``nn.Conv2d`` of ``model`` in place; returns the model.

    Raises before changing anything if the choice is invalid. Grouped layers run all groups in
    one launch; depthwise layers (groups == C_in) run the depthwise kernel for every ``algo``,
    so a depthwise-separable block becomes depthwise + pointwise (a plain GEMM).

    ``dtype`` fp16 or int8 runs every layer at that precision (experiments.conv.lowp) but those named in
    ``fp32_layers``; int8 takes each layer's input scale from ``act_scales`` (layer name -> scale, from
    ``experiments.compress.quantization.calibrate``), or from each input as it comes where none is given.
    ``rung``: the blocked GEMM's rung of the ladder (experiments.conv.ladder), as in conv2d (``gemm_kernel``:
    its deprecated former name).
    """
    variant, runtime = resolve(algo, gemm, tile, backend, dtype, rung_argument(rung, gemm_kernel))
    return swap_variant(model, variant, runtime, act_scales, fp32_layers)


def swap_variant(model: nn.Module, variant: Variant, runtime, act_scales: dict[str, float] | None = None,
                 fp32_layers=()) -> nn.Module:
    """swap_conv2d for a resolved ``variant`` on a ``runtime`` (the harness's and the tuner's entry); the
    layers named in ``fp32_layers`` run the same variant in fp32."""
    act_scales = act_scales or {}
    convs = conv_layers(model)
    for name, conv in convs:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        own = replace(variant, dtype="fp32") if name in fp32_layers else variant
        setattr(parent, child, ConvbenchConv2d(conv, name, own, runtime, act_scales.get(name)))
    return model
