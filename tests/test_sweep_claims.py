"""What a sweep's closing summary claims must hold: emulated jobs are never ranked, thin energy windows are
marked, PyTorch's drift between jobs is named, a stopped sweep's unstarted jobs are not failures."""
from __future__ import annotations

import math
import time

from experiments.harness import machine_load, summary
from experiments.harness.sweep import SweepSummary
from experiments.tracking import contract as c
from experiments.tracking import drift

NUMPY = "numpy reference on the CPU, not the HIP kernels"
EMULATOR = "emulator: correctness only, HIP kernels run on the CPU"


def result(name, latency, speedup, baseline, emulated=False, tags=None, scenario="digits_cnn"):
    metrics = {c.LATENCY_MS: latency, c.SPEEDUP_VS_BASELINE: speedup, c.BASELINE_LATENCY_MS: baseline,
               c.MAX_REL_ERR: 3e-7, c.ENERGY_PER_INFERENCE_J: 2.0, c.CO2_PER_INFERENCE_MG: 0.2,
               c.SPEEDUP_CI95_LOW: speedup * 0.9, c.SPEEDUP_CI95_HIGH: speedup * 1.1}
    return {"name": name, "run_name": name, "status": "ok", "metrics": metrics, "emulated": emulated,
            "what_ran": EMULATOR if emulated else NUMPY, "scenario": scenario, "tags": tags or {}}


def test_an_emulator_sweep_ranks_nothing_and_shows_no_energy():
    text = summary.comparison_table([result("t8", 4550.0, 0.0022, 10.0, emulated=True),
                                     result("t16", 3000.0, 0.0033, 10.0, emulated=True)])
    assert summary.rows([result("t8", 4550.0, 0.0022, 10.0, emulated=True)]) == []
    assert summary.EMULATED_WHY in text
    for shown in ("slower", "faster", "J/image", "CO2", "median", "4550"):
        assert shown not in text
    rows = text.splitlines()[-2:]
    assert [row.split()[0] for row in rows] == ["t8", "t16"]    # the sweep's order, not a ranking
    assert all("3e-07" in row for row in rows)


def test_measured_and_emulated_jobs_in_one_sweep_rank_only_the_measured():
    text = summary.comparison_table([result("emu", 900.0, 0.01, 9.0, emulated=True),
                                     result("im2col", 20.0, 0.5, 10.0), result("kn2row", 5.0, 2.0, 10.0)])
    ranked, emulated = text.split(summary.EMULATED_WHY)
    assert "2.00× faster" in ranked and "emu" not in ranked and "emu" in emulated and "slower" not in emulated


def test_a_thin_energy_window_is_marked():
    text = summary.comparison_table([result("kn2row", 5.0, 2.0, 10.0, tags={c.T_ENERGY_WINDOW: "thin"}),
                                     result("im2col", 6.0, 1.6, 10.0, tags={c.T_ENERGY_WINDOW: "readable"})])
    kn2row, im2col = (line for line in text.splitlines() if line.startswith(("kn2row", "im2col")))
    assert "2 (thin)" in kn2row and "0.2 (thin)" in kn2row and "thin" not in im2col


def test_pytorch_drift_between_jobs_is_named_with_the_jobs():
    # the digits_cnn sweep: PyTorch took 0.54 ms in one job and 15.15 ms in another
    results = [result("im2col", 0.2, 2.72, 0.54), result("kn2row", 0.2, 1 / 9.12, 15.15),
               result("scalar", 0.5, 1.1, 0.55), result("vendor", 0.4, 1.4, 0.56)]
    text = summary.comparison_table(results)
    warning = next(line for line in text.splitlines() if "drifted" in line)
    assert warning.startswith("WARNING: PyTorch's baseline drifted between jobs")
    assert "kn2row 15.2 ms" in warning and "im2col" not in warning.split("off the median:")[1].split(".")[0]
    assert "covers the noise within its job only" in warning


def test_a_steady_baseline_says_nothing_and_a_second_scenario_is_not_drift():
    steady = [result("a", 1.0, 1.0, 10.0), result("b", 1.0, 1.0, 10.5), result("c", 1.0, 1.0, 9.8),
              result("d", 1.0, 1.0, 40.0, scenario="resnet18"), result("e", 1.0, 1.0, 41.0, scenario="resnet18")]
    assert summary.drifts(steady) == []
    assert "drifted" not in summary.comparison_table(steady)


def test_drift_rule():
    assert drift.baseline_drift({"a": 10.0, "b": 10.4}) is None
    two = drift.baseline_drift({"a": 10.0, "b": 13.0})            # IQR/median 13% across two jobs
    assert two is not None and set(two.jobs) == {"a", "b"} and math.isclose(two.iqr_rel, 3 / 23)
    one = drift.baseline_drift({"a": 10.0, "b": 10.1, "c": 9.9, "d": 10.0, "e": 14.0})   # one job on its own
    assert one is not None and one.jobs == ("e",)
    assert drift.baseline_drift({"a": 10.0}) is None


