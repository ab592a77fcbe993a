"""The submitit_slurm preset against a real single-node SLURM on 127.0.0.1 (tests/slurm.py; skipped where
SLURM is not installed, .ci/run installs it). The cluster keeps no accounting (no sacct), as many small
ones: every run must still land, and a job ended by scancel or its time limit is recorded KILLED."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
import time

import pytest

from experiments.tracking import contract

from .servers import REPO
from .slurm import single_node_slurm

# CPU-only cluster: the one documented switch (gpus_per_task=null); the rest is this small node's size
CLUSTER = ["hydra/launcher=submitit_slurm", "hydra.launcher.gpus_per_task=null", "hydra.launcher.cpus_per_task=1",
           "hydra.launcher.mem_gb=null"]
JOB = ["model=digits_cnn", "backend=numpy", "bench=smoke", "energy=off", "algo=im2col"]


def _runs(store):
    if not store.exists():
        return []
    with sqlite3.connect(f"{store.as_uri()}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT r.run_uuid, r.status, t.value FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
                          f"AND t.key = '{contract.T_JOB_NUM}'").fetchall()
    return rows


def _tags(store, run_id):
    with sqlite3.connect(f"{store.as_uri()}?mode=ro", uri=True) as db:
        return dict(db.execute("SELECT key, value FROM tags WHERE run_uuid = ?", (run_id,)).fetchall())


def _sweep(tmp_path, env, extra, end_job=None, timeout_s=600):
    """run.py -m through SLURM; ``end_job(num)`` is called once job ``num``'s run exists (to end it)."""
    store = tmp_path / "mlflow.db"
    command = [sys.executable, "run.py", "-m", *CLUSTER, *JOB, *extra, f"tracking.uri=sqlite:///{store}",
               f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    env = {**env, "PYTHONPATH": str(REPO), "MLFLOW_DISABLE_TELEMETRY": "true"}
    log = tmp_path / "sweep.log"
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline, ended = time.monotonic() + timeout_s, False
        while process.poll() is None and time.monotonic() < deadline:
            if end_job is not None and not ended and any(num == "1" for _, _, num in _runs(store)):
                end_job(env)
                ended = True
            time.sleep(0.5)
        if process.poll() is None:
            process.kill()
            pytest.fail(f"the sweep did not end in {timeout_s} s:\n{log.read_text()[-3000:]}")
    return process.returncode, log.read_text(), store


def test_a_sweep_lands_every_run_and_a_cancelled_job_is_recorded_killed(tmp_path):
    """Two jobs: job 0 quick, job 1 timed long enough to be cancelled by scancel once its run exists."""
    def scancel_job_1(env):
        queue = subprocess.run(["squeue", "--array", "-h", "-o", "%i"], env=env, capture_output=True, text=True)
        job = next(j for j in queue.stdout.split() if j.endswith("_1"))
        subprocess.run(["scancel", job], env=env, check=True)

    with single_node_slurm(tmp_path / "cluster") as env:
        code, out, store = _sweep(tmp_path, env, ["bench.model.min_time_s=0.01,300", "bench.model.max_time_s=600"],
                                  end_job=scancel_job_1)
    assert code == 1, out[-3000:]                               # a job failed: the sweep's exit code says so
    assert "Traceback" not in out
    assert "1 of 2 jobs ok; FAILED 1: digits_cnn/im2col/vendor/fp32/dense: " in out
    runs = {num: (run_id, status) for run_id, status, num in _runs(store)}
    assert set(runs) == {"0", "1"}                              # every run landed
    assert runs["0"][1] == "FINISHED" and _tags(store, runs["0"][0])[contract.T_STATUS] == "ok"
    killed = _tags(store, runs["1"][0])
    assert runs["1"][1] == "KILLED" and killed[contract.T_STATUS] == "failed"
    # the job's own SIGTERM handling (scancel sends SIGTERM) or, where the job had no chance, SLURM's state
    assert "SIGTERM" in killed[contract.T_ERROR] or "cancelled (scancel" in killed[contract.T_ERROR]


@pytest.mark.slow   # the shortest SLURM time limit is a minute
def test_a_job_past_its_time_limit_is_recorded_killed(tmp_path):
    with single_node_slurm(tmp_path / "cluster") as env:
        code, out, store = _sweep(tmp_path, env, ["hydra.launcher.timeout_min=1", "hydra.launcher.signal_delay_s=10",
                                                  "bench.model.min_time_s=0.01,300",
                                                  "bench.model.max_time_s=600"])
    assert code == 1 and "Traceback" not in out
    runs = {num: (run_id, status) for run_id, status, num in _runs(store)}
    assert runs["0"][1] == "FINISHED" and runs["1"][1] == "KILLED"
    assert "ended by its time limit" in _tags(store, runs["1"][0])[contract.T_ERROR]
