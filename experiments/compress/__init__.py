"""Model compression for the pruning and quantization axes of the grid (issue #5).

    prune      prune_model(model, PruneSpec(kind, amount, importance, scope, steps), example)
    macs       dense and non-zero MACs of a model (the MAC ratio beside the measured speedup)
    digits     a small CNN on scikit-learn's digits, trained in seconds and cached: real labels offline
    fidelity   agreement with the dense float32 model, accuracy on labelled data
    harness    what a job of run.py does with prune=... and quant=...

Quantization itself is in the engine (experiments.conv.lowp): fp16 and int8 kernels.
"""
from .macs import ModelCount, count
from .prune import IMPORTANCES, KINDS, SCOPES, PruneReport, PruneSpec, prune_model, residual_blocks

__all__ = ["IMPORTANCES", "KINDS", "SCOPES", "ModelCount", "PruneReport", "PruneSpec", "count", "prune_model",
           "residual_blocks"]
