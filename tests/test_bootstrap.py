"""The speedup's 95% bootstrap interval, checked by what it promises: over many jobs drawn from known
distributions it covers the true ratio of medians about 95% of the time, missing about equally often on
each side. Fixed seeds: the same draws every run (a few seconds)."""
from __future__ import annotations

import math

import numpy as np

from experiments.measure.bootstrap import Interval, ratio_of_medians

TRIALS, SAMPLES = 1000, 15
PYTORCH_MEDIAN, OURS_MEDIAN = 2.0, 1.0     # true speedup: 2.0
LEVEL = 0.95                               # what the job, the sweep table and the report promise


def _binomial_band(p: float, trials: int = TRIALS, sds: float = 3.0) -> tuple[float, float]:
    sd = math.sqrt(p * (1 - p) / trials)
    return p - sds * sd, p + sds * sd


def test_the_95_percent_interval_covers_the_true_ratio_of_medians_95_percent_of_the_time():
    """PyTorch's times lognormal and tight, ours lognormal and skewed (their means' ratio is not the
    medians' ratio): an interval of means, a 90% or a 99% interval, the ratio upside down or a shifted
    percentile each fall outside the binomial band of 1000 trials."""
    rng = np.random.default_rng(20)
    covered = above = below = 0
    for _ in range(TRIALS):
        pytorch = np.exp(rng.normal(math.log(PYTORCH_MEDIAN), 0.1, SAMPLES))
        ours = np.exp(rng.normal(math.log(OURS_MEDIAN), 0.5, SAMPLES))
        interval = ratio_of_medians(pytorch, ours)
        assert interval.low <= interval.high
        covered += interval.low <= PYTORCH_MEDIAN / OURS_MEDIAN <= interval.high
        above += interval.low > PYTORCH_MEDIAN / OURS_MEDIAN
        below += interval.high < PYTORCH_MEDIAN / OURS_MEDIAN
    low, high = _binomial_band(LEVEL)
    assert low <= covered / TRIALS <= high, f"coverage {covered / TRIALS:.3f}, expected {LEVEL} within [{low:.3f}, {high:.3f}]"
    tail_low, tail_high = _binomial_band((1 - LEVEL) / 2)
    for side, misses in (("above", above), ("below", below)):
        assert tail_low <= misses / TRIALS <= tail_high, f"{misses} intervals entirely {side} the true ratio"


def test_the_interval_is_of_numerator_over_denominator_and_deterministic():
    rng = np.random.default_rng(3)
    pytorch, ours = rng.normal(3.0, 0.05, 40), rng.normal(1.0, 0.05, 40)    # we are 3x faster
    faster = ratio_of_medians(pytorch, ours)
    assert 2.7 < faster.low < 3.0 < faster.high < 3.3 and faster.significant
    assert faster == ratio_of_medians(pytorch, ours)                   # fixed seed: one interval for the samples
    slower = ratio_of_medians(ours, pytorch)
    assert 1 / 3.3 < slower.low < 1 / 3 < slower.high < 1 / 2.7


def test_an_interval_containing_one_is_not_significant():
    assert not Interval(0.9, 1.1).significant and Interval(1.01, 1.2).significant
    assert not Interval(0.8, 1.0).significant and Interval(0.5, 0.99).significant
    assert Interval(0.9, 1.1).text().endswith("not significant")


def test_fewer_than_two_samples_give_no_interval():
    assert ratio_of_medians([1.0], [1.0, 2.0]) is None and ratio_of_medians([1.0, 2.0], [1.0]) is None
