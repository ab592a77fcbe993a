"""A new sqlite store is whole or absent whatever signal stops its creation, and a half-made one is
rebuilt (when it holds nothing) or refused with the command that fixes it."""
from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import sqlite3
import time

import pytest

import mlflow.store.tracking.sqlalchemy_store  # noqa: F401  (imported before the forks: they race MLflow's migration, not its import)
from mlflow.tracking import MlflowClient

from experiments.tracking import mlflow_log as mlf
from experiments.tracking import sqlite_store
from experiments.tracking.retry import transient
from experiments.tracking.sqlite_store import BrokenStoreError


def _open_store(uri: str) -> None:
    mlf.client.cache_clear()
    mlf.client(uri)


def _open_with_mlflow_alone(uri: str) -> None:
    """What MLflow does without convbench: the migrations run on the database file itself."""
    MlflowClient(tracking_uri=uri).search_experiments(max_results=1)


def _stop_after(target, uri: str, lock_or_db, delay_s: float, signum: int) -> None:
    """Run target(uri) in a forked process and send it ``signum`` ``delay_s`` after ``lock_or_db`` appears."""
    process = multiprocessing.get_context("fork").Process(target=target, args=(uri,))
    process.start()
    deadline = time.monotonic() + 60
    while not lock_or_db.exists() and process.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(delay_s)
    if process.is_alive():
        os.kill(process.pid, signum)
    process.join(60)
    assert not process.is_alive()


def _whole(db) -> bool:
    return sqlite_store._missing_tables(db) is None and sqlite_store._version_problem(db) is None


def _uses(uri: str) -> None:
    """The next run: opens the store and logs a run to it."""
    mlf.client.cache_clear()
    run_id = mlf.start_run(uri, "after", "job", {})
    mlf.log(uri, run_id, metrics={"x": 1.0})
    mlf.finish(uri, run_id, True)
    assert mlf.client(uri).get_run(run_id).info.status == "FINISHED"


# SIGKILL and Ctrl-C at moments spread over the creation (about 3 to 10 s on 2 busy cores)
_STOPS = [(0.0, signal.SIGKILL), (0.4, signal.SIGINT), (1.0, signal.SIGKILL), (2.0, signal.SIGKILL),
          (3.0, signal.SIGINT), (4.5, signal.SIGKILL)]


def test_a_signal_at_any_moment_of_a_new_stores_creation_leaves_no_half_made_store(tmp_path):
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    lock = tmp_path / "mlflow.db.lock"
    for delay_s, signum in _STOPS:
        _stop_after(_open_store, uri, lock, delay_s, signum)
        assert not db.exists() or _whole(db), f"{signal.Signals(signum).name} {delay_s} s into the creation"
    _uses(uri)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["mlflow.db", "mlflow.db.lock"]


def test_a_store_half_made_by_mlflow_alone_is_rebuilt_and_used(tmp_path, capsys):
    """The store of the issue: MLflow's in-place migration stopped by SIGKILL, later runs failing on it."""
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    for delay_s in (1.0, 0.3, 2.5):    # into the migrations, however fast this machine runs them
        _stop_after(_open_with_mlflow_alone, uri, db, delay_s, signal.SIGKILL)
        if db.exists() and not _whole(db):
            break
        db.unlink(missing_ok=True)
    else:
        pytest.skip("the migrations outran every SIGKILL on this machine: no half-made store to repair")
    _uses(uri)
    assert "was half-made" in capsys.readouterr().err


def _with_a_run(db) -> None:
    connection = sqlite3.connect(db)
    connection.execute("INSERT INTO experiments (experiment_id, name, lifecycle_stage) VALUES (7, 'study', 'active')")
    connection.commit()
    connection.close()


def test_an_old_schema_version_with_runs_is_refused_with_the_upgrade_command(whole_store, tmp_path):
    db = tmp_path / "mlflow.db"
    shutil.copy(whole_store, db)
    _with_a_run(db)
    connection = sqlite3.connect(db)
    connection.execute("UPDATE alembic_version SET version_num = '0584bdc529eb'")
    connection.commit()
    connection.close()
    with pytest.raises(BrokenStoreError, match=rf"cp {db} {db}.bak.*`mlflow db upgrade sqlite:///{db}`") as refused:
        _open_store(f"sqlite:///{db}")
    assert not transient(refused.value)        # not retried for tracking.retry_s: it will not get better
    assert sqlite3.connect(db).execute("SELECT count(*) FROM experiments WHERE experiment_id = 7").fetchone() == (1,)


def test_a_store_missing_tables_with_runs_is_refused_and_left_as_it_is(whole_store, tmp_path):
    db = tmp_path / "mlflow.db"
    shutil.copy(whole_store, db)
    _with_a_run(db)
    connection = sqlite3.connect(db)
    connection.execute("DROP TABLE metrics")
    connection.commit()
    connection.close()
    before = db.read_bytes()
    with pytest.raises(BrokenStoreError, match=rf"tables missing: metrics.*mv {db} {db}.broken"):
        _open_store(f"sqlite:///{db}")
    assert db.read_bytes() == before           # MLflow did not migrate it in place


def test_an_old_store_without_runs_is_rebuilt(whole_store, tmp_path, capsys):
    db = tmp_path / "old.db"
    shutil.copy(whole_store, db)
    connection = sqlite3.connect(db)
    connection.execute("UPDATE alembic_version SET version_num = '0584bdc529eb'")
    connection.commit()
    connection.close()
    _uses(f"sqlite:///{db}")
    assert "schema version 0584bdc529eb" in capsys.readouterr().err and _whole(db)
