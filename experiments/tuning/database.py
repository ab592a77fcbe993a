"""The tuning database: each conv layer's fastest candidate, remembered instead of re-measured.

One SQLite file (``tuning.db``) that concurrent jobs share: every job of a sweep (joblib
workers, submitit processes) reads and writes it, each write one short transaction behind a
busy timeout, so that no write is lost and no reader sees half an entry. On a local disk the
file runs in WAL mode (readers never wait for the writer); on a network file system (NFS,
Lustre, GPFS, CIFS: WAL needs shared memory between the processes, which such file systems do
not give across machines) it uses the rollback journal, whose file locks they do support.

An entry's key is everything that changes what the measurement means:

    device       the device the layer ran on (GPU model; for CPU runtimes the CPU model and
                 the threads the job computes with)
    runtime      backend and runtime kind: gpu/cuda, gpu/hip, emulator/emulated, numpy/cpu
    kernel_hash  experiments.runtime.sources.kernel_source_hash() for runtimes that run the
                 kernels of hip/ (any edit of a kernel source changes it, so entries measured
                 with older kernels are never used again); "none" for the numpy runtime
    shape        the layer's geometry without the batch (channels, input size, kernel, stride,
                 padding, dilation, groups, bias)
    dtype        fp32, ...
    batch        the batch size
    candidates   the candidate set the choice was made from (a choice among fewer candidates
                 does not answer for more)

The value: the choice and the runner-up with their medians, and every candidate's result
(median, samples, the round it was dropped in, or why it failed), as JSON.

A file convbench did not create is never written: a new database is built beside its path and
linked into place whole (so no process ever sees half a schema), and an existing file is opened
read-only first and used only when it carries convbench's application id (or, from before the id,
exactly its table) and schema version. Anything else, another program's database, a corrupt file,
an older schema, is refused with its path named. ``read_only=True`` (the listing, snapshots)
opens with SQLite's ``mode=ro`` and changes nothing.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

SCHEMA_VERSION = 1
APPLICATION_ID = 0x43564254     # "CVBT" in the SQLite header: this file is a convbench tuning database
BUSY_TIMEOUT_S = 120.0          # a writer waits this long for the lock before giving up
NETWORK_FILESYSTEMS = frozenset({"nfs", "nfs4", "lustre", "gpfs", "cifs", "smb3", "smbfs", "beegfs",
                                 "fuse.sshfs", "afs", "ceph", "fuse.ceph", "panfs", "fuse.glusterfs"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tuning (
    device      TEXT NOT NULL,
    runtime     TEXT NOT NULL,
    kernel_hash TEXT NOT NULL,
    shape       TEXT NOT NULL,
    dtype       TEXT NOT NULL,
    batch       INTEGER NOT NULL,
    candidates  TEXT NOT NULL,
    choice      TEXT NOT NULL,
    choice_s    REAL NOT NULL,
    runner_up   TEXT,
    runner_up_s REAL,
    results     TEXT NOT NULL,
    created     TEXT NOT NULL,
    host        TEXT NOT NULL,
    PRIMARY KEY (device, runtime, kernel_hash, shape, dtype, batch, candidates)
)
"""


class ForeignDatabaseError(ValueError):
    """A file at the tuning database's path that convbench did not create, or cannot read."""


_COLUMNS = ("device", "runtime", "kernel_hash", "shape", "dtype", "batch", "candidates", "choice", "choice_s",
            "runner_up", "runner_up_s", "results", "created", "host")


def check_ours(path: Path) -> None:
    """Raise ForeignDatabaseError unless ``path`` is a tuning database of this convbench (read-only look)."""
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise ForeignDatabaseError(f"tuning.db={str(path)!r} cannot be opened ({exc}); point tuning.db at a "
                                   f"new file") from None
    try:
        application_id, version = (db.execute(f"PRAGMA {p}").fetchone()[0] for p in ("application_id",
                                                                                        "user_version"))
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        columns = tuple(row[1] for row in db.execute("PRAGMA table_info(tuning)"))
    except sqlite3.DatabaseError as exc:   # not a database, or a damaged one
        raise ForeignDatabaseError(f"tuning.db={str(path)!r} is not a readable SQLite database ({exc}); "
                                   f"convbench leaves it as it is: point tuning.db at a new file") from None
    finally:
        db.close()
    legacy = application_id == 0 and tables == ["tuning"] and columns == _COLUMNS   # before the id existed
    if application_id != APPLICATION_ID and not legacy:
        raise ForeignDatabaseError(f"tuning.db={str(path)!r} is not a convbench tuning database (tables: "
                                   f"{', '.join(tables) or 'none'}); convbench does not write to files it did "
                                   f"not create: point tuning.db at a new file")
    if version != SCHEMA_VERSION:
        raise ForeignDatabaseError(f"tuning.db={str(path)!r}: tuning database schema version {version}, this "
                                   f"convbench reads version {SCHEMA_VERSION}; point tuning.db at a new file")


