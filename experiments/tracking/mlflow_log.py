"""Writing runs to an MLflow tracking store (the names the report reads are in contract.py).

Everything goes through ``MlflowClient`` with explicit run ids, never the fluent API's
process-global active run, so that a parent run, its children and jobs in other processes
(joblib, submitit launchers) never step on each other.

Importing this module turns MLflow's telemetry and its "View run at <URL>" lines off (before MLflow is
imported) and MLflow's own retries (HTTP requests, a database's first connection) off, so that an
unreachable store fails in seconds: the harness retries itself, for ``tracking.retry_s`` in all
(retry.py), printing what it waits for.
"""
from __future__ import annotations

import fcntl
import os
import re
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
# MLflow prints "View run ... at: <server URL>" on closing a run: credentials in the URL included. Our
# summary names the run and the UI already, with the password masked.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

import logging  # noqa: E402

from experiments.tracking import contract  # noqa: E402
from experiments.tracking.credentials import mask, split_password, store_uri  # noqa: E402

# MLflow logs every SQL error of a store with its chained tracebacks before raising it as an MlflowException;
# the harness says each failure in one line (retry.py), and a full disk would print pages of SQL.
logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)

REPO_ROOT = Path(__file__).resolve().parents[2]
PARENT_RUN_ID_TAG = "mlflow.parentRunId"

# Artifacts besides the contract's (config.yaml, layers.csv, samples/).

_MAX_TAG = 5000                    # MLflow allows 8000 characters per tag value; errors are cut to this
_MAX_PARAM = 6000

_open_runs: dict[str, str] = {}    # run id -> store URI: started by this process, not finished yet


@contextmanager
def masked_log_records():
    """Within: every log record's message has its passwords masked (credentials.py; Hydra's launchers log
    each job's overrides, tracking.uri included; urllib3 logs the URLs it retries)."""
    import logging
    previous = logging.getLogRecordFactory()

    def masked(*args, **kwargs):
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:       # a malformed record: logging reports it as it would have
            return record
        shown = mask(message)
        if shown != message:
            record.msg, record.args = shown, None
        return record

    logging.setLogRecordFactory(masked)
    try:
        yield
    finally:
        logging.setLogRecordFactory(previous)


def shown_uri(uri: str) -> str:
    """A store's URI as printed and logged: resolved, its password masked."""
    return mask(resolve_uri(uri))


def resolve_uri(uri: str) -> str:
    """A relative sqlite path is taken relative to the repository root, not the working directory."""
    prefix = "sqlite:///"
    if uri.startswith(prefix):
        path = uri[len(prefix):]
        if not os.path.isabs(path):
            return prefix + str(REPO_ROOT / path)
    return uri


def ui_command(uri: str) -> str:
    """The command that opens the MLflow UI on this store: `make ui` (one worker, no job runner), which
    works in a fresh shell from the repository root, unlike a bare `mlflow` that is only on an activated PATH."""
    uri = shown_uri(uri)
    if uri.startswith(("http://", "https://")):
        return f"open {split_password(uri)[0]} in a browser"
    root = str(REPO_ROOT) + "/"
    default = "sqlite:///" + root + "mlflow.db"
    if uri == default:
        return f"make ui   (from {REPO_ROOT}), then http://127.0.0.1:5000"
    if uri.startswith("sqlite:///" + root):   # short form, relative to the repository root
        uri = "sqlite:///" + uri[len("sqlite:///" + root):]
    return f"make ui TRACKING_URI={uri}   (from {REPO_ROOT}), then http://127.0.0.1:5000"


def _artifact_location(uri: str, experiment: str) -> str | None:
    """For a sqlite store, artifacts live next to the database (not in the working directory)."""
    db = sqlite_path(uri)
    if db is None:
        return None   # a server decides (mlflow-artifacts:/ when it serves artifacts)
    return (db.parent / "mlruns" / artifact_folder(experiment)).as_uri()


