"""95% bootstrap intervals for a speedup: the ratio of two medians, each from its own raw samples.

The two sample sets are timed one after the other (PyTorch's, then ours), so each is resampled on
its own (independent percentile bootstrap). An interval that contains 1 means the measurements
cannot tell the two apart: the report and the sweep's table say "not significant".
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LEVEL = 0.95
RESAMPLES = 2000
SEED = 0    # fixed: the same samples give the same interval in the job, the sweep table and the report


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    @property
    def significant(self) -> bool:
        """False when the interval contains 1 (no detectable difference)."""
        return not (self.low <= 1.0 <= self.high)

    def text(self) -> str:
        return f"[{self.low:.3g}, {self.high:.3g}]" + ("" if self.significant else " not significant")


def _resampled_medians(samples: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    picks = rng.integers(0, len(samples), size=(resamples, len(samples)))
    return np.median(samples[picks], axis=1)


def ratio_of_medians(numerator, denominator, level: float = LEVEL, resamples: int = RESAMPLES,
                     seed: int = SEED) -> Interval | None:
    """Interval of median(numerator) / median(denominator); None when either has fewer than 2 samples.

    For a speedup over PyTorch the numerator is PyTorch's samples, the denominator ours."""
    top = np.asarray(numerator, dtype=np.float64)
    bottom = np.asarray(denominator, dtype=np.float64)
    if len(top) < 2 or len(bottom) < 2:
        return None
    rng = np.random.default_rng(seed)
    ratios = _resampled_medians(top, resamples, rng) / _resampled_medians(bottom, resamples, rng)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return Interval(float(low), float(high))
