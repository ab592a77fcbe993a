"""What a reduced precision costs: a measurement against the fp32 PyTorch model, never a correctness check.

Whether the kernels are right is experiments/conv/exactness.py's question (exact, per layer). This is
how far the answers move when the arithmetic is right but narrower:

    per layer   max|y - y32| / max|y32| of each conv layer on the input the fp32 model gives it
                (the layer's own cost, not compounded through the layers before it)
    model       the same measure on the logits of the evaluation images, and top-1 agreement: the
                fraction of those images whose top-1 class is the fp32 model's

The fp32 model is the one the job quantizes (pruned, when the job also prunes), so the cost is the
precision's alone. Numbers on random weights say how the arithmetic behaves, not what accuracy a
trained model keeps: the job line and the report label them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from experiments.conv import exactness
from experiments.conv.swap import conv_inputs, conv_layers
from experiments.conv.tolerance import relative_error

from .fidelity import EvaluationData, predict


@dataclass(frozen=True)
class PrecisionCost:
    dtype: str
    layers: dict[str, float]        # conv layer name -> relative error against its fp32 output
    model_rel_err: float            # logits of the evaluation images against the fp32 model's
    top1_agreement: float
    images: int
    fp32_layers: tuple[str, ...]    # kept in fp32 (quant.skip)
    weights: str                    # "random" or the torchvision weights' name

    @property
    def worst_layer(self) -> tuple[str, float] | None:
        return max(self.layers.items(), key=lambda item: item[1], default=None)

    @property
    def random_weights(self) -> bool:
        return self.weights == "random"

    def exceeds(self, max_cost: float | None) -> str | None:
        """Why the cost breaks ``quant.max_cost`` (None when it does not, or no bound is set)."""
        if max_cost is None or self.model_rel_err <= max_cost:
            return None
        worst = self.worst_layer
        return (f"{self.dtype} precision cost {self.model_rel_err:.3g} (model output against the fp32 model on "
                f"{self.images} images) exceeds quant.max_cost={max_cost:g}"
                + (f"; worst layer {worst[0]} {worst[1]:.3g}" if worst else ""))

    def describe(self) -> str:
        worst = self.worst_layer
        text = (f"{self.dtype} cost vs fp32: model rel err {self.model_rel_err:.2g}"
                + (f", worst layer {worst[0]} {worst[1]:.2g}" if worst else "")
                + f", top-1 agreement {self.top1_agreement:.3g} on {self.images} images")
        if self.fp32_layers:
            text += f", {len(self.fp32_layers)} layers kept fp32"
        return text + (" (random weights)" if self.random_weights else f" ({self.weights} weights)")


def layer_cost(y: torch.Tensor, y32: torch.Tensor) -> float:
    """One layer's cost: our reduced-precision output against the fp32 layer's, on the same input."""
    return relative_error(y.detach().cpu().numpy(), y32.detach().cpu().numpy())


def measure(ours_logits: torch.Tensor, fp32_model, data: EvaluationData, device, layers: dict[str, float],
            dtype: str, fp32_layers=(), weights: str = "random") -> PrecisionCost:
    """The model-level cost on ``data`` (``ours_logits``: our model's logits on its images) beside the
    per-layer ``layers`` costs already measured (layer_cost)."""
    reference = predict(fp32_model, data.images, device)
    agreement = float((ours_logits.argmax(1) == reference.argmax(1)).float().mean())
    return PrecisionCost(dtype, dict(layers), relative_error(ours_logits.numpy(), reference.numpy()), agreement,
                         len(data.images), tuple(fp32_layers), weights)


def check_layers(ours, fp32_model, x: torch.Tensor) -> tuple[list, dict[str, float]]:
    """Each reduced-precision conv layer of ``ours`` (fp32_model swapped, experiments.conv.swap) on the input
    the fp32 model gives it: the exactness gate's verdicts and the layers' costs."""
    inputs = conv_inputs(fp32_model, x)
    verdicts, costs = [], {}
    with torch.no_grad():
        for name, conv in conv_layers(fp32_model):
            layer = ours.get_submodule(name)
            if layer.variant.dtype == "fp32":
                continue
            y = layer(inputs[name])
            verdicts.append(exactness.check_layer(layer, inputs[name], y))
            costs[name] = layer_cost(y, conv(inputs[name]))
    return verdicts, costs
