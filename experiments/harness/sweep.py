"""One MLflow parent run per multirun, created and closed by a Hydra callback.

``on_multirun_start`` (in the process that runs ``python run.py -m ...``):

1. expands the sweep as Hydra's basic sweeper will (same parser, same order, so job number i
   here is ``hydra.job.num`` i there) and checks every job's config: any bad input (unknown
   model, unsupported tile, gpu without a GPU, blocked GEMM on numpy...) stops the sweep before
   any work, with every bad job listed;
2. marks jobs that would measure exactly what an earlier job measures (gemm and tile do not
   apply to pytorch and scalar, the tile not to the vendor GEMM) as duplicates to skip;
3. closes the RUNNING runs of this host whose process is gone (experiments/tracking/stale.py),
   creates the parent run and writes the sweep state,
   ``<sweep dir>/.convbench/<sweep id>/sweep.json`` (parent run id, plan). The sweep id reaches
   every job as $CONVBENCH_SWEEP_ID through ``hydra.job.env_set`` (Hydra sets it around the task
   function whatever the launcher: this process, joblib workers, submitit on other nodes), so a
   sweep rerun into the same directory, or two sweeps sharing one, each find their own state.

Each job writes ``.convbench/<sweep id>/results/<num>.json``. ``on_multirun_end`` reads them, prints
the one-line summary, closes the parent (FINISHED when every job succeeded, else FAILED) and keeps
the summary for run.py's exit code. A sweep interrupted before its end (SIGTERM, Ctrl-C, a crash in
Hydra) is closed by ``abort_open_sweeps()``, which run.py calls on the way out.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from experiments.tracking import contract
from experiments.tracking import mlflow_log as mlf
from experiments.tracking.credentials import mask
from experiments.tracking import outbox, stale
from experiments.tracking.retry import DEFAULT_RETRY_S, retrying, short

from . import naming
from . import summary as comparison
from .errors import ConfigError
from .estimate import announcement
from .password import lift_password
from .validate import check_launcher, hydra_error_message

SWEEP_ID_ENV = "CONVBENCH_SWEEP_ID"
STATE_DIR = ".convbench"
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
EXIT_CONFIG_ERROR = 2

_open_sweeps: dict[str, "SweepState"] = {}    # parent run id -> state, until closed
_last_summary: "SweepSummary | None" = None


@dataclass
class SweepState:
    path: str
    sweep_id: str
    parent_run_id: str | None
    tracking_uri: str
    experiment: str
    jobs: list[dict] = field(default_factory=list)   # per job: overrides, name, duplicate_of
    total: int | None = None
    retry_s: float = DEFAULT_RETRY_S
    parent_client_id: str | None = None
    parent: dict = field(default_factory=dict)       # the parent's RunRecord as opened: its closing re-sends it

    @staticmethod
    def location(sweep_dir: str | Path, sweep_id: str) -> Path:
        return (Path(sweep_dir) / STATE_DIR / sweep_id / "sweep.json").absolute()

    @property
    def sweep_dir(self) -> Path:
        return Path(self.path).parents[2]

    @property
    def results_dir(self) -> Path:
        return Path(self.path).parent / "results"

    def save(self) -> None:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        Path(self.path).write_text(mask(json.dumps(asdict(self), indent=1)))

    @classmethod
    def load(cls, path: str | Path) -> "SweepState":
        return cls(**json.loads(Path(path).read_text()))

    @classmethod
    def find(cls, sweep_dir: str | None, sweep_id: str | None) -> "SweepState | None":
        """The state of sweep ``sweep_id`` in the job's sweep dir; None when there is none."""
        if not sweep_dir or not sweep_id:
            return None
        path = cls.location(sweep_dir, sweep_id)
        return cls.load(path) if path.is_file() else None

    def write_result(self, num: int, result: dict) -> None:
        self.results_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.results_dir / f".{num}.json.tmp"
        tmp.write_text(mask(json.dumps(result)))
        tmp.replace(self.results_dir / f"{num}.json")

    def results(self) -> list[dict]:
        if not self.results_dir.is_dir():
            return []
        found = [json.loads(p.read_text()) for p in self.results_dir.glob("*.json")]
        return sorted(found, key=lambda r: r.get("num", 0))


