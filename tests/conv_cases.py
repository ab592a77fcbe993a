"""Shared helpers of the engine tests: random data, the float64 PyTorch reference, the error."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from experiments.conv.tolerance import relative_error


def random_conv(rng: np.random.Generator, n, c, f, h, w, kh, kw, bias=True):
    """Fresh standard-normal input, filter and bias (never zeros, so no bug hides behind 0 * x)."""
    x = torch.from_numpy(rng.standard_normal((n, c, h, w)).astype(np.float32))
    weight = torch.from_numpy(rng.standard_normal((f, c, kh, kw)).astype(np.float32))
    b = torch.from_numpy(rng.standard_normal(f).astype(np.float32)) if bias else None
    return x, weight, b


def reference_conv(x, weight, bias=None, **kwargs) -> np.ndarray:
    """torch.nn.functional.conv2d in float64: the independent reference."""
    return F.conv2d(x.double(), weight.double(), None if bias is None else bias.double(), **kwargs).numpy()


def error_vs_reference(y, x, weight, bias=None, **kwargs) -> float:
    y = y.numpy() if isinstance(y, torch.Tensor) else y
    return relative_error(y, reference_conv(x, weight, bias, **kwargs))
