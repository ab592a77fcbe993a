"""A run that could not be logged is kept on disk, whole, and uploaded later.

A job's results go to its store through ``deliver``: retried with backoff for up to
``tracking.retry_s`` (retry.py); if the store is still unreachable, the whole run (params, tags,
metrics, artifacts, final status) is written to an outbox entry instead,

    <sweep dir>/mlflow-outbox/<run id>/record.json and artifacts/     (a single run: its Hydra run dir)

and the job's summary line says so. This command uploads every entry it finds under the given
directories (default: multirun and outputs) and removes each one it uploaded:

    python -m experiments.tracking.outbox [DIR ...] [--tracking-uri URI]        (or: make sync)

Every record carries a run identity made before its run exists (``client_id``, the run's
``client_run_id`` tag): an entry's run is found by it and completed where it exists (what it lacks is
added: no param or metric is logged twice), even when an earlier sync created it and was stopped, or
created anew (in a store that never saw it) with everything. A sweep's children go under its parent
there: parents are uploaded first, and a child finds its parent by the parent's identity. A damaged
entry (record.json cut or unreadable) or a partly written one (``.<id>.partial``) is skipped with a line
naming it, the others are uploaded, and the exit code is 1. A store URI with a password is written
masked, never in clear: give ``--tracking-uri`` to sync such entries.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import contract
from . import mlflow_log as mlf
from .credentials import PASSWORD_ENV, mask
from .retry import out_of_space, retrying, short

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
    client_id: str = field(default_factory=lambda: uuid.uuid4().hex)   # the run's identity before it has an id
    parent_client_id: str | None = None      # the parent run's client_id (a sweep's job)


def start(record: RunRecord, uri: str | None = None):
    """The record's run in the store (``uri``, default its own): found by its id or its client identity,
    else created, tagged with that identity; ``record.run_id`` is set to it. Safe to retry: a creation
    whose answer was lost is found, not made twice. Returns the run (None when just created)."""
    uri = uri or record.tracking_uri
    run = _existing_run(uri, record.experiment, record.run_id, record.client_id)
    if run is not None:
        record.run_id = run.info.run_id
        return run
    parent = record.parent_run_id
    if parent is not None:      # in another store the parent has another id: found by its identity
        found = _existing_run(uri, record.experiment, parent, record.parent_client_id)
        parent = found.info.run_id if found is not None else parent
    record.run_id = mlf.start_run(uri, record.experiment, record.run_name,
                                  {**record.tags, contract.T_CLIENT_ID: record.client_id}, parent,
                                  record.start_time_ms)
    return None


def upload(record: RunRecord, uri: str | None = None) -> str:
    """Log the whole record to its run (found by ``start``, or created) and close the run. Idempotent:
    params and metrics the run has already are not logged again. Returns the run id."""
    uri = uri or record.tracking_uri
    run = start(record, uri)
    have_params, have_metrics = (run.data.params, run.data.metrics) if run is not None else ({}, {})
    mlf.log(uri, record.run_id, params={k: v for k, v in record.params.items() if k not in have_params},
            metrics={k: v for k, v in record.metrics.items() if k not in have_metrics}, tags=record.tags,
            timestamp_ms=record.metric_time_ms)
    if record.artifacts and any(Path(record.artifacts).iterdir()):
        mlf.log_artifacts(uri, record.run_id, Path(record.artifacts))
    mlf.finish(uri, record.run_id, record.status == "FINISHED", status=record.status, end_time_ms=record.end_time_ms)
    return record.run_id


def _existing_run(uri: str, experiment: str, run_id: str | None, client_id: str | None):
    """The run with this id in this store, else the run of this experiment tagged with this client identity."""
    from mlflow.entities import ViewType
    from mlflow.exceptions import MlflowException
    client = mlf.client(uri)
    if run_id is not None:
        try:
            return client.get_run(run_id)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
    found = client.get_experiment_by_name(experiment) if client_id else None
    if found is None:
        return None
    runs = client.search_runs([found.experiment_id], f"tags.`{contract.T_CLIENT_ID}` = '{client_id}'",
                              run_view_type=ViewType.ALL, max_results=1)
    return runs[0] if runs else None


def deliver(record: RunRecord, retry_s: float, outbox_dir: Path, what: str) -> Path | None:
    """Upload the record, retrying while the store is unreachable for up to ``retry_s``; failing
    that, keep it in ``outbox_dir`` (or, that disk full, in the spare outbox). Returns the outbox entry,
    None when the run was logged; raises OSError when no disk had room for it."""
    record.end_time_ms = record.end_time_ms or int(time.time() * 1000)
    try:
        retrying(lambda: upload(record), retry_s, what)
        return None
    except Exception as exc:
        record.error = short(exc, 500)
    try:
        return write(record, outbox_dir)
    except OSError as full:
        if not out_of_space(full) or Path(outbox_dir) == spare_outbox():
            raise
        return write(record, spare_outbox())


def sync_command(entry: str | Path) -> str:
    """The command that uploads an entry: `make sync` searches multirun/ and outputs/ of the repository."""
    holder = Path(entry).resolve().parent.parent      # the folder that holds mlflow-outbox/
    defaults = [(mlf.REPO_ROOT / name).resolve() for name in DEFAULT_DIRS]
    if any(holder == d or d in holder.parents for d in defaults):
        return "make sync"
    return f"make sync OUTBOX={holder}"


def spare_outbox() -> Path:
    """Where a run waits when its own outbox's disk is full: the temporary directory, often another disk
    (sync it with `python -m experiments.tracking.outbox <this directory>`)."""
    return Path(tempfile.gettempdir()) / "convbench" / OUTBOX_DIR


def write(record: RunRecord, outbox_dir: Path) -> Path:
    """The record and a copy of its artifacts in a new outbox entry, written whole or not at all (a write
    that fails, a full disk, leaves nothing behind)."""
    entry = Path(outbox_dir) / (record.run_id or record.client_id)
    partial = entry.with_name(f".{entry.name}.partial")
    try:
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
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return entry


def read(entry: Path) -> RunRecord:
    """An entry's record; raises ValueError naming what is wrong with a damaged one."""
    try:
        fields = json.loads((entry / RECORD).read_text())
        record = RunRecord(**{k: v for k, v in fields.items() if k in RunRecord.__dataclass_fields__})
    except (OSError, ValueError, TypeError) as exc:
        raise ValueError(f"damaged entry, {RECORD} unreadable ({short(exc, 120)})") from None
    record.artifacts = str(entry / ARTIFACTS)
    return record


def entries(directories: list[Path]) -> list[Path]:
    """Every entry folder of the outboxes under the directories, partly written ones included."""
    found = set()
    for directory in directories:
        if directory.is_dir():
            found.update(path for outbox in directory.rglob(OUTBOX_DIR) if outbox.is_dir()
                         for path in outbox.iterdir() if path.is_dir())
    return sorted(found)


def _parents_first(records: list[tuple[Path, RunRecord]]) -> list[tuple[Path, RunRecord]]:
    return sorted(records, key=lambda item: item[1].tags.get(contract.T_RUN_KIND) != "parent")


def sync(directories: list[Path], uri: str | None = None) -> tuple[list[str], list[str]]:
    """Upload every outbox entry under the directories; returns (uploaded, left) descriptions."""
    uploaded, left, records = [], [], []
    for entry in entries(directories):
        if entry.name.endswith(".partial"):
            left.append(f"{entry}: partly written (the process writing it was stopped): skipped; what it holds "
                        f"is incomplete, look inside before removing it")
            continue
        try:
            records.append((entry, read(entry)))
        except ValueError as exc:
            left.append(f"{entry}: {exc}: skipped")
    for entry, record in _parents_first(records):
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
