"""Counting what a model computes: dense MACs of its shapes, and MACs with non-zero weights.

    dense MACs     every multiply-add the layer shapes imply (what a dense kernel executes)
    nonzero MACs   only those whose weight is non-zero (what sparsity-aware tools report as "MACs"
                   after unstructured pruning; hardware running dense kernels does not deliver it)

Counted per image over nn.Conv2d and nn.Linear layers, which hold all but a sliver of the MACs of
a CNN (BatchNorm, pooling and activations are left out, as pruning tools do).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from experiments.conv.swap import forward_once


@dataclass(frozen=True)
class ModelCount:
    macs: int              # dense multiply-adds per image
    nonzero_macs: int      # multiply-adds with a non-zero weight, per image
    params: int            # weights and biases of conv and linear layers
    nonzero_params: int

    def as_dict(self) -> dict:
        return {"macs": self.macs, "nonzero_macs": self.nonzero_macs, "params": self.params,
                "nonzero_params": self.nonzero_params}


def count(model: nn.Module, example: torch.Tensor) -> ModelCount:
    """Run ``model`` once on ``example`` (its first image) and count its conv and linear layers."""
    totals = {"macs": 0, "nonzero_macs": 0}

    def hook(module, args, output):
        w = module.weight
        positions = output[0].numel() // w.shape[0]     # output pixels per output channel (1 for linear)
        per_output = w[0].numel()                       # weights feeding one output value
        totals["macs"] += positions * w.shape[0] * per_output
        totals["nonzero_macs"] += positions * int(torch.count_nonzero(w))

    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    forward_once(model, example[:1], [m.register_forward_hook(hook) for m in layers])
    params = nonzero = 0
    for m in layers:
        for p in (m.weight, m.bias):
            if p is not None:
                params += p.numel()
                nonzero += int(torch.count_nonzero(p))
    return ModelCount(totals["macs"], totals["nonzero_macs"], params, nonzero)
