"""Every comparison the report and the sweep's table put in words points the way its numbers do: "N× faster"
only where the ratio is above 1 (and N is that ratio), "N× slower" only below (N its inverse), "less energy"
only for the lower energy, the best tile the fastest one. These are properties of the sentences, not their
wording: swap faster and slower, a ratio and its inverse, a min and a max, and a test here fails."""
from __future__ import annotations

import re

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis import findings
from analysis.tables import MEDIAN_MS, SPEEDUP, TECHNIQUE, TILE
from experiments.harness import summary
from experiments.tracking import contract as c
from experiments.tracking.labels import ratio_text

CLAIM = re.compile(r"(\d+(?:\.\d+)?)× (faster|slower)")


def claims(text: str) -> list[tuple[float, str]]:
    return [(float(n), word) for n, word in CLAIM.findall(text)]


def assert_reads(text: str, ratio: float, rel: float = 0.01) -> None:
    """``text`` holds exactly one claim, and it says what ``ratio`` (ours over theirs, > 1: faster) says."""
    (factor, word), = claims(text)
    assert factor >= 1, text
    assert word == ("faster" if ratio > 1 else "slower"), f"{text!r} for a ratio of {ratio}"
    assert factor == pytest.approx(max(ratio, 1 / ratio), rel=rel), text


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.floats(1.02, 500.0), st.floats(0.002, 0.98)))
def test_ratio_text_points_the_way_of_the_ratio(ratio):
    assert_reads(ratio_text(ratio), ratio)


def _e2e(rows):
    return pd.DataFrame([{TECHNIQUE: t, SPEEDUP: s, MEDIAN_MS: m, TILE: tile} for t, s, m, tile in rows])


@pytest.mark.parametrize("vendor, blocked", [(2.0, 0.5), (0.4, 1.6), (1.3, 0.65)])
def test_vendor_against_blocked_reads_as_the_ratio_of_their_speedups(vendor, blocked):
    table = _e2e([("pytorch", 1.0, 5.0, None), ("im2col+vendor", vendor, 5.0 / vendor, None),
                  ("im2col+blocked", blocked, 5.0 / blocked, 16)])
    sentence, = [f for f in findings.end_to_end_findings(table) if "vendor GEMM" in f]
    assert_reads(sentence, vendor / blocked)


@pytest.mark.parametrize("speedup", [3.0, 1.25, 0.8, 0.25])
def test_the_end_to_end_sentences_read_each_speedup_its_way(speedup):
    table = _e2e([("pytorch", 1.0, 5.0, None), ("kn2row+vendor", speedup, 5.0 / speedup, None)])
    for sentence in findings.end_to_end_findings(table):
        assert_reads(sentence, speedup)


def test_the_best_tile_is_the_fastest_and_the_worst_reads_slower_by_their_ratio():
    sweep = pd.DataFrame({"im2col+blocked": [4.0, 2.0, 3.0]}, index=pd.Index([8, 16, 32], name="tile"))
    sentence, = findings.tile_findings(sweep)
    assert re.search(r"best tile 16\b", sentence) and re.search(r"worst tested tile, 8\b", sentence)
    assert "2.00× slower" in sentence


def test_the_lowest_energy_is_named_and_reads_as_less_energy_by_its_ratio():
    table = pd.DataFrame({TECHNIQUE: ["pytorch", "im2col+vendor", "kn2row+vendor"],
                          "energy per inference [J]": [3.0, 1.5, 6.0]})
    sentence, = findings.energy_findings(table, "measured")
    assert sentence.startswith("Lowest energy per inference: im2col+vendor, 1.5 J")
    factor = float(re.search(r"(\d+(?:\.\d+)?)× less energy than PyTorch", sentence)[1])
    assert factor == pytest.approx(2.0)


@pytest.mark.parametrize("speedups", [(1.8, 0.9), (0.7, 0.5)])
def test_the_best_pruning_amount_is_the_fastest_and_reads_its_way(speedups):
    table = pd.DataFrame({TECHNIQUE: ["im2col+vendor", "im2col+vendor"], "amount": [0.25, 0.5],
                          "speedup vs dense [×]": list(speedups), "max rel err": [1e-6, 1e-6]})
    sentence, = findings.variant_findings(table, "amount", "speedup vs dense [×]")
    best = max(speedups)
    assert f"its best amount, {0.25 if best == speedups[0] else 0.5:g}," in sentence
    assert_reads(sentence, best)


@pytest.mark.parametrize("versus", [1.4, 0.6])
def test_the_tuned_model_reads_against_the_best_single_candidate_its_way(versus):
    per_layer = pd.DataFrame({"choice": ["im2col/vendor/fp32"], "runner-up ÷ choice [×]": [1.2]})
    run = {"run_name": "auto", "speedup_vs_best_single": versus, "tuning_s": 3.0, "best_single": "scalar/fp32"}
    sentence, = [f for f in findings.auto_findings(run, per_layer) if "best single" in f]
    assert_reads(sentence, versus)


def test_layers_where_we_beat_pytorch_are_counted_where_we_are_faster():
    matrix = pd.DataFrame({"pytorch": [1.0, 1.0, 1.0, 1.0], "im2col+vendor": [0.5, 2.0, 3.0, 4.0],
                           "scalar": [5.0, 6.0, 6.0, 7.0]})
    winners = matrix.idxmin(axis=1)
    facts = findings.layer_findings(matrix, pd.DataFrame(index=matrix.index), winners)
    assert any("beats PyTorch on 1 of 4 layers" in f for f in facts), facts


def test_the_sweep_table_lists_fastest_first_and_reads_each_speedup_its_way():
    results = [{"status": "ok", "name": name, "metrics": {c.SPEEDUP_VS_BASELINE: s, c.LATENCY_MS: 5.0 / s,
                                                          c.SPEEDUP_CI95_LOW: s * 0.9, c.SPEEDUP_CI95_HIGH: s * 1.1}}
               for name, s in (("slow", 0.5), ("fast", 2.5), ("mid", 1.25))]
    rows = summary.rows(results)
    assert [row[0] for row in rows] == ["fast", "mid", "slow"]
    for row, speedup in zip(rows, (2.5, 1.25, 0.5)):
        assert_reads(row[3], speedup)
