"""Shared helpers of the engine tests: random data, the float64 PyTorch reference, the error."""
from __future__ import annotations

import copy
import functools

import numpy as np
import torch
import torch.nn.functional as F

from experiments.conv.tolerance import relative_error
from experiments.torchvision_compat import torchvision


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


@functools.lru_cache(maxsize=None)
def model_and_reference(model_name: str):
    """The model (random init, seed 0), an input, and its float64 output: built once per model."""
    torch.manual_seed(0)
    model = getattr(torchvision.models, model_name)().eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        reference = copy.deepcopy(model).double()(x.double())
    return model, x, reference


# (n, c, f, h, w, kh, kw, stride, padding, dilation): sizes are deliberately not multiples of
# any tile, kernels from 1x1 to 7x7 and rectangular, strides 1 to 3.
CASES = [
    (1, 1, 1, 5, 5, 1, 1, 1, 0, 1),
    (2, 3, 7, 13, 11, 3, 3, 1, 1, 1),
    (1, 3, 5, 17, 9, 3, 2, (2, 1), (1, 0), 1),
    (3, 4, 6, 12, 15, 5, 5, 3, 2, 1),
    (1, 3, 9, 19, 21, 7, 7, 2, 3, 1),
    (2, 5, 4, 14, 10, 3, 3, 1, (2, 1), (2, 3)),
    (1, 6, 3, 9, 9, 1, 5, (1, 2), (0, 2), 1),
    (2, 3, 33, 10, 10, 1, 1, 2, 0, 1),
    (1, 19, 37, 15, 13, 3, 3, 1, 1, 1),  # several GEMM tiles, scalar stages and channel blocks
]