def current_sweep_id() -> str | None:
    """The sweep this process's job belongs to ($CONVBENCH_SWEEP_ID, set by Hydra from hydra.job.env_set)."""
    return os.environ.get(SWEEP_ID_ENV)


@dataclass
class SweepSummary:
    sweep_id: str
    total: int
    ok: int
    failed: list[dict]
    skipped: int
    missing: int
    in_outbox: list[str] = field(default_factory=list)   # outbox entries of jobs whose store was unreachable
    not_started: int = 0     # jobs a stopped sweep never started (not failures: nothing ran)

    @property
    def all_ok(self) -> bool:
        """Every job measured (its run in the store, or in an outbox until `make sync`)."""
        return not self.failed and not self.missing and not self.not_started

    @property
    def success(self) -> bool:
        """Every job measured and logged (run.py's exit code 0)."""
        return self.all_ok and not self.in_outbox

    def line(self) -> str:
        ran = self.total - self.skipped
        head = f"convbench sweep {self.sweep_id}: {self.ok} of {ran} jobs ok"
        if self.skipped:
            head += f" ({self.skipped} duplicates skipped)"
        if self.in_outbox:
            head += (f"; {len(self.in_outbox)} run(s) NOT LOGGED, kept in the outbox "
                     f"{Path(self.in_outbox[0]).parent} (tracking store unreachable): upload with "
                     f"`{outbox.sync_command(self.in_outbox[0])}`")
        if self.all_ok:
            return head
        if self.not_started:
            head += f"; {self.not_started} not started"
        if not self.failed and not self.missing:
            return head
        what = "; ".join(f"{f.get('name') or '#' + str(f.get('num'))}: {_first_line(f.get('error', ''))}"
                         for f in self.failed)
        if self.missing:
            what += ("; " if what else "") + f"{self.missing} jobs left no result"
        return f"{head}; FAILED {len(self.failed) + self.missing}: {what}"


def last_summary() -> SweepSummary | None:
    return _last_summary


def reset_summary() -> None:
    global _last_summary
    _last_summary = None


def _first_line(text: str, limit: int = 160) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= limit else first[: limit - 3] + "..."


# --- planning ------------------------------------------------------------------------------