def test_busy_jobs_are_listed():
    text = summary.comparison_table([result("a", 1.0, 1.0, 10.0, tags={c.T_QUIET: "no"}),
                                     result("b", 1.0, 1.0, 10.0, tags={c.T_QUIET: "yes"})])
    assert "WARNING: the machine was not quiet during 1 job(s): a (" in text


def test_a_stopped_sweep_says_not_started_never_failed():
    stopped = SweepSummary("S", total=5, ok=2, failed=[], skipped=0, missing=0, not_started=3)
    assert stopped.line() == "convbench sweep S: 2 of 5 jobs ok; 3 not started"
    assert "FAILED" not in stopped.line() and not stopped.success
    lost = SweepSummary("S", total=5, ok=4, failed=[], skipped=0, missing=1)
    assert "FAILED 1: 1 jobs left no result" in lost.line()


def test_the_load_snapshot_names_a_busy_process():
    import subprocess
    import sys
    import psutil
    # another process, not a child of this one (a job's own children are the job's work)
    started = subprocess.run(["sh", "-c", f"{sys.executable} -c 'while True: pass' >/dev/null 2>&1 & echo $!"],
                             capture_output=True, text=True, check=True)
    hog = psutil.Process(int(started.stdout))
    try:
        while hog.cpu_times().user < 0.3:   # past the interpreter's start: spinning
            time.sleep(0.05)
        shot = machine_load.snapshot(sample_s=0.5)
    finally:
        hog.kill()
    assert not shot.quiet and any(f"pid {hog.pid}," in busy for busy in shot.busy)
    alone = machine_load.LoadSnapshot(0.5, 2, (f"python (pid {hog.pid}, 97% CPU)",))
    assert machine_load.warning(alone, None) == (f"machine NOT quiet (at start: load average 0.50 on 2 CPUs, busy: "
                                                 f"python (pid {hog.pid}, 97% CPU)): timings may be slowed and "
                                                 f"PyTorch's baseline may drift")
    assert machine_load.warning(machine_load.LoadSnapshot(0.5, 2, ()), machine_load.LoadSnapshot(1.0, 2, ())) == ""


def test_an_emulator_sweep_over_two_rungs_at_one_tile_keeps_both_and_ranks_nothing(convbench, tmp_path, capsys):
    """The real sweep: two GEMM rungs at TILE 16 on the emulator, energy measured. The closing table keeps both
    rungs, in the sweep's order, with no ratio to PyTorch, no energy figure and no rank."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert convbench("-m", "model=digits_cnn", "backend=emulator", "bench=smoke", "bench.model.warmup=0",
                     "bench.model.min_samples=1", "bench.layer.warmup=0", "bench.layer.min_samples=1",
                     "bench.energy_s=0.1", "energy=codecarbon", "algo=im2col", "gemm=blocked", "gemm.tile=16",
                     "gemm.rung=blocked,warptile", f"tracking.uri={uri}") == 0
    out = capsys.readouterr().out
    closing = out[out.index(summary.EMULATED_WHY) + len(summary.EMULATED_WHY):]
    assert [line.split()[0] for line in closing.splitlines()[4:6]] == ["blocked-t16", "blocked-warptile-t16"]
    for claim in ("slower", "faster", "J/image", "CO2", "energy "):
        assert claim not in closing
    from mlflow.tracking import MlflowClient
    client = MlflowClient(uri)
    jobs = [run for run in client.search_runs([e.experiment_id for e in client.search_experiments()])
            if run.data.tags.get(c.T_RUN_KIND) == "job"]
    assert len(jobs) == 2    # the UI's columns have nothing to show either: no speedup, no energy per image
    for run in jobs:
        assert not {c.SPEEDUP_VS_BASELINE, c.ENERGY_PER_INFERENCE_J, c.CO2_PER_INFERENCE_MG} & set(run.data.metrics)
        assert c.LATENCY_MS in run.data.metrics and c.T_VS_PYTORCH not in run.data.tags
    job_lines = [line for line in out.splitlines() if line.startswith("[convbench] job ") and "max_rel_err" in line]
    assert len(job_lines) == 2 and all("slower" not in line and "faster" not in line and " J and " not in line
                                       for line in job_lines)


def test_a_sweep_is_estimated_from_the_jobs_measured_on_its_backend(tmp_path):
    from experiments.harness.estimate import announcement
    from tests.report_fixtures import SyntheticStore, timing
    store = SyntheticStore(tmp_path)
    for _ in range(3):   # each 0.5 s from start to end
        store.job("im2col", "vendor", metrics=timing(5.0))
    store.job("im2col", "vendor", backend="numpy", metrics=timing(5.0))
    plan = [{"fields": {"backend": "gpu", "model": "toynet"}, "duplicate_of": None}] * 4 + \
        [{"fields": {"backend": "gpu", "model": "toynet"}, "duplicate_of": 0}] + \
        [{"fields": {"backend": "emulator", "model": "toynet"}, "duplicate_of": None}]
    assert announcement(store.uri, plan) == ("estimate: 4 x 0.5 s (median of 3 earlier jobs of toynet on gpu) = about "
                                             "2.0 s, and 1 jobs with no history")
    assert announcement(store.uri, plan[-1:]) == "estimate: no earlier job on this backend in the store to estimate 1 " \
                                                 "jobs from"
