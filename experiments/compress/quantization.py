"""The choices of a reduced-precision job (``quant.*``): how int8 calibrates, which layers stay fp32,
and an optional bound on the precision cost.

    calibration   max         s_x = max|x| / 127 of each layer's input over the calibration batch
                  percentile  s_x = P-th percentile of |x| / 127 (``quant.percentile``, e.g. 99.99):
                              outliers clip to +-127 so the bulk of the values keeps more resolution
                              (TensorRT's and ONNX Runtime's percentile calibrators)
    skip          layers kept in float32: ``first`` and ``last`` (conv layers in model order),
                  ``depthwise`` (groups == C_in), or layer names (fnmatch patterns: ``features.1.*``)
    max_cost      None: the precision cost is measured and never fails a job; a number: a job whose
                  model output is further than that (relative error against the fp32 model on the
                  evaluation images, experiments/compress/precision_cost.py) from the fp32 model fails

Weights keep their per-output-channel scales (max|W[f]| / 127, experiments/conv/lowp.py) in every case.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from experiments.conv.lowp import INT8_MAX
from experiments.conv.swap import conv_layers, forward_once

CALIBRATIONS = ("max", "percentile")
SKIP_KEYWORDS = ("first", "last", "depthwise")


@dataclass(frozen=True)
class QuantOptions:
    calibration: str = "max"
    percentile: float = 99.99
    skip: tuple[str, ...] = ()
    max_cost: float | None = None

    def __post_init__(self):
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"quant.calibration={self.calibration!r} is not supported; valid: {', '.join(CALIBRATIONS)}")
        if not 0 < self.percentile <= 100:
            raise ValueError(f"quant.percentile={self.percentile!r}: expected a percentile in (0, 100], e.g. 99.99")
        if self.max_cost is not None and not self.max_cost > 0:
            raise ValueError(f"quant.max_cost={self.max_cost!r}: expected a positive relative error, or null "
                             f"(measure the cost without bounding it)")

    def describe(self) -> str:
        calibration = "max" if self.calibration == "max" else f"percentile {self.percentile:g}"
        return f"calibration {calibration}" + (f", fp32 layers: {', '.join(self.skip)}" if self.skip else "")


def skipped_layers(model: nn.Module, selectors) -> tuple[str, ...]:
    """The conv layer names of ``model`` that ``quant.skip`` keeps in float32, in model order.
    A selector that names no layer is an error (a typo would silently quantize the layer)."""
    convs = conv_layers(model)
    names = [name for name, _ in convs]
    chosen: set[str] = set()
    for selector in selectors:
        if selector == "first":
            found = names[:1]
        elif selector == "last":
            found = names[-1:]
        elif selector == "depthwise":
            found = [name for name, m in convs if m.groups > 1 and m.groups == m.in_channels]
        else:
            found = [name for name in names if fnmatch.fnmatchcase(name, selector)]
        if not found:
            example = ", ".join(names[:3] + (["..."] if len(names) > 3 else []))
            raise ValueError(f"quant.skip: {selector!r} selects no conv layer of the model; valid: "
                             f"{', '.join(SKIP_KEYWORDS)}, or layer names / fnmatch patterns ({example})")
        chosen.update(found)
    return tuple(name for name in names if name in chosen)


def calibrate(model: nn.Module, batch: torch.Tensor, options: QuantOptions = QuantOptions()) -> dict[str, float]:
    """Static int8 calibration: each ``nn.Conv2d``'s per-tensor input scale from one forward of the float32
    ``model`` on a calibration ``batch`` (max or percentile of |x|, over 127); layer name -> scale."""
    ranges: dict[str, float] = {}

    def observe(name):
        def hook(module, args):
            magnitude = args[0].detach().abs()
            if magnitude.numel() == 0:
                value = 0.0
            elif options.calibration == "max":
                value = float(magnitude.max())
            else:
                value = float(np.percentile(magnitude.float().cpu().numpy(), options.percentile))
            ranges[name] = max(ranges.get(name, 0.0), value)   # a module called twice: the wider range
        return hook

    forward_once(model, batch, [m.register_forward_pre_hook(observe(name)) for name, m in conv_layers(model)])
    return {name: (value / INT8_MAX if value > 0 else 1.0) for name, value in ranges.items()}
