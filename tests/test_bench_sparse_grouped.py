"""make bench-sparsity and make bench-grouped: their pruning, crossover and totals (fast), and both
benchmarks end to end at a tiny input on the numpy backend (slow)."""
import numpy as np
import pandas as pd
import pytest

from experiments.bench import grouped, sparsity


def test_prune_keeps_exactly_the_density():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 32, 3, 3)).astype(np.float32)
    for density in (1.0, 0.5, 0.05):
        pruned = sparsity.prune(w, density, rng)
        assert np.count_nonzero(pruned) == round(density * w.size)
        kept = pruned != 0
        np.testing.assert_array_equal(pruned[kept], w[kept])


def _frame():
    # one layer (3 layers share its shape), sparse wins below density 0.5 for im2col, never for kn2row
    rows = []
    for density in (1.0, 0.5, 0.2, 0.05):
        rows.append({"layer": "l", "layers": 3, "shape": "s", "algo": "im2col", "density": density,
                     "vendor": 1.0, "sparse": 2 * density + 0.05})
        rows.append({"layer": "l", "layers": 3, "shape": "s", "algo": "kn2row", "density": density,
                     "vendor": 1.0, "sparse": 5.0})
    frame = pd.DataFrame(rows)
    frame["best dense"] = frame["vendor"]
    frame["sparse/dense"] = frame["sparse"] / frame["best dense"]
    return frame


def test_crossover_and_tables():
    frame = _frame()
    im2col, kn2row = frame[frame["algo"] == "im2col"], frame[frame["algo"] == "kn2row"]
    assert sparsity.crossover(im2col["density"], im2col["sparse/dense"]) == 0.2
    assert np.isnan(sparsity.crossover(kn2row["density"], kn2row["sparse/dense"]))
    # a win at 0.8 between losses does not count: the crossover is where the SpMM keeps winning
    assert sparsity.crossover([1.0, 0.8, 0.5, 0.2, 0.1], [1.2, 0.9, 1.1, 0.8, 0.5]) == 0.2
    ratio, cross, totals = sparsity.tables(frame)
    assert list(ratio.columns) == ["layer", "shape", "algo", "d=1", "d=0.5", "d=0.2", "d=0.05"]
    assert cross.set_index("algo")["crossover density"].loc["im2col"] == 0.2
    row = totals[(totals["algo"] == "im2col") & (totals["density"] == 0.05)].iloc[0]
    assert row["all layers, best dense ms"] == 3.0 and row["sparse/dense"] == pytest.approx(0.15)


def test_grouped_totals_weight_each_shape_by_its_layers():
    layers = pd.DataFrame([
        {"model": "m", "layers": 2, "pytorch": 1.0, "im2col/vendor": 0.5, "scalar": 0.25},
        {"model": "m", "layers": 1, "pytorch": 3.0, "im2col/vendor": 1.0, "scalar": "FAILED err=1"},
    ])
    (row,) = grouped.totals(layers, ["im2col/vendor", "scalar"]).to_dict("records")
    assert row["grouped layers"] == 3 and row["pytorch"] == 5.0 and row["im2col/vendor"] == 2.0
    assert np.isnan(row["scalar"]) and row["best"] == "im2col/vendor" and row["speedup (pytorch/best)"] == 2.5


@pytest.mark.slow
def test_both_benchmarks_run_end_to_end(tmp_path):
    out = tmp_path / "sparsity.md"
    assert sparsity.main(["--backend", "numpy", "--densities", "1", "0.1", "--input-size", "32",
                          "--out", str(out)]) == 0
    text = out.read_text()
    assert "whole-model crossover density" in text and "layer4.0.conv2" in text and "FAILED" not in text
    out = tmp_path / "grouped.md"
    assert grouped.main(["--backend", "numpy", "--models", "shufflenet_v2_x1_0", "--input-size", "32",
                         "--out", str(out)]) == 0
    text = out.read_text()
    assert "depthwise" in text and "FAILED" not in text
