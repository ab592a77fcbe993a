"""A sqlite tracking store is created whole or not at all, and a half-made one is recognised.

MLflow creates a missing database in place, by running some sixty schema migrations that take
seconds; a signal in between (Ctrl-C, SIGKILL, a job's time limit) leaves a store every later open
fails on ("duplicate column name: step", "table secrets already exists", an old schema version).
Here a new store is built aside, in a temporary file in the same directory, by MLflow's own schema
creation, and moved into place with one ``os.replace`` under the creation lock: the database file
is either absent or whole. A store found half-made (an earlier MLflow or a store created before this
module) is rebuilt when it holds no experiment and no run, and refused otherwise, with the command
that fixes it.
"""
from __future__ import annotations

import os
import sqlite3
import sys
import time
from pathlib import Path

_BUILDING = ".creating-"     # <db>.creating-<pid>: a store being built aside (and its -journal)


class BrokenStoreError(RuntimeError):
    """A store that cannot be opened and holds runs: the message says how to repair it (never retried)."""


def prepare(db: Path) -> None:
    """Under the creation lock, before MLflow opens ``db`` (MLflow would migrate a store that lacks tables in
    place): a missing or empty store is built aside and moved into place, a half-made one that holds nothing
    rebuilt, one that holds runs refused (BrokenStoreError); the leftovers of a creation stopped by a signal go."""
    for leftover in db.parent.glob(f"{db.name}{_BUILDING}*"):
        leftover.unlink(missing_ok=True)
    if not db.exists() or not _tables(db):
        _build(db)
        return
    problem = _missing_tables(db)
    if problem is not None:
        _rebuild_or_refuse(db, problem)


def repair(db: Path, error: Exception) -> bool:
    """After MLflow failed to open ``db`` with ``error``: a half-made store (an old schema version among them)
    that holds nothing is rebuilt (True: open it again); one that holds runs raises BrokenStoreError with the fix.
    False when the schema is whole (the error is something else: a lock, a full disk...)."""
    problem = _missing_tables(db) or _version_problem(db)
    if problem is None:
        return False
    _rebuild_or_refuse(db, problem, f" (MLflow said: {type(error).__name__}: {_first_line(error)})")
    return True


def _rebuild_or_refuse(db: Path, problem: str, said: str = "") -> None:
    if _holds_data(db):
        fix = (f"take a backup (cp {db} {db}.bak), then run `mlflow db upgrade sqlite:///{db}`"
               if problem.startswith("schema") else
               f"move it aside (mv {db} {db}.broken) and run again to start a new store")
        raise BrokenStoreError(f"the tracking store {db} is half-made ({problem}: its creation was stopped, or "
                               f"another MLflow version made it) and holds runs, so convbench leaves it as it is: {fix}")
    print(f"[convbench] the tracking store {db} was half-made ({problem}) and held no run: built again{said}",
          file=sys.stderr, flush=True)
    _forget_engines(db)
    db.unlink()
    _build(db)


def _missing_tables(db: Path) -> str | None:
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401 (registers every table MLflow's schema has)
    from mlflow.store.db.base_sql_model import Base
    missing = sorted(set(Base.metadata.tables) - _tables(db))
    if not missing:
        return None
    return f"tables missing: {', '.join(missing[:4])}" + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")


def _version_problem(db: Path) -> str | None:
    from mlflow.store.db.utils import _get_latest_schema_revision
    head = _get_latest_schema_revision()
    found = [row[0] for row in _query(db, "SELECT version_num FROM alembic_version")] \
        if "alembic_version" in _tables(db) else []
    if found == [head]:
        return None
    return f"schema version {found[0] if found else 'none'}, MLflow {_mlflow_version()} expects {head}"


def _build(db: Path) -> None:
    """MLflow's schema in <db>.creating-<pid>, then moved into place; removed if anything stops it."""
    from mlflow.store.tracking import DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    building = db.with_name(f"{db.name}{_BUILDING}{os.getpid()}")
    started = time.perf_counter()
    try:
        store = SqlAlchemyStore(f"sqlite:///{building}", DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH)
        store.engine.dispose()
        os.replace(building, db)
    except BaseException:
        for path in (building, building.with_name(building.name + "-journal")):
            path.unlink(missing_ok=True)
        raise
    directory = os.open(db.parent, os.O_RDONLY)    # the rename itself on disk, not only in the cache
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    print(f"[convbench] created the tracking store {db} ({time.perf_counter() - started:.1f} s)", file=sys.stderr,
          flush=True)


def _forget_engines(db: Path) -> None:
    """MLflow keeps one engine per database URI for the process: those on the file being replaced go (their
    pooled connections would go on writing to the deleted file)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    for uri in [uri for uri in SqlAlchemyStore._engine_map if uri.startswith(f"sqlite:///{db}")]:
        SqlAlchemyStore._engine_map.pop(uri).dispose()


def _query(db: Path, sql: str) -> list[tuple]:
    # read-write, never creating: a killed writer's hot journal is rolled back first, as any open of it must
    connection = sqlite3.connect(f"{db.absolute().as_uri()}?mode=rw", uri=True, timeout=5)
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


def _tables(db: Path) -> set[str]:
    return {row[0] for row in _query(db, "SELECT name FROM sqlite_master WHERE type = 'table'")}


def _holds_data(db: Path) -> bool:
    """Any run, or any experiment but MLflow's Default (id 0); a table too damaged to tell counts as data."""
    tables = _tables(db)
    try:
        runs = "runs" in tables and _query(db, "SELECT 1 FROM runs LIMIT 1")
        experiments = "experiments" in tables and _query(
            db, "SELECT 1 FROM experiments WHERE experiment_id != 0 LIMIT 1")
    except sqlite3.DatabaseError:
        return True
    return bool(runs or experiments)


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else ""


def _mlflow_version() -> str:
    import mlflow.version
    return mlflow.version.VERSION