def _create(path: Path) -> None:
    """Build the empty database beside ``path`` and link it into place; a concurrent creator's file wins."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
    try:
        db = sqlite3.connect(str(tmp), isolation_level=None)
        db.execute(_SCHEMA)
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.close()
        os.link(tmp, path)    # fails when the path exists: a file there is never replaced
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


@dataclass(frozen=True)
class TuningKey:
    device: str
    runtime: str
    kernel_hash: str
    shape: str
    dtype: str
    batch: int
    candidates: str

    def as_tuple(self) -> tuple:
        return (self.device, self.runtime, self.kernel_hash, self.shape, self.dtype, self.batch, self.candidates)


@dataclass(frozen=True)
class TuningEntry:
    """A layer's tuning result. ``results`` maps each candidate label to what its measurement
    found: ``median_s``, ``n`` (timed samples), ``round`` (the last round it ran in), ``status``
    (chosen; dropped; kept: still running when the budget ran out; failed) and for a failed
    candidate ``error``. The runner-up is the fastest other candidate by its median, whatever its
    status."""

    choice: str
    choice_s: float
    runner_up: str | None
    runner_up_s: float | None
    results: dict = field(default_factory=dict)
    created: str = ""
    host: str = ""

    def medians(self) -> dict[str, float]:
        """Every candidate that was measured, by label: its median in seconds."""
        return {label: r["median_s"] for label, r in self.results.items() if r.get("median_s") is not None}


def on_network_filesystem(path: str | Path, mounts: str | Path = "/proc/mounts") -> bool:
    """True when ``path`` lies on a network file system (by the longest matching mount point)."""
    target = os.path.realpath(path)
    best, best_type = "", ""
    try:
        with open(mounts) as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                point = parts[1].replace("\\040", " ")
                inside = target == point or target.startswith(point.rstrip("/") + "/")
                if inside and len(point) > len(best):
                    best, best_type = point, parts[2]
    except OSError:
        return False
    return best_type in NETWORK_FILESYSTEMS


class TuningDatabase:
    """``TuningDatabase(path)``: open a tuning file, creating it (and its directory) when there is none.

    Safe to use from many processes at once; one connection per instance, used by one thread.
    ``read_only``: open an existing file without changing it (SQLite's mode=ro).
    """

    def __init__(self, path: str | Path, journal_mode: str = "auto", timeout_s: float = BUSY_TIMEOUT_S,
                 read_only: bool = False):
        self.path = Path(path)
        if journal_mode == "auto":
            journal_mode = "delete" if on_network_filesystem(self.path.parent) else "wal"
        if journal_mode not in ("wal", "delete"):
            raise ValueError(f"journal_mode={journal_mode!r}; valid: auto, wal, delete")
        self.journal_mode = journal_mode
        if not read_only and not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _create(self.path)
        check_ours(self.path)
        # autocommit mode (isolation_level None): transactions are the explicit BEGINs below
        target = f"{self.path.resolve().as_uri()}?mode=ro" if read_only else str(self.path)
        self._db = sqlite3.connect(target, uri=read_only, timeout=timeout_s, isolation_level=None)
        self._db.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
        if not read_only:
            self._db.execute(f"PRAGMA journal_mode = {journal_mode}")   # persistent for wal; per connection else
            self._db.execute("PRAGMA synchronous = NORMAL" if journal_mode == "wal" else "PRAGMA synchronous = FULL")

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        # BEGIN IMMEDIATE takes the write lock at once (waiting up to the busy timeout), so a
        # transaction never fails half-way on a lock held by another process.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "TuningDatabase":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def get(self, key: TuningKey) -> TuningEntry | None:
        row = self._db.execute(
            "SELECT choice, choice_s, runner_up, runner_up_s, results, created, host FROM tuning WHERE "
            "device=? AND runtime=? AND kernel_hash=? AND shape=? AND dtype=? AND batch=? AND candidates=?",
            key.as_tuple()).fetchone()
        if row is None:
            return None
        choice, choice_s, runner_up, runner_up_s, results, created, host = row
        return TuningEntry(choice, choice_s, runner_up, runner_up_s, json.loads(results), created, host)

    def put(self, key: TuningKey, entry: TuningEntry) -> None:
        """Insert or replace the entry of ``key`` (a concurrent job that measured the same layer
        replaces it with its own equally valid result: one row per key, never a mix)."""
        created = entry.created or time.strftime("%Y-%m-%dT%H:%M:%S%z")
        host = entry.host or os.uname().nodename
        with self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO tuning VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*key.as_tuple(), entry.choice, entry.choice_s, entry.runner_up, entry.runner_up_s,
                 json.dumps(entry.results, sort_keys=True), created, host))

    def entries(self) -> list[tuple[TuningKey, TuningEntry]]:
        rows = self._db.execute(
            "SELECT device, runtime, kernel_hash, shape, dtype, batch, candidates, choice, choice_s, runner_up, "
            "runner_up_s, results, created, host FROM tuning ORDER BY device, runtime, shape, batch").fetchall()
        return [(TuningKey(*row[:7]), TuningEntry(row[7], row[8], row[9], row[10], json.loads(row[11]), row[12],
                                                  row[13])) for row in rows]

    def delete_stale(self, runtime: str, kernel_hash: str) -> int:
        """Remove the entries of ``runtime`` measured with other kernel sources; returns how many."""
        with self._transaction():
            cursor = self._db.execute("DELETE FROM tuning WHERE runtime=? AND kernel_hash<>?", (runtime, kernel_hash))
        return cursor.rowcount

    def integrity_check(self) -> str:
        return self._db.execute("PRAGMA integrity_check").fetchone()[0]

    def snapshot(self, destination: str | Path) -> Path:
        """A consistent copy of the whole database (SQLite's online backup), e.g. for an artifact."""
        destination = Path(destination)
        target = sqlite3.connect(str(destination))
        try:
            self._db.backup(target)
        finally:
            target.close()
        return destination

