"""A job of a parallel launcher whose process dies (segfault, os._exit, the OOM killer's SIGKILL) is FAILED
with the reason, in its report and in its MLflow run, and the worker goes on. The joblib sweep of
test_run_lifecycle checks the same end to end (slow); this runs the worker's own path in this process:
run_job forks the job, the job dies in the middle of its work, the worker closes the run."""
from __future__ import annotations

import faulthandler
import os
import signal

import mlflow
import pytest
from hydra import compose, initialize_config_dir

from experiments.harness import isolation, runner
from experiments.harness import job as job_module
from experiments.tracking import contract

from .servers import REPO


def _segfault():
    faulthandler.disable()      # pytest's handler would print the child's stack
    os.kill(os.getpid(), signal.SIGSEGV)


@pytest.mark.parametrize(("exit_code", "reason"), [
    (-signal.SIGSEGV, "its process died of SIGSEGV (a segmentation fault)"),
    (-signal.SIGKILL, "its process died of SIGKILL (the out-of-memory killer, or kill -9)"),
    (-signal.SIGABRT, "its process died of SIGABRT (an abort)"),
    (3, "its process exited with code 3 without a result (os._exit, or a library calling exit)"),
    (128 + signal.SIGTERM, "its process was stopped by SIGTERM"),
])
def test_each_way_to_die_is_named(exit_code, reason):
    assert isolation.describe(exit_code) == reason


def test_a_child_that_dies_raises_with_its_reason_and_one_that_returns_gives_its_value():
    assert isolation.in_child(lambda: {"ok": 1}) == {"ok": 1}
    with pytest.raises(isolation.ChildDied, match="exited with code 3"):
        isolation.in_child(lambda: os._exit(3))


def test_a_job_whose_process_dies_is_failed_with_the_reason(tmp_path, monkeypatch, capsys):
    reason = "crashed: its process died of SIGSEGV (a segmentation fault)"
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["model=digits_cnn", "backend=numpy", "bench=smoke", "energy=off",
                                           f"tracking.uri={uri}", "tracking.retry_s=0"])
    # a parallel launcher's worker: in a sweep that another process started
    monkeypatch.setattr(runner.JobContext, "current", classmethod(lambda cls: cls(in_sweep=True, num=0)))
    monkeypatch.setattr(runner.sweep, "runs_here", lambda: False)
    monkeypatch.setattr(runner.devices, "isolate_job_device", lambda *args: None)
    monkeypatch.setattr(job_module.Job, "run", lambda self: _segfault())     # after its run was opened

    report = runner.run_job(cfg)

    assert report.failed and report.error.startswith(reason), report.error
    assert f"FAILED: {reason}" in capsys.readouterr().err
    client = mlflow.tracking.MlflowClient(uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.info.run_id == report.run_id
    assert run.info.status == "FAILED" and run.data.tags[contract.T_ERROR].startswith(reason)
