"""How close an algorithm's output must be to the float64 PyTorch reference, per dtype.

The error is relative to the reference's largest magnitude: max|y - ref| / max|ref|. Float32
GEMMs with K up to a few thousand accumulate rounding of order sqrt(K) * 2^-24 ~ 1e-6; 1e-4
leaves room for deep models (errors compound through ~50 layers) while still failing any real
indexing bug, which shows up as errors of order 1.
"""
from __future__ import annotations

import numpy as np

RELATIVE_TOLERANCE = {"fp32": 1e-4}


def relative_error(y, reference) -> float:
    y, reference = np.asarray(y, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    scale = np.abs(reference).max()
    return float(np.abs(y - reference).max() / scale) if scale > 0 else float(np.abs(y).max())