def plan_overrides(config: DictConfig) -> list[list[str]] | None:
    """The override list of every job, in launch order; None for sweepers other than the basic one."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    sweeper = config.hydra.sweeper
    if sweeper.get("_target_") != BASIC_SWEEPER:
        return None
    params = sweeper.get("params") or {}
    arguments = [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)
    loader = GlobalHydra.instance().config_loader()
    overrides = OverridesParser.create(config_loader=loader).parse_overrides(arguments)
    return [list(job) for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


def check_jobs(config: DictConfig, job_overrides: list[list[str]]) -> list[dict]:
    """Compose and check every job; raises ConfigError listing every bad one. Returns the plan."""
    from hydra.core.global_hydra import GlobalHydra

    from .config import job_spec
    from .memory import check_job

    loader = GlobalHydra.instance().config_loader()
    plan, errors, seen = [], {}, {}
    for num, overrides in enumerate(job_overrides):
        job_cfg = loader.load_sweep_config(config, list(overrides))
        try:
            spec = job_spec(job_cfg)
            check_job(spec)
        except ConfigError as exc:
            errors.setdefault(str(exc), []).append(f"#{num} {' '.join(overrides) or '(defaults)'}")
            continue
        identity = spec.identity()
        plan.append({"overrides": list(overrides), "name": spec.name, "duplicate_of": seen.get(identity),
                     "fields": naming.fields(spec)})
        seen.setdefault(identity, num)
    if errors:
        bad = sum(len(jobs) for jobs in errors.values())
        lines = [f"  {jobs[0]}" + (f" (and {len(jobs) - 1} more jobs)" if len(jobs) > 1 else "") + f": {message}"
                 for message, jobs in errors.items()]
        raise ConfigError(f"{bad} of {len(job_overrides)} jobs of this sweep have invalid configs; "
                          f"nothing was run:\n" + "\n".join(lines))
    for job, run_name in zip(plan, naming.child_names([job["fields"] for job in plan])):
        job["run_name"] = run_name
    return plan


# --- the callback --------------------------------------------------------------------------

class SweepCallback(Callback):
    """Registered in conf/config.yaml under hydra.callbacks. Both hooks run before Hydra writes the config
    to disk: they take a password out of it first (password.py)."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        _refuse_here(lift_password, config)

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self._state = None
        _refuse_here(lift_password, config)
        self._state = _refuse_here(self._start, config)

    def _start(self, config: DictConfig) -> "SweepState":
        reset_summary()
        started = time.perf_counter()
        check_launcher(config)
        job_overrides = plan_overrides(config)
        plan = check_jobs(config, job_overrides) if job_overrides is not None else []
        sweep_dir = Path(str(config.hydra.sweep.dir))
        sweep_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        uri, experiment = str(config.tracking.uri), str(config.tracking.experiment)
        state = SweepState(str(SweepState.location(sweep_dir, sweep_id)), sweep_id, None, uri, experiment,
                           plan, len(plan) if job_overrides is not None else None,
                           float(config.tracking.get("retry_s", DEFAULT_RETRY_S)))
        from experiments.tracking.provenance import provenance_tags
        name = naming.parent_name([job["fields"] for job in plan], job_overrides or []) or f"sweep {sweep_id}"
        parent = outbox.RunRecord(uri, experiment, name, tags={
            contract.T_RUN_KIND: "parent", contract.T_SWEEP_ID: sweep_id, contract.T_STATUS: "running",
            **provenance_tags()}, params={
            contract.P_SWEEP_OVERRIDES: mask(" ".join(config.hydra.overrides.task)) or "(none)",
            contract.P_SWEEP_JOBS: str(state.total) if state.total is not None else "unknown",
            contract.P_SWEEP_DIR: str(sweep_dir.resolve())})
        try:   # a store briefly down, locked or restarting is waited for, as a single run's is (retry.py)
            stale_runs = retrying(lambda: stale.close_dead_local_runs(uri, [experiment]), state.retry_s,
                                  "closing the runs left RUNNING by dead processes")
            retrying(lambda: outbox.start(parent), state.retry_s, "creating the sweep's parent run")
            retrying(lambda: mlf.log(uri, parent.run_id, params=parent.params,
                                     metrics={contract.STALE_RUNS_CLOSED: len(stale_runs)}),
                     state.retry_s, "logging the sweep's parameters")
        except Exception as exc:
            raise ConfigError(f"cannot create the sweep's parent run in the tracking store {mlf.shown_uri(uri)}"
                              f"{f' (retried for {state.retry_s:g} s, tracking.retry_s)' if state.retry_s else ''}: "
                              f"{short(exc, 400)}") from None
        state.parent_run_id, state.parent_client_id = parent.run_id, parent.client_id
        state.parent = {k: v for k, v in asdict(parent).items() if k in ("run_name", "tags", "params", "start_time_ms")}
        if stale_runs:
            print(f"[convbench] closed {len(stale_runs)} run(s) of experiment '{experiment}' as KILLED: left RUNNING "
                  f"by processes of this host that are gone", flush=True)
        try:
            state.save()
        except OSError as exc:   # a full disk: the parent is closed, not left RUNNING, and nothing runs
            _close_unstarted(state, f"the sweep's state could not be written: {short(exc)}")
            raise ConfigError(f"cannot write the sweep's state {state.path}: {short(exc)}; nothing was run") from None
        _hand_to_jobs(config, sweep_id)
        if str(config.hydra.launcher.get("_target_", "")).endswith(".SlurmLauncher"):
            from . import slurm   # submitit: only SLURM sweeps need it
            slurm.install(state)
        _open_sweeps[state.parent_run_id] = state
        skipped = sum(job["duplicate_of"] is not None for job in plan)
        jobs = f"{state.total} jobs" if state.total is not None else "jobs"
        try:   # a convenience: a store that cannot answer leaves the sweep unannounced, not stopped
            estimate = f"; {announcement(uri, plan)}" if plan else ""
        except Exception as exc:
            estimate = f"; no estimate ({type(exc).__name__})"
        print(f"[convbench] sweep {sweep_id}: {jobs}"
              + (f" ({skipped} duplicates will be skipped)" if skipped else "")
              + f", checked in {time.perf_counter() - started:.1f} s; parent run {state.parent_run_id} "
              f"in experiment '{experiment}'{estimate}", flush=True)
        return state

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        state = getattr(self, "_state", None)
        if state is None or state.parent_run_id not in _open_sweeps:
            return
        close_sweep(state)


