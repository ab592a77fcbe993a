"""Open an MLflow tracking store read-only and fetch runs and their layers.csv artifacts.

Everything that talks to MLflow lives here, so the rest of analysis/ works on plain
pandas objects and can be tested without a store.
"""
from __future__ import annotations

import os
from pathlib import Path

from experiments.tracking import contract
from experiments.tracking.credentials import mask, store_uri
# The rule the harness wrote with: a relative sqlite path means <repo>/path, from any directory.
from experiments.tracking.mlflow_log import REPO_ROOT, resolve_uri  # noqa: F401 (REPO_ROOT re-exported)
from experiments.tracking.uri import TrackingUriError, check_tracking_uri

# Make the commands that make runs easy to find from an error message.
MAKE_RUNS_HINT = (
    "Make some runs first, e.g. `make run ARGS=\"-m algo=pytorch,im2col,kn2row,scalar\"` "
    "(or `python run.py -m algo=pytorch,im2col,kn2row,scalar`), then rerun `make report`."
)


class ReportError(Exception):
    """A condition the user must fix; the CLI prints it without a traceback."""

    exit_code = 1


class NoRunsError(ReportError):
    exit_code = 3


class StoreUnreachableError(ReportError):
    exit_code = 2


class BadStoreError(ReportError):
    """A tracking URI no store can be read from, or a file that is not an MLflow store."""

    exit_code = 2


def _check_mlflow_sqlite(db: Path) -> None:
    """Raise BadStoreError unless ``db`` is an SQLite file holding MLflow's tables (opened read-only)."""
    import sqlite3
    try:
        connection = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
        try:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            connection.close()
    except sqlite3.Error as exc:
        raise BadStoreError(f"{db} is not a readable SQLite database ({exc}): not an MLflow store") from None
    if not {"experiments", "runs", "alembic_version"} <= tables:
        raise BadStoreError(f"{db} is an SQLite database but not an MLflow store (tables: "
                            f"{', '.join(sorted(tables)) or 'none'}); check --tracking-uri / TRACKING_URI")


def _quiet_mlflow_environment() -> None:
    # Never touch the network for telemetry; an unreachable server must fail within seconds,
    # not after MLflow's default 7 retries with exponential back-off (minutes).
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    # One progress bar per downloaded layers.csv would bury the report's own messages.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


SQLITE_PREFIX = "sqlite:///"


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a sqlite:/// URI, else None."""
    if not tracking_uri.startswith(SQLITE_PREFIX):
        return None
    return Path(tracking_uri[len(SQLITE_PREFIX):].split("?", 1)[0])


class Store:
    """A read-only view of one tracking store."""

    def __init__(self, tracking_uri: str):
        _quiet_mlflow_environment()
        try:
            check_tracking_uri(tracking_uri, key="--tracking-uri")
        except TrackingUriError as exc:
            raise BadStoreError(str(exc)) from None
        self.tracking_uri = tracking_uri = resolve_uri(tracking_uri)
        db = sqlite_path(tracking_uri)
        # Opening a missing sqlite file would create an empty store as a side effect.
        if db is not None and not db.is_file():
            raise NoRunsError(f"No MLflow store at {db} ({mask(tracking_uri)}). {MAKE_RUNS_HINT}")
        if db is not None:   # MLflow would run its schema migrations on any file: look first, read-only
            _check_mlflow_sqlite(db)
        from mlflow.tracking import MlflowClient

        try:
            self.client = MlflowClient(tracking_uri=store_uri(tracking_uri))
            self.client.search_experiments(max_results=1)
        except Exception as exc:  # connection refused, DNS, timeout, bad database...
            raise StoreUnreachableError(
                f"Cannot reach the MLflow tracking store at {mask(tracking_uri)}: "
                f"{type(exc).__name__}: {mask(_first_line(exc))}. "
                "Check TRACKING_URI, or start the server (e.g. `mlflow server --workers 1`)."
            ) from exc

    def experiments(self, name: str | None = None) -> list:
        """The experiment called `name`, or every active experiment when name is None."""
        if name is None:
            return list(self.client.search_experiments())
        experiment = self.client.get_experiment_by_name(name)
        if experiment is None:
            known = sorted(e.name for e in self.client.search_experiments())
            raise NoRunsError(
                f"No experiment named {name!r} in {mask(self.tracking_uri)}; "
                f"experiments there: {known or 'none'}. {MAKE_RUNS_HINT}"
            )
        return [experiment]

    def runs(self, experiment_ids: list[str]) -> list:
        """Every active run of the experiments, all pages."""
        if not experiment_ids:
            return []
        runs, token = [], None
        while True:
            page = self.client.search_runs(experiment_ids, max_results=1000, page_token=token)
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def download_layers(self, run_id: str, destination: Path) -> Path | None:
        """Download the run's layers.csv; None when the run has none (older harness)."""
        path = self._download(run_id, contract.A_LAYERS, destination)
        return path if path is not None and path.is_file() else None

    def download_samples(self, run_id: str, destination: Path) -> Path | None:
        """Download the run's raw timing samples (a folder of CSVs); None when it has none."""
        path = self._download(run_id, contract.A_SAMPLES_DIR, destination)
        return path if path is not None and path.is_dir() else None

    def _download(self, run_id: str, artifact: str, destination: Path) -> Path | None:
        import mlflow.artifacts

        try:
            return Path(mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=artifact, dst_path=str(destination),
                tracking_uri=store_uri(self.tracking_uri)))
        except Exception:
            return None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""
