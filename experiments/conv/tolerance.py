"""How close an algorithm's output must be to the float64 PyTorch reference, per dtype.

The error is relative to the reference's largest magnitude: max|y - ref| / max|ref|. Float32
GEMMs with K up to a few thousand accumulate rounding of order sqrt(K) * 2^-24 ~ 1e-6; 1e-4
leaves room for deep models (errors compound through ~50 layers) while still failing any real
indexing bug, which shows up as errors of order 1.
"""
from __future__ import annotations

import numpy as np

RELATIVE_TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "int8": 1e-1}
# One float32 GEMM against its float64 product (the benchmarks' check before timing a GEMM): rounding of
# order sqrt(K) * 2^-24, a few 1e-6 at the largest K benchmarked (4608); no model depth to leave room for.
GEMM_TOLERANCE = 1e-5

# fp16 and int8: our kernels are not judged by these (experiments/conv/exactness.py gates each layer
# exactly; what the precision costs the model is measured, experiments/compress/precision_cost.py).
# They remain the budget of PyTorch's own fp16 (algo=pytorch quant=fp16 on a GPU) against the float64
# reference: half storage rounds by up to 2^-11 relative, about 1e-3 on a layer, a few 1e-3 after a model.


def relative_error(y, reference) -> float:
    y, reference = np.asarray(y, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    scale = np.abs(reference).max()
    return float(np.abs(y - reference).max() / scale) if scale > 0 else float(np.abs(y).max())