def artifact_folder(experiment: str) -> str:
    """The folder of an experiment's artifacts beside a sqlite store."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", experiment) or "default"


def sqlite_path(uri: str) -> Path | None:
    uri = resolve_uri(uri)
    return Path(uri[len("sqlite:///"):].split("?", 1)[0]) if uri.startswith("sqlite:///") else None


@contextmanager
def store_creation_lock(uri: str):
    """Held while a process opens a sqlite store: the first one creates the schema, the others wait.

    MLflow creates a missing database by running its schema migrations; two processes doing that at
    once both fail (``table _alembic_tmp_... already exists``) and can leave the store broken. The
    lock is a file beside the database (``mlflow.db.lock``), taken with flock, so it is released
    when its holder exits, however it exits."""
    db = sqlite_path(uri)
    try:
        lock = None if db is None else open(f"{db}.lock", "a")
    except OSError:
        if not db.is_file():
            raise
        lock = None        # an existing store in a directory we may not write to (read it, e.g. a report)
    if lock is None:
        yield
        return
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@lru_cache(maxsize=None)
def client(uri: str):
    """One client (and one database engine) per store and process."""
    import mlflow.store.db.utils
    from mlflow.tracking import MlflowClient

    from . import sqlite_store
    # MLflow tries a database's first connection 10 times over about 100 s, whatever tracking.retry_s says
    mlflow.store.db.utils.MAX_RETRY_COUNT = 1
    db = sqlite_path(uri)
    with store_creation_lock(uri):
        if db is not None:
            sqlite_store.prepare(db)     # a new store is built aside and moved into place, whole
        try:
            opened = MlflowClient(tracking_uri=store_uri(resolve_uri(uri)))
            opened.search_experiments(max_results=1)   # opens the store now
        except Exception as exc:
            if db is None or not sqlite_store.repair(db, exc):
                raise
            opened = MlflowClient(tracking_uri=store_uri(resolve_uri(uri)))
            opened.search_experiments(max_results=1)
    return opened


def experiment_id(uri: str, name: str) -> str:
    from mlflow.exceptions import MlflowException
    c = client(uri)
    found = c.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return c.create_experiment(name, artifact_location=_artifact_location(resolve_uri(uri), name),
                                   tags={contract.EXPERIMENT_KIND_TAG: contract.EXPERIMENT_KIND})
    except MlflowException:   # created meanwhile by a job in another process
        found = c.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def flatten(config, prefix: str = "") -> dict[str, str]:
    """A nested dict as {"a.b.c": "value"}; lists stay whole (their text)."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = "null" if value is None else str(value)
    return flat


def start_run(uri: str, experiment: str, name: str, tags: dict[str, str], parent_run_id: str | None = None,
              start_time_ms: int | None = None) -> str:
    tags = {k: str(v) for k, v in tags.items()}
    if parent_run_id:
        tags[PARENT_RUN_ID_TAG] = parent_run_id
    run_id = client(uri).create_run(experiment_id(uri, experiment), start_time=start_time_ms, run_name=name,
                                    tags=tags).info.run_id
    _open_runs[run_id] = uri
    return run_id


def open_runs() -> dict[str, str]:
    """Runs this process started and has not finished (run id -> store URI)."""
    return dict(_open_runs)


def log(uri: str, run_id: str, *, params: dict | None = None, metrics: dict | None = None,
        tags: dict | None = None, timestamp_ms: int | None = None) -> None:
    """Params, metrics and tags in as few requests as MLflow's batch limits allow."""
    import time

    from mlflow.entities import Metric, Param, RunTag
    now = timestamp_ms or int(time.time() * 1000)
    entries = (
        [Param(k, str(v)[:_MAX_PARAM]) for k, v in (params or {}).items()],
        [Metric(k, float(v), now, 0) for k, v in (metrics or {}).items() if v is not None],
        [RunTag(k, str(v)[:_MAX_TAG]) for k, v in (tags or {}).items()],
    )
    c = client(uri)
    params_, metrics_, tags_ = entries
    while params_ or metrics_ or tags_:   # limits per batch: 100 params, 1000 metrics, 100 tags
        c.log_batch(run_id, metrics=metrics_[:1000], params=params_[:100], tags=tags_[:100])
        params_, metrics_, tags_ = params_[100:], metrics_[1000:], tags_[100:]


def log_artifacts(uri: str, run_id: str, directory: Path) -> None:
    client(uri).log_artifacts(run_id, str(directory))


def finish(uri: str, run_id: str, ok: bool, status: str | None = None, end_time_ms: int | None = None) -> None:
    client(uri).set_terminated(run_id, status or ("FINISHED" if ok else "FAILED"), end_time=end_time_ms)
    _open_runs.pop(run_id, None)
