"""One MLflow parent run per multirun, created and closed by a Hydra callback.

``on_multirun_start`` (in the process that runs ``python run.py -m ...``):

1. expands the sweep as Hydra's basic sweeper will (same parser, same order, so job number i
   here is ``hydra.job.num`` i there) and checks every job's config: any bad input (unknown
   model, unsupported tile, gpu without a GPU, blocked GEMM on numpy...) stops the sweep before
   any work, with every bad job listed;
2. marks jobs that would measure exactly what an earlier job measures (gemm and tile do not
   apply to pytorch and scalar, the tile not to the vendor GEMM) as duplicates to skip;
3. creates the parent run and writes the sweep state, ``<sweep dir>/.convbench/sweep.json``
   (parent run id, sweep id, plan); its path also goes to $CONVBENCH_SWEEP_STATE. Jobs read
   it there whatever the launcher (in this process, joblib workers, submitit on other nodes).

Each job writes ``.convbench/results/<num>.json``. ``on_multirun_end`` reads them, prints the
one-line summary, closes the parent (FINISHED when every job succeeded, else FAILED) and keeps
the summary for run.py's exit code. A sweep interrupted before its end (Ctrl-C, a crash in
Hydra) is closed by ``abort_open_sweeps()``, which run.py calls on the way out.
"""
from __future__ import annotations

import json
import os
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from experiments.tracking import contract
from experiments.tracking import mlflow_log as mlf

from .errors import ConfigError

STATE_ENV = "CONVBENCH_SWEEP_STATE"
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

    @property
    def results_dir(self) -> Path:
        return Path(self.path).parent / "results"

    def save(self) -> None:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        Path(self.path).write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "SweepState":
        return cls(**json.loads(Path(path).read_text()))

    @classmethod
    def find(cls, sweep_dir: str | None) -> "SweepState | None":
        """The state of the running sweep: the file in the job's sweep dir, else $CONVBENCH_SWEEP_STATE.

        The sweep dir first: a worker process that outlives one sweep (joblib's reusable loky
        workers, when one process runs several sweeps) still has the first sweep's variable."""
        candidates = [str(Path(sweep_dir) / STATE_DIR / "sweep.json")] if sweep_dir else []
        candidates.append(os.environ.get(STATE_ENV))
        for candidate in candidates:
            if candidate and Path(candidate).is_file():
                return cls.load(candidate)
        return None

    def write_result(self, num: int, result: dict) -> None:
        self.results_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.results_dir / f".{num}.json.tmp"
        tmp.write_text(json.dumps(result))
        tmp.replace(self.results_dir / f"{num}.json")

    def results(self) -> list[dict]:
        if not self.results_dir.is_dir():
            return []
        found = [json.loads(p.read_text()) for p in self.results_dir.glob("*.json")]
        return sorted(found, key=lambda r: r.get("num", 0))


@dataclass
class SweepSummary:
    sweep_id: str
    total: int
    ok: int
    failed: list[dict]
    skipped: int
    missing: int

    @property
    def success(self) -> bool:
        return not self.failed and not self.missing

    def line(self) -> str:
        ran = self.total - self.skipped
        head = f"convbench sweep {self.sweep_id}: {self.ok} of {ran} jobs ok"
        if self.skipped:
            head += f" ({self.skipped} duplicates skipped)"
        if self.success:
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

    loader = GlobalHydra.instance().config_loader()
    plan, errors, seen = [], {}, {}
    for num, overrides in enumerate(job_overrides):
        job_cfg = loader.load_sweep_config(config, list(overrides))
        try:
            spec = job_spec(job_cfg)
        except ConfigError as exc:
            errors.setdefault(str(exc), []).append(f"#{num} {' '.join(overrides) or '(defaults)'}")
            continue
        identity = spec.identity()
        plan.append({"overrides": list(overrides), "name": spec.name, "duplicate_of": seen.get(identity)})
        seen.setdefault(identity, num)
    if errors:
        bad = sum(len(jobs) for jobs in errors.values())
        lines = [f"  {jobs[0]}" + (f" (and {len(jobs) - 1} more jobs)" if len(jobs) > 1 else "") + f": {message}"
                 for message, jobs in errors.items()]
        raise ConfigError(f"{bad} of {len(job_overrides)} jobs of this sweep have invalid configs; "
                          f"nothing was run:\n" + "\n".join(lines))
    return plan


# --- the callback --------------------------------------------------------------------------

