"""`make report` end to end on a synthetic store whose numbers are known (tests/report_fixtures.py)."""
from __future__ import annotations

import base64
import json
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from analysis.report import main
from tests.report_fixtures import A_EXPECTED, GPU_A, full_store

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The full synthetic store, reported once for every test of this module."""
    root = tmp_path_factory.mktemp("store")
    store = full_store(root)
    out = root / "reports"
    out.mkdir()
    # Measured ceilings for group A only: group B must fall back to "no ceilings known".
    (out / "ceilings.json").write_text(json.dumps({GPU_A: {
        "peak_gflops": 50.0, "bandwidth_gbs": 5.0, "source": "measured", "method": "test"}}))
    (out / "figures").mkdir()
    (out / "figures" / "stale.png").write_bytes(b"left over from an older report")
    code = main(["--tracking-uri", store.uri, "--out", str(out)])
    assert code == 0
    return out


def table(out: Path, prefix: str) -> pd.DataFrame:
    matches = sorted((out / "tables").glob(f"{prefix}*.csv"))
    assert len(matches) == 1, f"expected one table {prefix}*, found {[m.name for m in matches]}"
    return pd.read_csv(matches[0])


def test_writes_markdown_html_tables_and_figures(report):
    assert (report / "report.md").is_file() and (report / "report.html").is_file()
    csvs = sorted((report / "tables").glob("*.csv"))
    assert csvs and all(p.with_suffix(".tex").is_file() for p in csvs)
    assert sorted((report / "figures").glob("*.png"))
    assert not (report / "figures" / "stale.png").exists()
    assert (report / "ceilings.json").is_file()  # not the report's to delete


def test_end_to_end_holds_best_tile_and_side_by_side_speedups(report):
    e2e = table(report, "end-to-end_synthetic-gpu-a").set_index("technique")
    assert sorted(e2e.index) == sorted(A_EXPECTED)
    for technique, (tile, median, speedup) in A_EXPECTED.items():
        row = e2e.loc[technique]
        assert (pd.isna(row["tile"]) if tile is None else row["tile"] == tile), technique
        assert row["median [ms]"] == pytest.approx(median), technique
        assert row["speedup vs PyTorch [×]"] == pytest.approx(speedup), technique
    assert e2e.loc["kn2row+vendor", "PyTorch same job [ms]"] == 12.0
    assert pd.isna(e2e.loc["pytorch", "PyTorch same job [ms]"])
    assert e2e.loc["im2col+blocked", "p10 [ms]"] == pytest.approx(4.5)
    assert e2e.loc["im2col+blocked", "p90 [ms]"] == pytest.approx(6.0)


def test_devices_are_not_mixed(report):
    # Group B's im2col tile 8 (3 ms) beats group A's best (tile 16, 5 ms): mixing would pick 8 for A.
    b = table(report, "end-to-end_synthetic-cpu-b").set_index("technique")
    assert list(b.index) == ["pytorch", "im2col+blocked", "im2col+vendor"]
    assert b.loc["im2col+blocked", "tile"] == 8
    assert b.loc["im2col+blocked", "speedup vs PyTorch [×]"] == pytest.approx(2.0)
    assert b.loc["im2col+vendor", "speedup vs PyTorch [×]"] == pytest.approx(3.0)
    sweep_a = table(report, "tile-sweep_synthetic-gpu-a").set_index("tile")
    assert list(sweep_a.index) == [8, 16, 32]  # neither B's runs nor the failed tile 64
    assert sweep_a.loc[16, "im2col+blocked [ms]"] == 5.0


def test_emulated_timings_are_never_performance(report):
    markdown = (report / "report.md").read_text()
    assert "999" not in markdown  # the emulated run's latency
    for csv in (report / "tables").glob("*.csv"):
        if csv.stem != "emulated":
            assert "emulator" not in csv.read_text() or csv.stem.startswith("setup"), csv.name
    emulated = table(report, "emulated")
    assert not any("[ms]" in column for column in emulated.columns)
    assert list(emulated["technique"]) == ["im2col+blocked"]


def test_older_runs_missing_metrics_leave_columns_out_with_a_note(report):
    b = table(report, "end-to-end_synthetic-cpu-b")
    assert "p10 [ms]" not in b.columns and "p90 [ms]" not in b.columns
    markdown = (report / "report.md").read_text()
    assert "`latency_p10_ms` was not logged by these runs" in markdown
    assert "No energy metrics" in markdown
    assert "have no layers.csv artifact" in markdown
    assert not list((report / "tables").glob("energy_synthetic-cpu-b*"))


def test_per_layer_fastest_and_best_tile_per_layer(report):
    layers = table(report, "layers_synthetic-gpu-a").set_index("layer")
    assert list(layers["fastest"]) == ["im2col+vendor", "kn2row+blocked (tile 32)", "pytorch"]
    assert layers.loc["conv1", "fastest vs PyTorch [×]"] == pytest.approx(3.0 / 0.8)
    assert layers.loc["conv2", "scalar [ms]"] == 7.0
    best = table(report, "best-tile-per-layer_synthetic-gpu-a").set_index("layer")
    assert list(best["im2col+blocked best tile"]) == [32, 16, 16]
    assert list(best["kn2row+blocked best tile"]) == [32, 32, 16]
    anatomy = table(report, "layer-anatomy_synthetic-gpu-a").set_index("layer")
    assert anatomy.loc["conv1", "im2col GEMM M×N×K"] == "16×1024×27"   # K = k*k*C_in
    assert anatomy.loc["conv1", "kn2row GEMM M×N×K"] == "144×1024×3"   # M = k*k*C_out


def test_energy_per_technique(report):
    energy = table(report, "energy_synthetic-gpu-a").set_index("technique")
    assert energy.loc["im2col+vendor", "energy per inference [J]"] == pytest.approx(0.2)
    # 0.2 J at 0.5 kg CO2e/kWh = 0.2 / 3.6e6 kWh * 0.5 kg/kWh = 2.78e-8 kg = 0.0278 mg
    assert energy.loc["im2col+vendor", "CO2 per inference [mg CO2e]"] == pytest.approx(0.2 / 3.6e6 * 0.5 * 1e6)
    assert energy.loc["scalar", "CO2 window total [g CO2e]"] == pytest.approx(0.05)
    assert "measured with NVML" in (report / "report.md").read_text()


def test_pruning_and_quantization_sections(report):
    pruning = table(report, "pruning_synthetic-gpu-a").set_index("density")
    assert pruning.loc[1.0, "speedup vs dense [×]"] == pytest.approx(1.0)
    assert pruning.loc[0.5, "speedup vs dense [×]"] == pytest.approx(4.0 / 3.0)
    assert pruning.loc[0.1, "speedup vs dense [×]"] == pytest.approx(2.0)
    assert pruning.loc[0.1, "speedup vs PyTorch [×]"] == pytest.approx(5.0)
    quant = table(report, "quantization_synthetic-gpu-a").set_index("precision")
    assert quant.loc["fp16", "bits"] == 16
    assert quant.loc["fp16", "speedup vs fp32 [×]"] == pytest.approx(1.6)
    assert quant.loc["fp16", "max rel err"] == pytest.approx(3e-4)


def test_failed_runs_are_listed_with_their_error_and_compared_nowhere(report):
    failed = table(report, "failed-runs")
    assert list(failed["error"]) == ["RuntimeError: tile 64 needs 64 KiB of shared memory"]
    for csv in (report / "tables").glob("*.csv"):
        if csv.stem != "failed-runs":
            assert "blocked-t64" not in csv.read_text(), csv.name


def test_findings_state_measured_winners(report):
    markdown = (report / "report.md").read_text()
    assert ("**im2col+vendor** is fastest end-to-end: 2.50× faster than PyTorch (4 ms against PyTorch's 10 ms "
            "in the same job)") in markdown
    assert "im2col+blocked: best tile 16 (5 ms)" in markdown
    assert "Fastest per layer (3 conv layers): im2col+vendor on 1, kn2row+blocked (tile 32) on 1, pytorch on 1." in markdown
    assert "im2col's workspace relative to the layer input (median): 5.62× on layers with k·k = 9" in markdown
    assert "4.7% of the measured compute ceiling" in markdown
    assert "No ceilings known" not in markdown  # group B has no layers, so no roofline at all


def test_every_figure_is_a_valid_png(report):
    for png in (report / "figures").glob("*.png"):
        assert png.read_bytes()[:8] == PNG_SIGNATURE, png.name
        with Image.open(png) as image:
            image.verify()
        with Image.open(png) as image:
            width, height = image.size
        assert width >= 400 and height >= 200, png.name


class _Collector(HTMLParser):
    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self):
        super().__init__()
        self.images, self.open_tags, self.errors = [], [], []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        elif tag not in self.VOID:
            self.open_tags.append(tag)

    def handle_endtag(self, tag):
        if not self.open_tags or self.open_tags.pop() != tag:
            self.errors.append(tag)


def test_html_parses_and_embeds_every_figure(report):
    parser = _Collector()
    parser.feed((report / "report.html").read_text())
    parser.close()
    assert parser.errors == [] and parser.open_tags == []
    pngs = {p.read_bytes() for p in (report / "figures").glob("*.png")}
    assert len(parser.images) == len(pngs)
    prefix = "data:image/png;base64,"
    embedded = set()
    for src in parser.images:
        assert src.startswith(prefix)  # self-contained: no file references
        embedded.add(base64.b64decode(src[len(prefix):]))
    assert embedded == pngs


def test_markdown_links_every_figure_and_table(report):
    markdown = (report / "report.md").read_text()
    for png in (report / "figures").glob("*.png"):
        assert f"(figures/{png.name})" in markdown
    for csv in (report / "tables").glob("*.csv"):
        assert f"(tables/{csv.name})" in markdown
    for tex in (report / "tables").glob("*.tex"):
        text = tex.read_text()
        assert text.startswith("\\begin{table}") and "\\end{tabular}" in text
