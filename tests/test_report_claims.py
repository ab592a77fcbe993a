"""What the report claims must hold: an emulator sweep ranks nothing and shows no energy, a thin energy
window is in no ranking, PyTorch's drift between a sweep's jobs is named."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.report import main
from experiments.tracking import contract as c
from tests.report_fixtures import CPU_B, SyntheticStore, timing


def _report(store: SyntheticStore, root: Path) -> Path:
    out = root / "reports"
    assert main(["--tracking-uri", store.uri, "--out", str(out)]) == 0
    return out


def test_an_emulator_sweep_report_ranks_nothing_and_shows_no_energy(tmp_path):
    store = SyntheticStore(tmp_path)
    emulated = {"device": CPU_B, "backend": "emulator", "energy_mode": "estimated"}
    store.job("pytorch", metrics=timing(6.0, baseline=6.0, energy_j=0.5), **emulated)
    for tile, median in ((8, 4550.0), (16, 3000.0)):
        store.job("im2col", "blocked", tile, metrics=timing(median, baseline=6.0, energy_j=75.2), **emulated)
    out = _report(store, tmp_path)
    markdown = (out / "report.md").read_text()
    for claim in ("faster", "slower", "fastest", "Lowest energy", "4550", "75.2", "J]"):
        assert claim not in markdown, claim
    assert not list((out / "figures").glob("*.png"))
    emulated_table = pd.read_csv(next((out / "tables").glob("emulated*.csv")))
    assert len(emulated_table) == 3 and not any("[ms]" in col or "[J]" in col for col in emulated_table.columns)


def test_a_thin_energy_window_is_marked_and_in_no_ranking(tmp_path):
    store = SyntheticStore(tmp_path)
    store.job("pytorch", metrics=timing(10.0, energy_j=0.5), tags={c.T_ENERGY_WINDOW: "readable"})
    store.job("im2col", "vendor", metrics=timing(5.0, energy_j=0.3), tags={c.T_ENERGY_WINDOW: "readable"})
    # the case: a window of about 2 images reads 75.2 J (or, as here, seemingly the lowest)
    store.job("kn2row", "vendor", metrics=timing(9.5, energy_j=0.01), tags={c.T_ENERGY_WINDOW: "thin"})
    out = _report(store, tmp_path)
    energy = pd.read_csv(next((out / "tables").glob("energy*.csv"))).set_index("technique")
    assert energy.loc["kn2row+vendor", "window"] == "thin" and energy.loc["im2col+vendor", "window"] == "readable"
    markdown = (out / "report.md").read_text()
    assert "Lowest energy per inference: im2col+vendor" in markdown
    end_to_end = pd.read_csv(next((out / "tables").glob("end-to-end*.csv"))).set_index("technique")
    assert pd.isna(end_to_end.loc["kn2row+vendor", "energy per image [J]"])
    assert "fewer than 20 images" in markdown


def test_pytorch_drift_between_a_sweeps_jobs_is_named(tmp_path):
    store = SyntheticStore(tmp_path)
    store.job("pytorch", metrics=timing(0.54, baseline=0.54))
    store.job("im2col", "vendor", metrics=timing(0.2, baseline=0.55))
    store.job("kn2row", "vendor", metrics=timing(0.2, baseline=15.15))   # the machine got busy
    store.job("scalar", metrics=timing(0.5, baseline=0.56))
    markdown = (_report(store, tmp_path) / "report.md").read_text()
    drift = next(line for line in markdown.splitlines() if "drifted" in line)
    assert "toynet/kn2row/vendor-t16" in drift.split("off the median:")[1]
    assert "im2col" not in drift.split("off the median:")[1].split(". ")[0]
    assert "covers the noise within its job only" in drift


def test_two_rungs_at_one_tile_are_both_in_every_table(tmp_path):
    from tests.report_fixtures import TOYNET_LAYERS, layer_rows
    store = SyntheticStore(tmp_path)
    pytorch_layers = [3.0, 4.0, 1.2]
    store.job("pytorch", metrics=timing(10.0, energy_j=0.5), layers=layer_rows("pytorch", pytorch_layers),
              tags={c.T_ENERGY_WINDOW: "readable"})
    for rung, median, per_layer in (("blocked", 5.0, [1.5, 2.0, 1.5]), ("warptile", 4.0, [1.0, 1.6, 1.4])):
        store.job("im2col", "blocked", 16, rung=rung, metrics=timing(median, energy_j=0.3),
                  layers=layer_rows("im2col", per_layer, baseline=pytorch_layers), tags={c.T_ENERGY_WINDOW: "readable"})
    out = _report(store, tmp_path)
    tables = {path.stem: pd.read_csv(path) for path in (out / "tables").glob("*.csv")}
    text = {name: frame.to_csv() for name, frame in tables.items()}
    for prefix in ("end-to-end", "energy", "tile-sweep", "layers_", "best-tile-per-layer", "setup_runs"):
        found = [name for name in text if name.startswith(prefix)]
        assert found, (prefix, sorted(text))
        for name in found:
            assert "im2col+blocked-warptile" in text[name] and "im2col+blocked" in text[name].replace(
                "im2col+blocked-warptile", ""), (name, text[name])
    markdown = (out / "report.md").read_text()
    assert "replaced" not in markdown and len(TOYNET_LAYERS) == 3
    assert "**im2col+blocked-warptile (tile 16)** is fastest end-to-end" in markdown