class SweepCallback(Callback):
    """Registered in conf/config.yaml under hydra.callbacks."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        # Hydra turns exceptions of callbacks into warnings: a sweep that must not start exits here.
        try:
            self._start(config)
        except Exception as exc:   # bad input, a composition error, an unreachable store
            text = str(exc) if isinstance(exc, ConfigError) else f"{type(exc).__name__}: {exc}"
            print(f"convbench: {text}", file=sys.stderr)
            raise SystemExit(EXIT_CONFIG_ERROR) from None

    def _start(self, config: DictConfig) -> None:
        reset_summary()
        os.environ.pop(STATE_ENV, None)
        started = time.perf_counter()
        job_overrides = plan_overrides(config)
        plan = check_jobs(config, job_overrides) if job_overrides is not None else []
        sweep_dir = Path(str(config.hydra.sweep.dir))
        sweep_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        uri, experiment = str(config.tracking.uri), str(config.tracking.experiment)
        state = SweepState(str((sweep_dir / STATE_DIR / "sweep.json").absolute()), sweep_id, None, uri, experiment,
                           plan, len(plan) if job_overrides is not None else None)
        from experiments.tracking.provenance import provenance_tags
        try:
            state.parent_run_id = mlf.start_run(uri, experiment, f"sweep {sweep_id}", {
                contract.T_RUN_KIND: "parent", contract.T_SWEEP_ID: sweep_id, contract.T_STATUS: "running",
                **provenance_tags()})
            mlf.log(uri, state.parent_run_id, params={
                "sweep.overrides": " ".join(config.hydra.overrides.task) or "(none)",
                "sweep.jobs": state.total if state.total is not None else "unknown",
                "sweep.dir": str(sweep_dir.resolve())})
        except Exception as exc:
            raise ConfigError(f"cannot create the sweep's parent run in the tracking store {mlf.resolve_uri(uri)}: "
                              f"{type(exc).__name__}: {_first_line(str(exc), 300)}") from None
        state.save()
        os.environ[STATE_ENV] = state.path
        _open_sweeps[state.parent_run_id] = state
        skipped = sum(job["duplicate_of"] is not None for job in plan)
        jobs = f"{state.total} jobs" if state.total is not None else "jobs"
        print(f"[convbench] sweep {sweep_id}: {jobs}"
              + (f" ({skipped} duplicates will be skipped)" if skipped else "")
              + f", checked in {time.perf_counter() - started:.1f} s; parent run {state.parent_run_id} "
              f"in experiment '{experiment}'", flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        state = SweepState.find(str(config.hydra.sweep.dir))
        if state is None or state.parent_run_id not in _open_sweeps:
            return
        close_sweep(state)


def close_sweep(state: SweepState, interrupted: str | None = None) -> SweepSummary:
    """Summarize the jobs' results, close the parent run, forget the sweep."""
    global _last_summary
    results = state.results()
    total = state.total if state.total is not None else len(results)
    failed = [r for r in results if r.get("status") == "failed"]
    summary = SweepSummary(state.sweep_id, total, sum(r.get("status") == "ok" for r in results), failed,
                           sum(r.get("status") == "skipped" for r in results), max(0, total - len(results)))
    _last_summary = summary
    _open_sweeps.pop(state.parent_run_id, None)
    if os.environ.get(STATE_ENV) == state.path:
        del os.environ[STATE_ENV]
    line = summary.line() if interrupted is None else f"{summary.line()} (stopped by {interrupted})"
    print(f"[convbench] MLflow: parent run {state.parent_run_id}; open the UI: {mlf.ui_command(state.tracking_uri)}")
    print(line, file=sys.stderr if not summary.success or interrupted else sys.stdout, flush=True)
    try:
        uri, run_id = state.tracking_uri, state.parent_run_id
        ok = summary.success and interrupted is None
        mlf.log(uri, run_id, metrics={"jobs_total": total, "jobs_ok": summary.ok, "jobs_failed": len(failed),
                                      "jobs_skipped": summary.skipped, "jobs_missing": summary.missing},
                tags={contract.T_STATUS: "ok" if ok else "failed",
                      **({} if ok else {contract.T_ERROR: line})})
        multirun_yaml = Path(state.path).parent.parent / "multirun.yaml"
        if multirun_yaml.is_file():
            mlf.client(uri).log_artifact(run_id, str(multirun_yaml))
        mlf.finish(uri, run_id, ok, status="KILLED" if interrupted == "KeyboardInterrupt" else None)
    except Exception as exc:
        print(f"convbench: could not close the parent run {state.parent_run_id}: {type(exc).__name__}: {exc}",
              file=sys.stderr)
    return summary


def runs_here() -> bool:
    """True in the process that started a sweep and has not closed it: the basic launcher runs its
    jobs here, one after another; other launchers run them in processes of their own."""
    return bool(_open_sweeps)


def abort_open_sweeps(reason: str = "interrupted") -> None:
    """Close every parent run this process opened and did not close (run.py, on an exception)."""
    for state in list(_open_sweeps.values()):
        close_sweep(state, interrupted=reason)