def _close_unstarted(state: SweepState, reason: str) -> None:
    try:
        stale.close_run(state.tracking_uri, state.parent_run_id, reason, status="FAILED")
    except Exception as exc:
        print(f"convbench: the parent run {state.parent_run_id} stays RUNNING ({short(exc)}); the next sweep on "
              f"this host closes it", file=sys.stderr)


def _refuse_here(step, config: DictConfig):
    """``step(config)``; bad input exits 2 with one message here, since Hydra turns exceptions of callbacks
    into warnings and would go on."""
    try:
        return step(config)
    except Exception as exc:   # bad input, a composition error, an unreachable store
        text = str(exc) if isinstance(exc, ConfigError) else hydra_error_message(exc) \
            if isinstance(exc, HydraException) else f"{type(exc).__name__}: {exc}"
        print(f"convbench: {mask(text)}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG_ERROR) from None


def _hand_to_jobs(config: DictConfig, sweep_id: str) -> None:
    """Every job of this sweep gets $CONVBENCH_SWEEP_ID: launchers compose each job's config from the
    sweep's Hydra overrides, so one more override there reaches the jobs of every launcher, in any
    process, and Hydra sets the variable around the task function (hydra.job.env_set)."""
    from omegaconf import read_write
    os.environ[SWEEP_ID_ENV] = sweep_id
    with read_write(config.hydra.overrides):
        config.hydra.overrides.hydra.append(f"++hydra.job.env_set.{SWEEP_ID_ENV}={sweep_id}")


def close_sweep(state: SweepState, interrupted: str | None = None, killed: bool = False) -> SweepSummary:
    """Summarize the jobs' results, close the parent run (KILLED when a signal stopped the sweep), forget
    the sweep."""
    global _last_summary
    results = state.results()
    total = state.total if state.total is not None else len(results)
    failed = [r for r in results if r.get("status") == "failed"]
    # a stopped sweep's jobs without a result never started; otherwise a job without one was lost
    unaccounted = max(0, total - len(results))
    summary = SweepSummary(state.sweep_id, total, sum(r.get("status") == "ok" for r in results), failed,
                           sum(r.get("status") == "skipped" for r in results),
                           0 if interrupted is not None else unaccounted,
                           [r["outbox"] for r in results if r.get("outbox")],
                           unaccounted if interrupted is not None else 0)
    _last_summary = summary
    _open_sweeps.pop(state.parent_run_id, None)
    if os.environ.get(SWEEP_ID_ENV) == state.sweep_id:
        del os.environ[SWEEP_ID_ENV]
    uri, run_id = state.tracking_uri, state.parent_run_id
    if interrupted is not None:   # jobs of other processes (joblib workers) stopped with the sweep
        try:
            stale.close_dead_local_runs(uri, [state.experiment], extra_filter=f"tags.`{mlf.PARENT_RUN_ID_TAG}` = "
                                        f"'{run_id}'", reason=f"{interrupted}: the sweep stopped while this job ran",
                                        wait_s=10)
        except Exception as exc:
            print(f"convbench: could not close the sweep's unfinished jobs: {type(exc).__name__}: "
                  f"{_first_line(mask(str(exc)))}", file=sys.stderr)
    line = summary.line() if interrupted is None else f"{summary.line()} ({interrupted})"
    print(f"[convbench] MLflow: parent run {run_id}; open the UI: {mlf.ui_command(uri)}")
    table = comparison.comparison_table(results)
    if table:
        print(table)
    drifted = " ".join(d.text() for d in comparison.drifts(results))
    try:
        print(f"[convbench] these jobs and their key metrics in the UI: "
              f"{comparison.share_view(uri, state.experiment, state.sweep_id)}")
    except Exception as exc:   # the link is a convenience: the sweep's results are logged already
        print(f"convbench: no UI link: {type(exc).__name__}: {exc}", file=sys.stderr)
    print(line, file=sys.stderr if not summary.success or interrupted else sys.stdout, flush=True)
    ok = summary.all_ok and interrupted is None
    opened = {"run_name": f"sweep {state.sweep_id}", **state.parent}
    closing = outbox.RunRecord(
        uri, state.experiment, opened["run_name"], run_id, params=opened.get("params", {}),
        start_time_ms=opened.get("start_time_ms") or int(time.time() * 1000),
        client_id=state.parent_client_id or uuid.uuid4().hex,
        tags={**opened.get("tags", {}), contract.T_RUN_KIND: "parent", contract.T_SWEEP_ID: state.sweep_id,
              contract.T_STATUS: "ok" if ok else "failed", **({} if ok else {contract.T_ERROR: line}),
              **({contract.T_BASELINE_DRIFT: drifted[:5000]} if drifted else {})},
        metrics={contract.JOBS_TOTAL: total, contract.JOBS_OK: summary.ok, contract.JOBS_FAILED: len(failed),
                 contract.JOBS_SKIPPED: summary.skipped, contract.JOBS_MISSING: summary.missing,
                 contract.JOBS_NOT_STARTED: summary.not_started,
                 contract.JOBS_IN_OUTBOX: len(summary.in_outbox)},
        status="KILLED" if killed else "FINISHED" if ok else "FAILED")
    try:
        with tempfile.TemporaryDirectory(prefix="convbench-sweep-") as artifacts:
            multirun_yaml = state.sweep_dir / "multirun.yaml"
            if multirun_yaml.is_file():   # Hydra's record of the sweep, tracking.uri's password masked
                (Path(artifacts) / multirun_yaml.name).write_text(mask(multirun_yaml.read_text()))
            closing.artifacts = artifacts
            # a signal's clean-up does not wait for an unreachable store: it goes to the outbox at once
            entry = outbox.deliver(closing, 0 if interrupted else state.retry_s, state.sweep_dir / outbox.OUTBOX_DIR,
                                   f"closing the parent run {run_id}")
    except OSError as exc:   # no disk had room: the store, the sweep directory and the temporary one are full
        print(f"convbench: could not close the parent run {run_id} nor keep it in an outbox ({short(exc)}); "
              f"it stays RUNNING until the next sweep on this host closes it", file=sys.stderr)
        return summary
    if entry is not None:
        print(f"convbench: could not close the parent run {run_id} ({closing.error}); kept in {entry}: upload "
              f"it with `{outbox.sync_command(entry)}`", file=sys.stderr)
    return summary


def runs_here() -> bool:
    """True in the process that started a sweep and has not closed it: the basic launcher runs its
    jobs here, one after another; other launchers run them in processes of their own."""
    return bool(_open_sweeps)


def open_sweep() -> SweepState | None:
    """The sweep this process started and has not closed (its launcher runs the jobs), if any."""
    return next(iter(_open_sweeps.values()), None)


def abort_open_sweeps(reason: str = "interrupted", killed: bool = False) -> None:
    """Close every parent run this process opened and did not close (run.py, on an exception)."""
    for state in list(_open_sweeps.values()):
        close_sweep(state, interrupted=reason, killed=killed)

