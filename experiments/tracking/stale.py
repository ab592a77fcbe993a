"""Runs left RUNNING by processes that are gone: found and closed as KILLED.

Every run is tagged with the host, process id and process start time of the process that writes it
(``process_tags``). A RUNNING run of this host whose process no longer exists (or whose pid now
belongs to a younger process) can never finish: ``close_dead_local_runs`` closes it, and is called
at the start of every sweep and by the report. Runs of other hosts cannot be checked from here;
this command closes those still RUNNING after a given age:

    python -m experiments.tracking.stale --older-than 6h [--tracking-uri URI] [--experiment NAME] [--dry-run]

It closes this host's dead runs as well; a run whose process is alive is never touched, whatever its age.
"""
from __future__ import annotations

import argparse
import re
import socket
import sys
import time
from dataclasses import dataclass

import psutil

from . import contract
from . import mlflow_log as mlf
from .credentials import mask

_RUNNING = "attributes.status = 'RUNNING'"


def process_tags() -> dict[str, str]:
    """Who writes this run: host, pid and the process's start time (a pid alone may be reused)."""
    return {contract.T_HOST: socket.gethostname(), contract.T_PID: str(psutil.Process().pid),
            contract.T_PROCESS_START: f"{psutil.Process().create_time():.3f}"}


def process_alive(tags: dict[str, str]) -> bool | None:
    """Whether the process that wrote a run of this host still runs; None when the run cannot tell
    (no process tags, or another host)."""
    if tags.get(contract.T_HOST) != socket.gethostname() or not tags.get(contract.T_PID, "").isdigit():
        return None
    try:
        process = psutil.Process(int(tags[contract.T_PID]))
        if process.status() == psutil.STATUS_ZOMBIE:     # ended, not yet reaped by its parent
            return False
        started = process.create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    recorded = tags.get(contract.T_PROCESS_START)
    return recorded is None or abs(float(recorded) - started) < 1.0


@dataclass(frozen=True)
class Closed:
    run_id: str
    name: str
    reason: str


def close_run(uri: str, run_id: str, reason: str, status: str = "KILLED") -> None:
    """Close one run with why: the status tag says failed, the error tag the reason."""
    mlf.log(uri, run_id, tags={contract.T_STATUS: "failed", contract.T_ERROR: reason})
    mlf.finish(uri, run_id, False, status=status)


def close_own_runs(reason: str, keep: set[str | None] = frozenset(), status: str = "KILLED") -> list[str]:
    """Close as KILLED every run this process started and has not finished (a signal stopped it), but
    those in ``keep``; a store that cannot be reached leaves them to the next sweep's
    ``close_dead_local_runs``."""
    closed = []
    for run_id, uri in mlf.open_runs().items():
        if run_id in keep:
            continue
        try:
            close_run(uri, run_id, reason, status)
            closed.append(run_id)
        except Exception as exc:
            print(f"convbench: could not close run {run_id} as KILLED: {type(exc).__name__}: "
                  f"{mask(str(exc))[:300]}", file=sys.stderr)
    return closed


def _running(uri: str, experiment_ids: list[str], extra_filter: str = "") -> list:
    query = _RUNNING + (f" and {extra_filter}" if extra_filter else "")
    return mlf.client(uri).search_runs(experiment_ids, query, max_results=50000) if experiment_ids else []


def experiment_ids(uri: str, names: list[str] | None = None) -> list[str]:
    client = mlf.client(uri)
    if names is None:
        return [e.experiment_id for e in client.search_experiments()]
    found = [client.get_experiment_by_name(name) for name in names]
    return [e.experiment_id for e in found if e is not None]


def close_dead_local_runs(uri: str, experiments: list[str] | None = None, *, extra_filter: str = "",
                          reason: str | None = None, status: str = "KILLED", dry_run: bool = False,
                          wait_s: float = 0.0) -> list[Closed]:
    """Close this host's RUNNING runs (of these experiments; all when None) whose process is gone;
    with ``wait_s``, first wait up to that long for their processes to end (a stopped sweep's jobs)."""
    ids = experiment_ids(uri, experiments)
    deadline = time.monotonic() + wait_s
    while any(process_alive(run.data.tags) for run in _running(uri, ids, extra_filter)) and time.monotonic() < deadline:
        time.sleep(0.5)
    closed = []
    for run in _running(uri, ids, extra_filter):
        tags = run.data.tags
        if process_alive(tags) is not False:
            continue
        why = reason or (f"its process {tags[contract.T_PID]} on {tags[contract.T_HOST]} ended without closing "
                         f"it (killed, crashed, or stopped by a signal); closed by a later convbench command")
        if not dry_run:
            close_run(uri, run.info.run_id, why, status)
        closed.append(Closed(run.info.run_id, run.info.run_name, why))
    return closed


def close_old_runs(uri: str, older_than_s: float, experiments: list[str] | None = None,
                   dry_run: bool = False) -> list[Closed]:
    """Close RUNNING runs started over ``older_than_s`` ago that this host cannot check (other hosts,
    or no process tags)."""
    closed, now_ms = [], time.time() * 1000
    for run in _running(uri, experiment_ids(uri, experiments)):
        tags = run.data.tags
        age_s = (now_ms - run.info.start_time) / 1000
        if process_alive(tags) is not None or age_s < older_than_s:
            continue
        host = tags.get(contract.T_HOST, "an unknown host")
        why = (f"still RUNNING {age_s / 3600:.1f} h after its start on {host} (pid {tags.get(contract.T_PID, '?')}); "
               f"closed as stale by `python -m experiments.tracking.stale --older-than {_duration_text(older_than_s)}`")
        if not dry_run:
            close_run(uri, run.info.run_id, why)
        closed.append(Closed(run.info.run_id, run.info.run_name, why))
    return closed


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """'90s', '30m', '6h', '2d' (or plain seconds) -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration: give a number with s, m, h or d, e.g. 6h")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def _duration_text(seconds: float) -> str:
    for unit in ("d", "h", "m"):
        if seconds >= _UNITS[unit] and seconds % _UNITS[unit] == 0:
            return f"{int(seconds // _UNITS[unit])}{unit}"
    return f"{seconds:g}s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.tracking.stale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--older-than", type=parse_duration, required=True,
                        help="close runs of other hosts still RUNNING this long after their start, e.g. 6h")
    parser.add_argument("--tracking-uri", default=contract.DEFAULT_TRACKING_URI)
    parser.add_argument("--experiment", action="append", help="only this experiment (repeatable; default: all)")
    parser.add_argument("--dry-run", action="store_true", help="list what would be closed, close nothing")
    args = parser.parse_args(argv)
    try:
        found = (close_dead_local_runs(args.tracking_uri, args.experiment, dry_run=args.dry_run)
                 + close_old_runs(args.tracking_uri, args.older_than, args.experiment, dry_run=args.dry_run))
    except Exception as exc:
        print(f"stale: cannot close runs in {mlf.shown_uri(args.tracking_uri)}: {type(exc).__name__}: "
              f"{mask(str(exc)).splitlines()[0] if str(exc) else ''}", file=sys.stderr)
        return 2
    verb = "would close" if args.dry_run else "closed"
    for run in found:
        print(f"{verb} {run.run_id} ({run.name}) as KILLED: {run.reason}")
    print(f"stale: {verb} {len(found)} RUNNING run(s) in {mlf.shown_uri(args.tracking_uri)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
