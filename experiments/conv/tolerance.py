"""How close an algorithm's output must be to the float64 PyTorch reference, per dtype.

The error is relative to the reference's largest magnitude: max|y - ref| / max|ref|. Float32
GEMMs with K up to a few thousand accumulate rounding of order sqrt(K) * 2^-24 ~ 1e-6; 1e-4
leaves room for deep models (errors compound through ~50 layers) while still failing any real
indexing bug, which shows up as errors of order 1.
"""
from __future__ import annotations

import numpy as np

RELATIVE_TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "int8": 1e-1}

# fp16 and int8 (experiments.conv.lowp) against the same float64 reference of the float32 model:
# half storage rounds every input and weight by up to 2^-11 relative (~5e-4), giving about 1e-3 on
# a layer's output and a few 1e-3 after a whole model; 1e-2 leaves room. int8 rounds to 1/254 of
# each tensor's range: about 1e-2 per layer, compounding to a few 1e-2 through a deep model; 1e-1
# still fails any indexing or scaling bug (errors of order 1). These bound the *kernels'* error;
# what the precision costs a model (top-1 agreement, accuracy) is measured separately.
#
# Against the dequantized reference (float64 convolution of the values the dtype stores, with the
# same scales) the kernels are exact up to float32 accumulation and the final multiply:
DEQUANTIZED_TOLERANCE = 1e-5


def relative_error(y, reference) -> float:
    y, reference = np.asarray(y, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    scale = np.abs(reference).max()
    return float(np.abs(y - reference).max() / scale) if scale > 0 else float(np.abs(y).max())
