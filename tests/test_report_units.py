"""The report's rules on plain DataFrames: selection, speedups, formatting, ceilings."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis import ceilings, selection, tables
from analysis.document import Table
from analysis.load import JOB_COLUMNS, technique_of
from analysis.render import latex_escape, latex_table, markdown_table
from experiments.tracking import contract as c


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


def test_latest_run_of_a_configuration_wins():
    frame = jobs({"run_id": "old", "algo": "scalar", "start_time": "2026-01-01", c.LATENCY_MS: 1.0},
                 {"run_id": "new", "algo": "scalar", "start_time": "2026-02-01", c.LATENCY_MS: 2.0},
                 {"run_id": "other", "algo": "scalar", "device": "dev2", "start_time": "2025-01-01"})
    latest, dropped = selection.latest_per_configuration(frame)
    assert sorted(latest["run_id"]) == ["new", "other"] and dropped == 1


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
    assert configured.source == "configured" and configured.bandwidth_gbs == 4_800
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
