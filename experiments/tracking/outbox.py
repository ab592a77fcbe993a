"""A run that could not be logged is kept on disk, whole, and uploaded later.

A job's results go to its store through ``deliver``: retried with backoff for up to
``tracking.retry_s`` (retry.py); if the store is still unreachable, the whole run (params, tags,
metrics, artifacts, final status) is written to an outbox entry instead,

    <sweep dir>/mlflow-outbox/<run id>/record.json and artifacts/     (a single run: its Hydra run dir)

and the job's summary line says so. This command uploads every entry it finds under the given
directories (default: multirun and outputs) and removes each one it uploaded:

    python -m experiments.tracking.outbox [DIR ...] [--tracking-uri URI]        (or: make sync)

An entry's run is completed where it exists (what it lacks is added: no metric is logged twice), or
created anew (in a store that never saw it) with everything. A store URI with a password is written
masked, never in clear: give ``--tracking-uri`` to sync such entries.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import contract
from . import mlflow_log as mlf
from .credentials import PASSWORD_ENV, mask
from .retry import retrying, short

OUTBOX_DIR = "mlflow-outbox"
RECORD = "record.json"
ARTIFACTS = "artifacts"
DEFAULT_DIRS = ("multirun", "outputs")


@dataclass
class RunRecord:
    """Everything one run logs, as data."""

    tracking_uri: str
    experiment: str
    run_name: str
    run_id: str | None = None
    parent_run_id: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    start_time_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    metric_time_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    status: str = "FINISHED"                 # FINISHED | FAILED | KILLED
    end_time_ms: int | None = None
    artifacts: str | None = None             # a directory whose files are the run's artifacts
    error: str = ""                          # why it waits in an outbox


def upload(record: RunRecord, uri: str | None = None) -> str:
    """Log the whole record to its run (created if the store does not have it) and close the run.
    Idempotent: params and metrics the run has already are not logged again. Returns the run id."""
    uri = uri or record.tracking_uri
    run = _existing_run(uri, record.run_id)
    if run is None:
        record.run_id = mlf.start_run(uri, record.experiment, record.run_name, record.tags, record.parent_run_id,
                                      record.start_time_ms)
        have_params, have_metrics = {}, {}
    else:
        have_params, have_metrics = run.data.params, run.data.metrics
    mlf.log(uri, record.run_id, params={k: v for k, v in record.params.items() if k not in have_params},
            metrics={k: v for k, v in record.metrics.items() if k not in have_metrics}, tags=record.tags,
            timestamp_ms=record.metric_time_ms)
    if record.artifacts and any(Path(record.artifacts).iterdir()):
        mlf.log_artifacts(uri, record.run_id, Path(record.artifacts))
    mlf.finish(uri, record.run_id, record.status == "FINISHED", status=record.status, end_time_ms=record.end_time_ms)
    return record.run_id


def _existing_run(uri: str, run_id: str | None):
    if run_id is None:
        return None
    from mlflow.exceptions import MlflowException
    try:
        return mlf.client(uri).get_run(run_id)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise


def deliver(record: RunRecord, retry_s: float, outbox_dir: Path, what: str) -> Path | None:
    """Upload the record, retrying while the store is unreachable for up to ``retry_s``; failing
    that, keep it in ``outbox_dir``. Returns the outbox entry, None when the run was logged."""
    record.end_time_ms = record.end_time_ms or int(time.time() * 1000)
    try:
        retrying(lambda: upload(record), retry_s, what)
        return None
    except Exception as exc:
        record.error = short(exc, 500)
        return write(record, outbox_dir)


def write(record: RunRecord, outbox_dir: Path) -> Path:
    """The record and a copy of its artifacts in a new outbox entry, written whole or not at all."""
    entry = Path(outbox_dir) / (record.run_id or uuid.uuid4().hex)
    partial = entry.with_name(f".{entry.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    artifacts = partial / ARTIFACTS
    if record.artifacts:
        shutil.copytree(record.artifacts, artifacts)
    else:
        artifacts.mkdir()
    on_disk = RunRecord(**{**asdict(record), "tracking_uri": mask(record.tracking_uri), "artifacts": None})
    (partial / RECORD).write_text(json.dumps(asdict(on_disk), indent=1))
    shutil.rmtree(entry, ignore_errors=True)
    partial.rename(entry)
    return entry


def read(entry: Path) -> RunRecord:
    record = RunRecord(**json.loads((entry / RECORD).read_text()))
    record.artifacts = str(entry / ARTIFACTS)
    return record


def entries(directories: list[Path]) -> list[Path]:
    found = set()
    for directory in directories:
        if directory.is_dir():
            found.update(path.parent for path in directory.rglob(f"{OUTBOX_DIR}/*/{RECORD}"))
    return sorted(found)


def sync(directories: list[Path], uri: str | None = None) -> tuple[list[str], list[str]]:
    """Upload every outbox entry under the directories; returns (uploaded, left) descriptions."""
    uploaded, left = [], []
    for entry in entries(directories):
        record = read(entry)
        target = uri or record.tracking_uri
        if uri is None and "***" in target and not os.environ.get(PASSWORD_ENV):
            left.append(f"{entry}: its store's password is not kept on disk ({target}); set {PASSWORD_ENV} "
                        f"or give --tracking-uri")
            continue
        record.tags[contract.T_OUTBOX] = str(entry.resolve())
        try:
            run_id = upload(record, target)
        except Exception as exc:
            left.append(f"{entry}: {short(exc)}")
            continue
        shutil.rmtree(entry)
        uploaded.append(f"run {run_id} ({record.run_name}, {record.status}) from {entry}")
    return uploaded, left


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.tracking.outbox",
                                     description="Upload runs kept in outboxes (mlflow-outbox/) to their tracking store.")
    parser.add_argument("dirs", nargs="*", type=Path, default=[Path(d) for d in DEFAULT_DIRS],
                        help="directories searched for outboxes (default: multirun outputs)")
    parser.add_argument("--tracking-uri", default=None, help="upload here instead of each run's own store")
    args = parser.parse_args(argv)
    uploaded, left = sync(args.dirs, args.tracking_uri)
    for line in uploaded:
        print(f"sync: uploaded {line}")
    for line in left:
        print(f"sync: NOT uploaded: {line}", file=sys.stderr)
    where = " ".join(str(d) for d in args.dirs)
    print(f"sync: {len(uploaded)} run(s) uploaded, {len(left)} left in the outboxes under {where}",
          file=sys.stderr if left else sys.stdout)
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
