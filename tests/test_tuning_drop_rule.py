"""algo=auto's successive halving against a scripted clock whose samples SPREAD, so that each part of the
drop rule matters: a candidate goes on while its p10 is within drop_margin of the best median (p10, not
its median or p90; the best MEDIAN, not the best p10), at most half of them (rounded up), ranked by median.

With constant samples (p10 == median == p90) any of these mutations would pass; here each one changes
which round a candidate is dropped in, or which one is chosen.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from experiments.runtime import resolve
from experiments.tuning import candidates_for, tune_layer, tuning_spec
from tests.tuner_clock import clock_follows_candidates

TOL = 1e-4
A, B, C = "im2col/vendor/fp32", "kn2row/vendor/fp32", "scalar/fp32"
CYCLE = 10   # first_samples: each round-1 sample set is exactly one cycle of a candidate's pattern


def pattern(low: float, high: float, lows: int = 2) -> list[float]:
    """`lows` calls of `low` ms then `high` ms, cycled: p10 == low, median == p90 == high over whole cycles."""
    return [low * 1e-3] * lows + [high * 1e-3] * (CYCLE - lows)


class SpreadClock:
    """Each candidate's calls 'take' the next time of its own cycle (the real call still runs, untimed)."""

    name = "scripted"

    def __init__(self, cycles: dict[str, list[float]]):
        self.cycles, self.calls, self.current = cycles, dict.fromkeys(cycles, 0), None

    def synchronize(self):
        pass

    def time(self, fn):
        fn()
        label = self.current
        self.calls[label] += 1
        cycle = self.cycles[label]
        return cycle[(self.calls[label] - 1) % len(cycle)]


def tune(monkeypatch, cycles: dict[str, list[float]], drop_margin: float = 0.05):
    clock = SpreadClock(cycles)
    clock_follows_candidates(monkeypatch, clock)
    conv = nn.Conv2d(3, 5, 3, padding=1).eval()
    spec = tuning_spec({"db": "unused.db", "gemms": ["vendor"], "first_samples": CYCLE, "warmup": 0,
                        "drop_margin": drop_margin})
    candidates = candidates_for(resolve("numpy"), spec)
    assert [v.label for v in candidates] == [A, B, C]
    with torch.no_grad():
        # 30 s: far more than the calls take; a rule that never stops ends there
        return tune_layer(conv, "conv", torch.randn(1, 3, 7, 7), resolve("numpy"), candidates, spec, clock, TOL,
                          budget_s=30)


def rounds(entry) -> dict[str, tuple[str, int]]:
    return {label: (r["status"], r["round"]) for label, r in entry.results.items()}


def test_a_slow_median_with_a_fast_p10_goes_on(monkeypatch):
    """B's median (1.5) is far from the best (1.0), but its p10 (0.86) is within 5% of the best median: it
    goes on to round 2 (then the halving stops it). Deciding on B's median or p90, or against the best's p10
    (0.8: 0.86 > 0.84), would drop it after round 1."""
    entry = tune(monkeypatch, {A: pattern(0.8, 1.0), B: pattern(0.86, 1.5), C: pattern(9.0, 9.0)})
    assert rounds(entry) == {A: ("chosen", 2), B: ("dropped", 2), C: ("dropped", 1)}
    assert entry.choice == A and entry.runner_up == B
    assert entry.choice_s == pytest.approx(1.0e-3) and entry.runner_up_s == pytest.approx(1.5e-3)
    assert entry.results[A]["n"] == CYCLE + 2 * CYCLE     # samples doubled in round 2


def test_the_winner_is_ranked_by_median_not_by_p10(monkeypatch):
    """B's p10 (0.5) is the lowest of all, its median (1.3) is not: A (1.0, no spread) wins."""
    entry = tune(monkeypatch, {A: pattern(1.0, 1.0), B: pattern(0.5, 1.3), C: pattern(9.0, 9.0)})
    assert entry.choice == A and entry.runner_up == B
    assert rounds(entry)[B] == ("dropped", 2)


def test_drop_margin_decides_between_the_two_followers(monkeypatch):
    """B's p10 is 3% above the best median (inside the 5% margin), C's 20% (outside), though C's median is
    the lower: C is dropped for its p10 and B goes on. Ignoring the margin (0) drops B; a wider one keeps C
    before B (ranked by median) and the halving drops B."""
    cycles = {A: pattern(1.0, 1.0), B: pattern(1.03, 1.4), C: pattern(1.2, 1.25)}
    assert rounds(tune(monkeypatch, cycles)) == {A: ("chosen", 2), B: ("dropped", 2), C: ("dropped", 1)}
    assert rounds(tune(monkeypatch, cycles, drop_margin=0.25)) == {A: ("chosen", 2), B: ("dropped", 1),
                                                                    C: ("dropped", 2)}


def test_at_most_half_rounded_up_go_on(monkeypatch):
    """All three within the margin: two of three go on (ceil(3/2)), the slowest median stops."""
    entry = tune(monkeypatch, {A: pattern(1.0, 1.0), B: pattern(1.0, 1.01), C: pattern(1.0, 1.02)})
    assert rounds(entry) == {A: ("chosen", 2), B: ("dropped", 2), C: ("dropped", 1)}
