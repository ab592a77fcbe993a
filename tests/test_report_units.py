"""The report's rules on plain DataFrames: selection, speedups, formatting, ceilings."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis import ceilings, findings, samples, selection, tables
from analysis.document import Table
from analysis.load import JOB_COLUMNS, technique_of
from analysis.render import latex_escape, latex_table, markdown_table
from experiments.tracking import contract as c
from experiments.tracking import labels


def jobs(*rows) -> pd.DataFrame:
    """Job rows with defaults for every column the selection reads."""
    defaults = {"device": "dev", "backend": "gpu", "cache_mode": "hot", "model": "m", "batch": "1",
                "input_size": "32", "quant": "fp32", "prune": "none", "prune_amount": 0.0,
                "status": "ok", "emulated": False, "run_name": "r"}
    frame = pd.DataFrame([{**defaults, **row} for row in rows])
    for column in JOB_COLUMNS:
        if column not in frame:
            frame[column] = np.nan
    frame["technique"] = [technique_of(a, g if isinstance(g, str) else None)
                          for a, g in zip(frame["algo"], frame["gemm"])]
    frame["tile"] = frame["tile"].astype("Int64")
    frame["start_time"] = pd.to_datetime(frame["start_time"])
    return frame


def test_technique_of_ignores_gemm_for_pytorch_and_scalar():
    assert technique_of("pytorch", "blocked") == "pytorch"
    assert technique_of("scalar", "vendor") == "scalar"
    assert technique_of("im2col", "blocked") == "im2col+blocked"


def test_best_tile_ties_go_to_the_smaller_tile():
    frame = jobs({"run_id": "a", "algo": "im2col", "gemm": "blocked", "tile": 32, c.LATENCY_MS: 5.0},
                 {"run_id": "b", "algo": "im2col", "gemm": "blocked", "tile": 16, c.LATENCY_MS: 5.0},
                 {"run_id": "c", "algo": "im2col", "gemm": "blocked", "tile": 8, c.LATENCY_MS: 7.0})
    assert list(selection.best_tile_runs(frame)["run_id"]) == ["b"]


def test_latest_run_of_a_configuration_wins_among_equal_protocols():
    frame = jobs({"run_id": "old", "algo": "scalar", "start_time": "2026-01-01", c.LATENCY_MS: 1.0},
                 {"run_id": "new", "algo": "scalar", "start_time": "2026-02-01", c.LATENCY_MS: 2.0},
                 {"run_id": "other", "algo": "scalar", "device": "dev2", "start_time": "2025-01-01"})
    best, replaced = selection.best_per_configuration(frame)
    assert sorted(best["run_id"]) == ["new", "other"] and list(replaced["run_id"]) == ["old"]


def test_the_most_precise_protocol_wins_over_a_newer_run():
    frame = jobs({"run_id": "default", "algo": "im2col", "bench": "default", "start_time": "2026-01-01"},
                 {"run_id": "smoke", "algo": "im2col", "bench": "smoke", "start_time": "2026-02-01"},
                 {"run_id": "paper", "algo": "kn2row", "bench": "paper", "start_time": "2026-01-01"},
                 {"run_id": "default2", "algo": "kn2row", "bench": "default", "start_time": "2026-03-01"},
                 {"run_id": "smoke_only", "algo": "scalar", "bench": "smoke", "start_time": "2026-01-01"})
    best, replaced = selection.best_per_configuration(frame)
    assert sorted(best["run_id"]) == ["default", "paper", "smoke_only"]
    assert sorted(replaced["run_id"]) == ["default2", "smoke"]


def test_speedup_falls_back_to_the_pytorch_run_without_a_side_by_side_baseline():
    frame = jobs({"algo": "pytorch", c.LATENCY_MS: 10.0},
                 {"algo": "im2col", "gemm": "vendor", c.LATENCY_MS: 4.0, c.BASELINE_LATENCY_MS: 12.0},
                 {"algo": "kn2row", "gemm": "vendor", c.LATENCY_MS: 5.0})
    table, notes = tables.end_to_end(frame)
    by = table.set_index("technique")
    assert by.loc["im2col+vendor", tables.SPEEDUP] == pytest.approx(3.0)   # 12 / 4, same job
    assert by.loc["kn2row+vendor", tables.SPEEDUP] == pytest.approx(2.0)   # 10 / 5, PyTorch run
    assert by.loc["kn2row+vendor", tables.BASELINE_SOURCE] == tables.PYTORCH_RUN
    assert any("separate PyTorch run" in note for note in notes)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["A", "B"]), st.sampled_from([8, 16, 32, 64]),
                          st.floats(0.1, 100.0)), min_size=1, max_size=12,
                unique_by=lambda t: (t[0], t[1])))
def test_best_tile_is_the_fastest_tile_of_its_own_device(measurements):
    frame = jobs(*[{"run_id": f"{d}{t}", "device": d, "algo": "im2col", "gemm": "blocked",
                    "tile": t, c.LATENCY_MS: ms} for d, t, ms in measurements])
    best = selection.best_tile_runs(frame).set_index("device")
    for device in {d for d, _, _ in measurements}:
        own = [(ms, t) for d, t, ms in measurements if d == device]
        assert best.loc[device, c.LATENCY_MS] == min(own)[0]
        assert best.loc[device, "tile"] == min(own)[1]


def test_markdown_and_latex_escape_cells():
    table = Table("t", "50% of k_h & more", pd.DataFrame({"a|b": ["x|y"], "n": [1.5]}),
                  {"n": "{:.2f}×"})
    markdown = markdown_table(table)
    assert "a\\|b" in markdown and "x\\|y" in markdown and "1.50×" in markdown
    assert markdown.splitlines()[1] == "|:---|---:|"
    latex = latex_table(table)
    assert r"50\% of k\_h \& more" in latex and r"1.50$\times$" in latex
    assert latex_escape("`code` **bold**") == "code bold"


def test_ceilings_prefer_measured_then_configured(tmp_path):
    path = tmp_path / "ceilings.json"
    ceilings.save(ceilings.Ceilings("NVIDIA H100 80GB HBM3", 50_000.0, 3_000.0, "measured"), path)
    measured = ceilings.load_measured(path)
    assert ceilings.ceilings_for("NVIDIA H100 80GB HBM3", measured).source == "measured"
    configured = ceilings.ceilings_for("NVIDIA H200", measured)
    assert configured.source == "datasheet" and configured.bandwidth_gbs == 4_800
    assert ceilings.ceilings_for("NVIDIA H100 PCIe", {}).peak_gflops == 51_200
    assert ceilings.ceilings_for("Some laptop CPU", measured) is None
    assert json.loads(path.read_text())["NVIDIA H100 80GB HBM3"]["source"] == "measured"


def test_measure_cpu_ceilings_quickly(tmp_path):
    measured = ceilings.measure("cpu", matmul_n=128, copy_mib=4, repeats=2)
    assert measured.source == "measured" and measured.device
    assert measured.peak_gflops > 0 and measured.bandwidth_gbs > 0
    assert ceilings.main(["--target", "cpu", "--matmul-n", "128", "--copy-mib", "4",
                          "--repeats", "1", "--device-name", "test cpu",
                          "--out", str(tmp_path / "c.json")]) == 0
    assert "test cpu" in ceilings.load_measured(tmp_path / "c.json")


def test_relative_sqlite_path_is_relative_to_the_repository(tmp_path):
    from analysis.store import REPO_ROOT, resolve_uri
    assert resolve_uri("sqlite:///mlflow.db") == f"sqlite:///{REPO_ROOT / 'mlflow.db'}"
    assert resolve_uri(f"sqlite:///{tmp_path}/m.db") == f"sqlite:///{tmp_path}/m.db"
    assert resolve_uri("http://host:5000") == "http://host:5000"


class _Info:
    def __init__(self, status):
        self.run_id, self.run_name, self.experiment_id = "r1", "r1", "0"
        self.start_time, self.status = 0, status


class _Data:
    def __init__(self, tags):
        self.params, self.metrics = {c.P_ALGO: "im2col", c.P_GEMM: "vendor"}, {}
        self.tags = tags


class _Run:
    def __init__(self, status, tags):
        self.info, self.data = _Info(status), _Data(tags)


@pytest.mark.parametrize("run_status, tags, expected", [
    ("FINISHED", {c.T_STATUS: "ok"}, "ok"),
    ("FAILED", {c.T_STATUS: "failed"}, "failed"),
    ("RUNNING", {c.T_STATUS: "running"}, "running"),     # a job still measuring
    ("FINISHED", {c.T_STATUS: "running"}, "running"),    # result never logged: incomplete
    ("KILLED", {c.T_STATUS: "running"}, "failed"),
    ("FINISHED", {}, "ok"),                              # an older harness without the tag
])
def test_job_status_from_tag_and_mlflow_state(run_status, tags, expected):
    from analysis.load import job_row
    assert job_row(_Run(run_status, tags))["status"] == expected


def test_parent_runs_are_not_jobs():
    from analysis.load import job_row
    assert job_row(_Run("FINISHED", {c.T_RUN_KIND: "parent"})) is None


def test_shape_text_accepts_non_square_strides():
    row = {"in_channels": 3, "out_channels": 8, "kernel_h": 3, "kernel_w": 1, "stride": "2x1",
           "in_h": 9, "in_w": 7}
    assert tables.shape_text(row) == "3→8 3×1/s2x1 9×7"


def test_findings_rank_by_the_same_job_speedups_the_table_shows():
    # Medians from different jobs say kn2row (3 ms) < im2col (4 ms) < scalar (5 ms); the same-job ratios,
    # which cancel the load each job ran under, say scalar > im2col > kn2row. The findings follow the table.
    frame = jobs({"algo": "pytorch", c.LATENCY_MS: 6.0, c.BASELINE_LATENCY_MS: 6.0},
                 {"algo": "kn2row", "gemm": "vendor", c.LATENCY_MS: 3.0, c.BASELINE_LATENCY_MS: 2.0},
                 {"algo": "im2col", "gemm": "vendor", c.LATENCY_MS: 4.0, c.BASELINE_LATENCY_MS: 6.0},
                 {"algo": "scalar", c.LATENCY_MS: 5.0, c.BASELINE_LATENCY_MS: 10.0})
    table, _ = tables.end_to_end(frame)
    facts = findings.end_to_end_findings(table)
    assert facts[0].startswith("**scalar** is fastest end-to-end: 2.00× faster than PyTorch")
    ranking = facts[1].split(": ", 1)[1].rstrip(".").split(" > ")
    named = [item.split(" (")[0] for item in ranking]
    by_table = list(table[table["technique"] != "pytorch"].sort_values(tables.SPEEDUP, ascending=False)["technique"])
    assert named == by_table == ["scalar", "im2col+vendor", "kn2row+vendor"]
    assert "kn2row+vendor (1.50× slower)" in facts[1]


def test_pytorch_fastest_reads_as_slower_never_as_a_fraction_faster():
    frame = jobs({"algo": "pytorch", c.LATENCY_MS: 6.0},
                 {"algo": "im2col", "gemm": "vendor", c.LATENCY_MS: 10.0, c.BASELINE_LATENCY_MS: 6.3,
                  c.SPEEDUP_CI95_LOW: 0.5, c.SPEEDUP_CI95_HIGH: 1.1})
    table, _ = tables.end_to_end(frame)
    fact = findings.end_to_end_findings(table)[0]
    assert fact.startswith("PyTorch is fastest end-to-end: the closest implementation, im2col+vendor, is 1.59× slower")
    assert "not significant" in fact and "2.00× slower to 1.10× faster" in fact
    assert table.set_index("technique").loc["im2col+vendor", tables.SIGNIFICANT] == tables.NOT_SIGNIFICANT


@pytest.mark.parametrize("speedup, text", [(2.5, "2.50× faster"), (0.63, "1.59× slower"), (0.05, "20× slower"),
                                            (1.001, "as fast (1.00×)"), (1234.0, "1230× faster")])
def test_ratio_text(speedup, text):
    assert labels.ratio_text(speedup) == text


@pytest.mark.parametrize("low, high, text", [(0.421, 0.435, "2.30–2.38× slower"), (1.2, 1.9, "1.20–1.90× faster"),
                                             (0.5, 1.1, "2.00× slower to 1.10× faster")])
def test_an_interval_reads_in_the_direction_of_its_speedup(low, high, text):
    assert labels.interval_text(low, high) == text


def test_pytorch_fastest_per_layer_reads_ours_slower_never_as_fast():
    matrix = pd.DataFrame({"pytorch": [1.0, 1.0], "im2col+vendor": [3.6, 0.5]}, index=["conv1", "conv2"])
    shapes = pd.DataFrame({"in_channels": 3, "out_channels": 8, "kernel_h": 3, "kernel_w": 3, "stride": 1,
                           "in_h": 8, "in_w": 8, "flops": 1e6}, index=["conv1", "conv2"])
    table = tables.per_layer(matrix, shapes)
    shown = [labels.versus_pytorch_text(v) for v in table["fastest vs PyTorch [×]"]]
    assert list(table["fastest"]) == ["pytorch", "im2col+vendor"]
    assert shown == ["PyTorch fastest, ours 3.60× slower", "2.00× faster"]


@pytest.mark.parametrize("value, text", [(1000.0, "1000"), (12345.6, "12350"), (0.5, "0.5"), (3.14159, "3.142")])
def test_latencies_never_print_in_exponent_form(value, text):
    assert labels.significant(value) == text


def test_speedup_interval_from_raw_samples_and_the_not_significant_verdict():
    rng = np.random.default_rng(1)
    pytorch = rng.normal(10.0, 0.2, 200)
    fast, same = rng.normal(5.0, 0.1, 200), rng.normal(10.0, 0.2, 200)
    clear = samples.speedup_interval({"pytorch/model": pytorch, "im2col/model": fast}, "im2col")
    assert 1.9 < clear.low < 2.0 < clear.high < 2.1 and clear.significant
    tie = samples.speedup_interval({"pytorch/model": pytorch, "im2col/model": same}, "im2col")
    assert tie.low < 1 < tie.high and not tie.significant
    assert samples.speedup_interval({"pytorch/model": pytorch}, "im2col") is None
    assert samples.speedup_interval({"pytorch/model": pytorch, "pytorch/x": pytorch}, "pytorch") is None


def test_per_layer_ties_and_noise_flags_come_from_the_samples():
    rng = np.random.default_rng(2)
    matrix = pd.DataFrame({"pytorch": [1.0, 1.0], "im2col+vendor": [0.5, 0.99]}, index=["conv1", "conv2"])
    layer_samples = {"pytorch": {"conv1": rng.normal(1.0, 0.01, 50), "conv2": rng.normal(1.0, 0.3, 50)},
                     "im2col+vendor": {"conv1": rng.normal(0.5, 0.01, 50), "conv2": rng.normal(0.99, 0.3, 50)}}
    noise = tables.layer_noise(matrix, layer_samples)
    verdicts = tables.winner_is_significant(matrix, layer_samples)
    assert list(verdicts) == [True, False]
    shapes = pd.DataFrame({"in_channels": 3, "out_channels": 8, "kernel_h": 3, "kernel_w": 3, "stride": 1,
                           "in_h": 8, "in_w": 8, "flops": 1e6}, index=["conv1", "conv2"])
    table = tables.per_layer(matrix, shapes, noise, verdicts)
    assert list(table["fastest"]) == ["im2col+vendor", "im2col+vendor (tie with pytorch)"]
    assert list(table[tables.NOISY_LAYER]) == ["", "pytorch, im2col+vendor"]


def test_the_e2e_interval_comes_from_the_runs_raw_samples_when_the_report_has_them():
    rng = np.random.default_rng(3)
    frame = jobs({"run_id": "a", "algo": "im2col", "gemm": "vendor", c.LATENCY_MS: 5.0, c.BASELINE_LATENCY_MS: 10.0,
                  c.SPEEDUP_CI95_LOW: 0.1, c.SPEEDUP_CI95_HIGH: 0.2},       # logged: overruled by the samples
                 {"run_id": "b", "algo": "kn2row", "gemm": "vendor", c.LATENCY_MS: 5.0, c.BASELINE_LATENCY_MS: 10.0,
                  c.SPEEDUP_CI95_LOW: 1.5, c.SPEEDUP_CI95_HIGH: 2.5})       # no samples: as logged
    raw = {"a": {"pytorch/model": rng.normal(10.0, 0.1, 100), "im2col/model": rng.normal(5.0, 0.05, 100)}}
    table, _ = tables.end_to_end(frame, raw)
    by = table.set_index("technique")
    assert 1.9 < by.loc["im2col+vendor", tables.CI_LOW] < 2.0 < by.loc["im2col+vendor", tables.CI_HIGH] < 2.1
    assert (by.loc["kn2row+vendor", tables.CI_LOW], by.loc["kn2row+vendor", tables.CI_HIGH]) == (1.5, 2.5)


def test_a_device_without_measurement_or_datasheet_gets_the_envelope_of_its_points_as_roof():
    intensity, achieved = np.array([0.5, 4.0, 20.0]), np.array([3.0, 40.0, 90.0])
    roof = ceilings.observed_envelope("Some CPU", intensity, achieved)
    assert roof.source == "observed" and roof.peak_gflops == 90.0 and roof.bandwidth_gbs == 10.0
    assert (achieved <= np.minimum(roof.peak_gflops, intensity * roof.bandwidth_gbs) + 1e-9).all()


def test_the_device_peak_table_names_every_vendor_peak_and_measurement_with_its_source():
    measured = {"My GPU": ceilings.Ceilings("My GPU", 1000.0, 100.0, "measured", "cupy matmul", "2026-12-01")}
    table = ceilings.device_peaks(measured).set_index("device")
    assert {"H100", "H200", "A100", "MI250X", "MI300X", "My GPU"} <= set(table.index)
    assert table.loc["My GPU", "source"].startswith("measured (2026-12-01): cupy matmul")
    for vendor_device, site in (("H200", "nvidia.com"), ("MI300X", "amd.com")):
        assert table.loc[vendor_device, "source"].startswith("datasheet:") and site in table.loc[vendor_device, "source"]


def test_an_older_layers_csv_reads_its_kernel_column_as_the_variant(tmp_path):
    """Files written before the rename call the variant label `kernel`: the reader names it `variant`."""
    from analysis.load import read_layers
    path = tmp_path / "layers.csv"
    path.write_text("layer,kernel_h,kernel_w,kernel,tile\nconv1,3,3,im2col/blocked-t8/fp32,8\n")
    layers = read_layers(path, "run")
    assert layers.loc[0, "variant"] == "im2col/blocked-t8/fp32" and "kernel" not in layers


def test_inflation_counts_the_output_as_float32_at_every_precision():
    """Outputs (and kn2row's partial planes) are float32 whatever the run's dtype; the input is at it."""
    runs = pd.DataFrame({"run_id": ["a"], "algo": ["kn2row"], "quant": ["fp16"]})
    layers = pd.DataFrame({"run_id": ["a"], "layer_index": [0], "layer": ["conv1"], "batch": [1],
                           "in_channels": [2], "in_h": [4], "in_w": [4], "out_channels": [3], "out_h": [4],
                           "out_w": [4], "kernel_h": [3], "kernel_w": [3], "workspace_bytes": [3 * 9 * 16 * 4]})
    row = tables.inflation(runs, layers).iloc[0]
    assert row["workspace_vs_output"] == 9.0                      # 9 float32 planes of the float32 output
    assert row["workspace_vs_input"] == 3 * 9 * 16 * 4 / (2 * 16 * 2)   # the input in half precision
