"""A joblib sweep survives the loss of a worker process: the job it held is FAILED with the reason, the
other jobs finish, no traceback, nothing left RUNNING."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import psutil
import pytest

from experiments.tracking import contract

from .servers import REPO
from .test_harness_sweep import SMALL, _runs

QUICK = [*SMALL, "energy=off"]


def _measuring(uri):
    try:
        return [run for run in _runs(uri) if run.info.status == "RUNNING"
                and run.data.tags.get(contract.T_RUN_KIND) == "job"]
    except Exception:     # the store is being created
        return []


@pytest.mark.slow   # two joblib workers and a job run again: about 90 s on 2 cores
def test_killing_one_joblib_worker_fails_its_job_and_the_others_finish(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    process = subprocess.Popen(
        [sys.executable, str(REPO / "run.py"), "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
         "algo=scalar,pytorch,im2col", *QUICK, "bench.model.min_time_s=6", f"tracking.uri={uri}",
         f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=tmp_path, stdout=open(out, "w"), stderr=open(err, "w"))
    try:
        deadline = time.time() + 300
        while len(_measuring(uri)) < 2:
            assert process.poll() is None and time.time() < deadline, err.read_text()[-3000:]
            time.sleep(0.5)
        victim = _measuring(uri)[0]
        job_process = psutil.Process(int(victim.data.tags[contract.T_PID]))
        worker = job_process.parent()
        worker.send_signal(signal.SIGKILL)        # the job's worker, not the job's own process
        code = process.wait(timeout=400)
    finally:
        if process.poll() is None:
            process.kill()
    stdout, stderr = out.read_text(), err.read_text()
    assert code == 1, stderr[-3000:]
    assert "Traceback" not in stdout + stderr and "a joblib worker process died" in stderr
    assert "2 of 3 jobs ok" in stderr.strip().splitlines()[-1]
    runs = _runs(uri)
    assert [run.info.run_name for run in runs if run.info.status == "RUNNING"] == []
    lost = [run for run in runs if run.info.run_id == victim.info.run_id][0]
    assert lost.info.status == "FAILED"
    assert f"its worker process {worker.pid} died" in lost.data.tags[contract.T_ERROR]
    finished = [run for run in runs if run.info.status == "FINISHED" and run.data.tags[contract.T_RUN_KIND] == "job"]
    assert len(finished) == 2 and victim.info.run_name not in {run.info.run_name for run in finished}
