"""The statistics as logged and as the report recomputes them from raw samples, on samples whose median,
percentiles and IQR are known (1..9 ms and one 40 ms outlier, so the mean is not the median; numpy's
linear interpolation): a statistic swapped for another,
an absolute IQR for a relative one, or a ratio upside down, each fails here."""
from __future__ import annotations

import numpy as np
import pytest

from analysis import samples as raw
from experiments.conv import ConvGeometry, Variant, layer_cost
from experiments.harness.job import JobOutcome, LayerOutcome
from experiments.harness.results import contract_metrics
from experiments.measure.timing import Measurement
from experiments.tracking import contract

from .test_variant import _spec

SKEWED_S = tuple(v * 1e-3 for v in (1, 2, 3, 4, 5, 6, 7, 8, 9, 40))   # median 5.5 ms (mean 8.5), p10 1.9, p90 12.1,
#                                                                       IQR 7.75 - 3.25


def test_logged_metrics_are_the_statistics_they_name():
    g = ConvGeometry.from_shapes((1, 3, 8, 8), (4, 3, 3, 3), padding=1)
    layers = [LayerOutcome(f"conv{i}", g, 1e-7, ours=Measurement(f"im2col/conv{i}", tuple(s * (i + 1) for s in
                                                                                      SKEWED_S)))
              for i in range(2)]
    for layer in layers:
        layer.cost = layer_cost(g, Variant.of("im2col", "vendor"))
    pytorch = tuple(3 * s for s in SKEWED_S)                  # PyTorch 3x slower: speedup 3
    m = contract_metrics(_spec(), JobOutcome(max_rel_err=1e-7, layers=layers, model=Measurement("im2col/model",
                         SKEWED_S), baseline=Measurement("pytorch/model", pytorch)))
    assert m[contract.LATENCY_MS] == pytest.approx(5.5)
    assert (m[contract.LATENCY_P10_MS], m[contract.LATENCY_P90_MS]) == (pytest.approx(1.9), pytest.approx(12.1))
    assert m[contract.LATENCY_IQR_REL] == pytest.approx(4.5 / 5.5)
    assert m[contract.LATENCY_SAMPLES] == 10
    assert m[contract.BASELINE_LATENCY_MS] == pytest.approx(16.5)
    assert m[contract.SPEEDUP_VS_BASELINE] == pytest.approx(3.0)
    assert m[contract.SPEEDUP_CI95_LOW] < 3.0 < m[contract.SPEEDUP_CI95_HIGH]
    assert m[contract.CONV_LATENCY_MS] == pytest.approx(5.5 + 11.0)         # the sum of the layers' medians


def test_the_reports_noise_measure_is_iqr_over_median():
    assert raw.iqr_rel(np.array(SKEWED_S)) == pytest.approx(4.5 / 5.5)
    assert raw.iqr_rel(np.array([2.0, 2.0, 2.0])) == 0.0
    assert np.isnan(raw.iqr_rel(None)) and np.isnan(raw.iqr_rel(np.array([])))


def test_the_reports_interval_is_pytorch_over_ours():
    found = {"im2col/model": np.array(SKEWED_S), "pytorch/model": 3 * np.array(SKEWED_S)}
    interval = raw.speedup_interval(found, "im2col")
    assert interval.low < 3.0 < interval.high and interval.low > 1
    assert raw.speedup_interval(found, "pytorch") is None and raw.speedup_interval(found, "kn2row") is None
