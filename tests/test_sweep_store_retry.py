"""A sweep waits for a store that is briefly locked or down, for tracking.retry_s, as a single run does:
the parent's creation and closing included."""
from __future__ import annotations

import shutil
import subprocess
import sys

from experiments.tracking import contract
from experiments.tracking import mlflow_log as mlf

from .test_harness_sweep import SMALL

QUICK = [*SMALL, "energy=off"]

# another process holds the store's EXCLUSIVE lock (no reader, no writer gets in) for 15 s
_LOCK_FOR_15_S = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(15)
connection.execute("COMMIT")
"""


def test_a_sweep_into_a_store_locked_for_15_s_with_retry_s_60_finishes(convbench, whole_store, tmp_path, capsys):
    db = tmp_path / "mlflow.db"
    shutil.copy(whole_store, db)
    uri = f"sqlite:///{db}"
    locker = subprocess.Popen([sys.executable, "-c", _LOCK_FOR_15_S, str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout.readline().strip() == "locked"
        code = convbench("-m", "algo=scalar,pytorch", *QUICK, f"tracking.uri={uri}", "tracking.retry_s=60",
                         f"hydra.sweep.dir={tmp_path / 'sweep'}")
    finally:
        locker.kill()
        locker.wait()
    err = capsys.readouterr().err
    assert code == 0, err[-3000:]
    assert "database is locked" in err and "(tracking.retry_s)" in err
    client = mlf.client(uri)
    runs = client.search_runs([client.get_experiment_by_name("convbench").experiment_id])
    assert sorted(run.data.tags[contract.T_RUN_KIND] for run in runs) == ["job", "job", "parent"]
    assert {run.info.status for run in runs} == {"FINISHED"}
    assert not list(tmp_path.rglob("mlflow-outbox"))
