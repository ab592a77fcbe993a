"""Writing runs to an MLflow tracking store (the names the report reads are in contract.py).

Everything goes through ``MlflowClient`` with explicit run ids, never the fluent API's
process-global active run, so that a parent run, its children and jobs in other processes
(joblib, submitit launchers) never step on each other.

Importing this module turns MLflow's telemetry off (before MLflow is imported) and bounds the
HTTP retries, so that an unreachable server fails in seconds rather than minutes.
"""
from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")

REPO_ROOT = Path(__file__).resolve().parents[2]
PARENT_RUN_ID_TAG = "mlflow.parentRunId"

# Artifacts besides the contract's (config.yaml, layers.csv, samples/).

_MAX_TAG = 5000                    # MLflow allows 8000 characters per tag value; errors are cut to this
_MAX_PARAM = 6000


def resolve_uri(uri: str) -> str:
    """A relative sqlite path is taken relative to the repository root, not the working directory."""
    prefix = "sqlite:///"
    if uri.startswith(prefix):
        path = uri[len(prefix):]
        if not os.path.isabs(path):
            return prefix + str(REPO_ROOT / path)
    return uri


def ui_command(uri: str) -> str:
    """The command that opens the MLflow UI on this store."""
    uri = resolve_uri(uri)
    if uri.startswith(("http://", "https://")):
        return f"open {uri} in a browser"
    root = str(REPO_ROOT) + "/"
    if uri.startswith("sqlite:///" + root):   # short form, run from the repository root
        return f"mlflow ui --backend-store-uri sqlite:///{uri[len('sqlite:///' + root):]}   (from {REPO_ROOT})"
    return f"mlflow ui --backend-store-uri {uri}"


def _artifact_location(uri: str, experiment: str) -> str | None:
    """For a sqlite store, artifacts live next to the database (not in the working directory)."""
    if not uri.startswith("sqlite:///"):
        return None   # a server decides (mlflow-artifacts:/ when it serves artifacts)
    db = Path(uri[len("sqlite:///"):].split("?", 1)[0])
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", experiment) or "default"
    return (db.parent / "mlruns" / safe).as_uri()


@lru_cache(maxsize=None)
def client(uri: str):
    """One client (and one database engine) per store and process."""
    from mlflow.tracking import MlflowClient
    return MlflowClient(tracking_uri=resolve_uri(uri))


def experiment_id(uri: str, name: str) -> str:
    from mlflow.exceptions import MlflowException
    c = client(uri)
    found = c.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return c.create_experiment(name, artifact_location=_artifact_location(resolve_uri(uri), name))
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


def start_run(uri: str, experiment: str, name: str, tags: dict[str, str], parent_run_id: str | None = None) -> str:
    tags = {k: str(v) for k, v in tags.items()}
    if parent_run_id:
        tags[PARENT_RUN_ID_TAG] = parent_run_id
    return client(uri).create_run(experiment_id(uri, experiment), run_name=name, tags=tags).info.run_id


def log(uri: str, run_id: str, *, params: dict | None = None, metrics: dict | None = None,
        tags: dict | None = None) -> None:
    """Params, metrics and tags in as few requests as MLflow's batch limits allow."""
    import time

    from mlflow.entities import Metric, Param, RunTag
    now = int(time.time() * 1000)
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


def finish(uri: str, run_id: str, ok: bool, status: str | None = None) -> None:
    client(uri).set_terminated(run_id, status or ("FINISHED" if ok else "FAILED"))
