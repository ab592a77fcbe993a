"""What a run.py job does with ``prune=...`` and ``quant=...`` (called by experiments.harness.job).

A compressed job (pruned, or not fp32) keeps the dense float32 model beside the compressed one and
measures both in the same job, so that every speedup is wall-clock time against the dense model on
the same machine, never a MAC count:

    dense          the model as built (float32, dense)
    model          its pruned copy (float32; the dense copy when prune=none): what the correctness
                   check's float64 reference and PyTorch's baseline run
    ours           the pruned copy on our kernels at quant's precision (int8: activation scales from a
                   calibration batch of its own seed, not the timed input nor the evaluation images)
    baseline       PyTorch on the pruned model at the nearest precision PyTorch offers on the device:
                   fp16 on a GPU for fp16; float32 otherwise (PyTorch has no int8 convolution on GPUs,
                   so int8 is compared with float32 and, on a GPU, also with PyTorch fp16; on the CPU
                   float32 is PyTorch's fast path, so fp16 there is compared with float32 too)

Timed in the same job besides the usual targets: the dense model on the same technique
(``dense_latency_ms``) and on PyTorch (``dense_baseline_latency_ms``). The fidelity of ``ours`` to
the dense float32 model on a fixed evaluation batch, and top-1 accuracy where labels exist
(experiments.compress.fidelity), is measured after the correctness check.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from .digits import NAME as DIGITS
from .digits import finetuner
from .fidelity import EvaluationData, evaluation_data
from .prune import PruneReport, PruneSpec, prune_model
from .quantization import QuantOptions, calibrate, skipped_layers

CALIBRATION_SEED_OFFSET = 7919     # calibration images: a seed of their own
EVALUATION_SEED_OFFSET = 104729    # evaluation images: another


@dataclass(frozen=True)
class CompressionSpec:
    prune: PruneSpec = PruneSpec()
    quant: str = "fp32"
    finetune_epochs: int = 0          # digits_cnn only: training epochs after each pruning step
    calibration_images: int = 8       # int8: images of the calibration batch
    eval_images: int = 16             # fidelity: images of the evaluation batch (without labelled data)
    image_folder: str | None = None   # labelled images (ImageFolder layout) -> accuracy_top1
    max_images: int = 256             # at most this many of them
    quantization: QuantOptions = QuantOptions()   # calibration method, layers kept fp32, cost bound

    @property
    def active(self) -> bool:
        return self.prune.kind != "none" or self.quant != "fp32"


@dataclass
class Compressed:
    dense: nn.Module
    model: nn.Module
    report: PruneReport
    act_scales: dict[str, float] | None
    fp32_layers: tuple[str, ...]    # reduced precision: the layers quant.skip keeps in float32
    evaluation: EvaluationData
    baseline: nn.Module             # PyTorch at the baseline precision (model itself, or a half copy)
    baseline_dtype: torch.dtype
    baseline_label: str             # "pytorch fp32" | HALF_BASELINE_LABEL
    fp16_baseline: nn.Module | None = None   # int8 on a GPU: PyTorch fp16 as a second reference


class AtPrecision(nn.Module):
    """A model (or layer) that runs at another precision (and memory layout): casts its float32 input in
    one copy, returns float32."""

    def __init__(self, module: nn.Module, dtype: torch.dtype, memory_format: torch.memory_format = torch.contiguous_format):
        super().__init__()
        self.module, self.dtype, self.memory_format = module, dtype, memory_format

    def forward(self, x):
        return self.module(x.to(self.dtype, memory_format=self.memory_format)).float()


# PyTorch's fp16 on a GPU runs channels_last (NHWC), its best layout there: cuDNN's fp16 tensor-core
# convolutions work in NHWC and transpose an NCHW tensor around each convolution. A baseline at its best.
HALF_BASELINE_LABEL = "pytorch fp16 channels_last"


def half_baseline(model: nn.Module) -> AtPrecision:
    """A float16, channels_last copy of ``model`` (a GPU's PyTorch fp16 baseline): its input cast and laid
    out in one copy."""
    half = copy.deepcopy(model).half().to(memory_format=torch.channels_last).eval()
    return AtPrecision(half, torch.float16, torch.channels_last)


@dataclass
class CompressionOutcome:
    """What a compressed job measured besides the usual (experiments.harness.job fills it)."""

    report: PruneReport
    baseline_label: str
    fidelity: object | None = None            # experiments.compress.fidelity.Fidelity
    precision: object | None = None           # fp16/int8: experiments.compress.precision_cost.PrecisionCost
    dense: object | None = None                # Measurement: the dense fp32 model on the same technique
    dense_baseline: object | None = None       # Measurement: the dense fp32 model on PyTorch
    baseline_fp16: object | None = None        # Measurement: int8 on a GPU, PyTorch fp16 of the same model
    weights: str = "random"                    # the model's weights: "random" (fidelity says little), or named


def trainable_copy(model: nn.Module) -> nn.Module:
    """A copy whose parameters and buffers are ordinary tensors, also if made under inference_mode."""
    with torch.inference_mode(False):
        copied = copy.deepcopy(model)
        for module in copied.modules():
            for key, p in list(module._parameters.items()):
                if p is not None:
                    module._parameters[key] = nn.Parameter(p.detach().clone(), requires_grad=p.requires_grad)
            for key, b in list(module._buffers.items()):
                if b is not None:
                    module._buffers[key] = b.detach().clone()
    return copied


def compress(spec: CompressionSpec, model_name: str, dense: nn.Module, example: torch.Tensor,
             input_size: tuple[int, int], seed: int, device: torch.device) -> Compressed:
    """Prune a copy of ``dense`` (float32, on ``device``), calibrate int8, choose the baseline, load the
    evaluation data."""
    finetune = finetuner(spec.finetune_epochs, seed) if model_name == DIGITS else None
    with torch.inference_mode(False):
        pruned = trainable_copy(dense).cpu()
        report = prune_model(pruned, spec.prune, example.detach().cpu().clone(), finetune)  # an ordinary tensor:
        # Torch-Pruning traces autograd, which inference-mode tensors (the job runs in inference_mode) refuse
    pruned = pruned.to(device).eval()
    evaluation = evaluation_data(model_name, input_size, spec.eval_images, seed + EVALUATION_SEED_OFFSET,
                                 spec.image_folder, spec.max_images)
    act_scales, fp32_layers = None, ()
    if spec.quant != "fp32":
        fp32_layers = skipped_layers(pruned, spec.quantization.skip)
    if spec.quant == "int8":
        act_scales = calibrate(pruned, calibration_batch(model_name, example, spec.calibration_images,
                                                         seed).to(device), spec.quantization)
    baseline, dtype, label, fp16 = pruned, torch.float32, "pytorch fp32", None
    if device.type == "cuda" and spec.quant in ("fp16", "int8"):
        if spec.quant == "fp16":
            baseline, dtype, label = half_baseline(pruned), torch.float16, HALF_BASELINE_LABEL
        else:
            fp16 = half_baseline(pruned)
    return Compressed(dense, pruned, report, act_scales, fp32_layers, evaluation, baseline, dtype, label, fp16)


def baseline_layer(compressed: Compressed | None, name: str, conv: nn.Module) -> nn.Module:
    """The PyTorch layer that is the per-layer baseline: ``conv`` itself, or its fp16 copy (fp16 on a GPU)."""
    if compressed is None or compressed.baseline_dtype == torch.float32:
        return conv
    baseline = compressed.baseline
    return AtPrecision(baseline.module.get_submodule(name), baseline.dtype, baseline.memory_format)


def metrics(outcome: CompressionOutcome | None, latency_s: float | None) -> dict[str, float]:
    """The contract's compression metrics of a job (experiments/tracking/contract.py)."""
    from experiments.tracking import contract as c
    if outcome is None:
        return {}
    r = outcome.report
    m = {c.MAC_RATIO: r.mac_ratio, c.DENSE_MAC_RATIO: r.dense_mac_ratio, c.PRUNED_FRACTION: r.achieved,
         c.PARAMS: r.after.params}
    for key, measured in ((c.DENSE_LATENCY_MS, outcome.dense), (c.DENSE_BASELINE_LATENCY_MS, outcome.dense_baseline),
                          (c.BASELINE_FP16_LATENCY_MS, outcome.baseline_fp16)):
        if measured is not None:
            m[key] = measured.median * 1e3
    if latency_s:
        if outcome.dense is not None:
            m[c.SPEEDUP_VS_DENSE] = outcome.dense.median / latency_s
        if outcome.dense_baseline is not None:
            m[c.SPEEDUP_VS_DENSE_BASELINE] = outcome.dense_baseline.median / latency_s
    f = outcome.fidelity
    if f is not None:
        m.update({c.TOP1_AGREEMENT: f.top1_agreement, c.FIDELITY_REL_ERR: f.rel_err, c.EVAL_IMAGES: f.images})
        if f.accuracy is not None:
            m.update({c.ACCURACY_TOP1: f.accuracy, c.DENSE_ACCURACY_TOP1: f.dense_accuracy})
    cost = outcome.precision
    if cost is not None:
        m.update({c.PRECISION_REL_ERR: cost.model_rel_err, c.PRECISION_TOP1_AGREEMENT: cost.top1_agreement,
                  c.FP32_LAYERS: len(cost.fp32_layers)})
        if cost.worst_layer is not None:
            m[c.PRECISION_WORST_LAYER_REL_ERR] = cost.worst_layer[1]
    return m


def tags(outcome: CompressionOutcome | None) -> dict[str, str]:
    from experiments.tracking import contract as c
    if outcome is None:
        return {}
    found = {c.T_BASELINE: outcome.baseline_label, "prune_report": outcome.report.describe()}
    if outcome.fidelity is not None:
        found[c.T_EVAL_DATA] = outcome.fidelity.source
    found[c.T_WEIGHTS] = outcome.weights
    cost = outcome.precision
    if cost is not None:
        found[c.T_FP32_LAYERS] = ", ".join(cost.fp32_layers)
        if cost.worst_layer is not None:
            found[c.T_PRECISION_WORST_LAYER] = cost.worst_layer[0]
    return found


def summary(outcome: CompressionOutcome | None, latency_s: float | None) -> list[str]:
    """Parts of run.py's one-line summary."""
    if outcome is None:
        return []
    parts = []
    r = outcome.report
    if r.spec.kind != "none":
        parts.append(f"{r.spec.kind} {r.achieved:.3g} of the {r.unit} removed, MAC ratio {r.mac_ratio:.3g}")
    if outcome.dense is not None and latency_s:
        parts.append(f"dense {outcome.dense.median * 1e3:.4g} ms on the same technique, speedup vs dense "
                     f"{outcome.dense.median / latency_s:.3g}x")
    if outcome.dense_baseline is not None and latency_s:
        parts.append(f"dense PyTorch fp32 {outcome.dense_baseline.median * 1e3:.4g} ms "
                     f"({outcome.dense_baseline.median / latency_s:.3g}x)")
    f = outcome.fidelity
    if f is not None and (r.spec.kind != "none" or f.accuracy is not None):   # else the precision cost says it
        text = f"top-1 agreement {f.top1_agreement:.3g}, fidelity_rel_err {f.rel_err:.2g} on {f.images} images"
        if f.accuracy is not None:
            text += f", accuracy {f.accuracy:.3g} (dense {f.dense_accuracy:.3g})"
        parts.append(text + ("" if outcome.weights != "random" else " (random weights)"))
    if outcome.precision is not None:
        parts.append(outcome.precision.describe())
    return parts


def calibration_batch(model_name: str, example: torch.Tensor, images: int, seed: int) -> torch.Tensor:
    """int8 calibration images: digits' training split, else seeded standard-normal images of the input's shape."""
    if model_name == DIGITS:
        from .digits import digits_split
        return digits_split("train")[0][:images]
    generator = torch.Generator().manual_seed(seed + CALIBRATION_SEED_OFFSET)
    return torch.randn(images, *example.shape[1:], generator=generator)
