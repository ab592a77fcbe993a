"""The task function of run.py: one job from its Hydra config to an MLflow run.

A job never raises (except for bad input in a single run, which exits before any work): a
failure (bad combination, kernel error, tolerance exceeded, anything) is logged in its run
(status=failed, the error text, the traceback as an artifact, whatever was measured before
it) and returned, so that the sweep goes on. In a sweep the job's result also goes to the
sweep state for the final summary (see sweep.py).
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from experiments.compress import pipeline as compression
from experiments.runtime import device_memory
from experiments.tracking import contract as c
from experiments.tracking import labels
from experiments.tracking import mlflow_log as mlf
from experiments.tracking.credentials import mask
from experiments.tracking import outbox, stale
from experiments.tracking.retry import DEFAULT_RETRY_S, retry_seconds, short

from . import devices, isolation, memory, signals, sweep
from .artifacts import write_artifacts
from .config import JobSpec, job_spec
from .console import progress_bar, summary_text
from .errors import ConfigError
from .job import Job, JobOutcome, cudnn_benchmark_tag
from .results import (STATUS_FAILED, STATUS_OK, STATUS_SKIPPED, JobReport, baseline_scenario, contract_metrics, costs,
                      load_tags, resolved_params)
from .sweep import EXIT_CONFIG_ERROR, SweepState

_last_job: "JobReport | None" = None


@dataclass
class JobContext:
    """Where this job stands: alone, or job ``num`` of ``total`` in a sweep."""

    in_sweep: bool = False
    state: SweepState | None = None
    num: int | None = None
    duplicate_of: int | None = None
    device: str | None = None          # the GPU a parallel launcher's job was given (devices.py)
    run_name: str | None = None        # in a sweep: the short name the plan gave it (naming.py)

    @classmethod
    def current(cls) -> "JobContext":
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode
        if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
            return cls()
        hc = HydraConfig.get()
        state = SweepState.find(str(hc.sweep.dir), sweep.current_sweep_id())
        num = int(hc.job.num)
        duplicate_of, run_name = None, None
        if state is not None and num < len(state.jobs) and state.jobs[num]["overrides"] == list(hc.overrides.task):
            duplicate_of, run_name = state.jobs[num]["duplicate_of"], state.jobs[num].get("run_name")
        return cls(True, state, num, duplicate_of, run_name=run_name)

    @property
    def label(self) -> str:
        if not self.in_sweep:
            return "job"
        total = self.state.total if self.state is not None and self.state.total is not None else "?"
        return f"job {self.num + 1}/{total}"

    @property
    def outbox_dir(self) -> Path:
        """Where this job's run waits when its store stays unreachable: the sweep's (or run's) directory."""
        if self.state is not None:
            return self.state.sweep_dir / outbox.OUTBOX_DIR
        from hydra.core.hydra_config import HydraConfig
        run_dir = HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else "."
        return Path(run_dir) / outbox.OUTBOX_DIR

    def record(self, report: JobReport) -> None:
        if self.state is None or self.num is None:
            return
        try:
            self.state.write_result(self.num, {"num": self.num, "name": report.name, "status": report.status,
                                               "error": report.error, "run_id": report.run_id,
                                               "outbox": report.outbox, "run_name": self.run_name,
                                               "what_ran": report.what_ran, "metrics": report.metrics or {},
                                               "emulated": report.emulated, "scenario": report.scenario,
                                               "tags": report.tags or {}})
        except OSError as exc:   # a full disk: the sweep's summary counts this job as one that left no result
            print(f"[convbench] {self.label} {report.name}: its result could not be written to "
                  f"{self.state.results_dir} ({short(exc)})", file=sys.stderr, flush=True)


def reset_outcomes() -> None:
    """Forget the outcomes of earlier invocations in this process (run.main calls it first)."""
    global _last_job
    _last_job = None
    sweep.reset_summary()


def exit_status() -> int:
    """run.py's exit code: 1 when the sweep (or single job) of this invocation had a failure, or a run
    that waits in an outbox."""
    summary = sweep.last_summary()
    if summary is not None:
        return 0 if summary.success else 1
    return 1 if _last_job is not None and (_last_job.failed or _last_job.outbox) else 0


def run_job(cfg: DictConfig) -> JobReport:
    """Never raises but for bad input of a single run (SystemExit 2): a failure is a returned report."""
    global _last_job
    started = time.perf_counter()
    context = JobContext.current()
    # before anything initialises CuPy or torch's GPU context: a parallel launcher's job sees one GPU
    assigned = devices.isolate_job_device(context.in_sweep, sweep.runs_here())
    context.device = assigned.device if assigned is not None else None
    _last_job = None
    if context.duplicate_of is not None:
        planned = context.state.jobs[context.num]
        report = JobReport(planned["name"], STATUS_SKIPPED, num=context.num)
        print(f"[convbench] {context.label} {report.name}: skipped, it measures the same as job "
              f"{context.duplicate_of + 1} (gemm and tile do not apply to every algorithm)", flush=True)
        context.record(report)
        return report
    if context.in_sweep and not sweep.runs_here():   # a launcher's worker: a crash must fail this job only
        try:
            report = isolation.in_child(lambda: _checked_and_logged(cfg, context, started))
        except isolation.ChildDied as died:
            report = _crashed(cfg, context, died)
    else:
        report = _checked_and_logged(cfg, context, started)
    _last_job = report
    return report


def _checked_and_logged(cfg: DictConfig, context: JobContext, started: float) -> JobReport:
    try:
        spec, config_error = job_spec(cfg), None
        memory.check_job(spec)      # the estimated peak against the free memory of the device or host
    except ConfigError as exc:
        if not context.in_sweep:    # bad input of a single run: a clear error before any work
            print(f"convbench: {exc}", file=sys.stderr)
            raise SystemExit(EXIT_CONFIG_ERROR) from None
        spec, config_error = None, exc
    name = spec.name if spec is not None else _fallback_name(cfg)
    ran = f" ({labels.what_ran(spec.runtime.name)})" if spec is not None else ""
    print(f"[convbench] {context.label} {name}{ran}", flush=True)
    try:
        report = _run_logged(cfg, spec, config_error, name, context, started)
    except Exception as exc:   # a bug of the harness itself: this job failed, the sweep goes on
        report = JobReport(name, STATUS_FAILED, f"harness error: {type(exc).__name__}: {exc}", num=context.num)
        traceback.print_exc()
        print(f"[convbench] {context.label} {name}: FAILED: {report.error}", file=sys.stderr, flush=True)
    except BaseException as exc:   # SIGTERM/SIGINT (signals.py): close this job's run as KILLED, then stop
        stop = signals.as_stop(exc)
        if stop is not None:
            closed = stale.close_own_runs(stop.reason, keep={context.state.parent_run_id} if context.state else set(),
                                          status=stop.status)
            context.record(JobReport(name, STATUS_FAILED, stop.reason, closed[0] if closed else None, context.num))
            print(f"[convbench] {context.label} {name}: {stop.status} ({stop.reason})", file=sys.stderr, flush=True)
        raise
    context.record(report)
    return report


def _crashed(cfg: DictConfig, context: JobContext, died: isolation.ChildDied) -> JobReport:
    """The job's process died: its run (tagged with that pid) is closed as FAILED with the reason."""
    planned = context.state.jobs if context.state is not None else []
    name = planned[context.num]["name"] if context.num < len(planned) else _fallback_name(cfg)
    error = f"crashed: {died.reason}"
    uri, experiment = str(cfg.tracking.uri), str(cfg.tracking.experiment)
    try:   # in a child as well: the worker itself never opens a store (isolation.py)
        closed = isolation.in_child(lambda: [run.run_id for run in stale.close_dead_local_runs(
            uri, [experiment], extra_filter=f"tags.`{c.T_PID}` = '{died.pid}'", reason=error, status="FAILED")])
    except isolation.ChildDied:
        closed = []
    report = JobReport(name, STATUS_FAILED, error, closed[0] if closed else None, context.num)
    print(f"[convbench] {context.label} {name}: FAILED: {error}" + (f" (run {report.run_id})" if closed else ""),
          file=sys.stderr, flush=True)
    context.record(report)
    return report


def _fallback_name(cfg: DictConfig) -> str:
    return "/".join(str(OmegaConf.select(cfg, key, default="?")) for key in ("model.name", "algo.name", "gemm.name"))


def _retry_s(cfg) -> float:
    try:
        return retry_seconds(OmegaConf.select(cfg, "tracking.retry_s", default=DEFAULT_RETRY_S))
    except ValueError:     # the job's config error says so; its run is logged with the default
        return DEFAULT_RETRY_S


def _run_logged(cfg, spec: JobSpec | None, config_error, name: str, context: JobContext,
                started: float) -> JobReport:
    uri, experiment, retry_s = str(cfg.tracking.uri), str(cfg.tracking.experiment), _retry_s(cfg)
    state = context.state
    tags = {c.T_RUN_KIND: "job", c.T_STATUS: "running", c.T_JOB_NAME: name}
    if state is not None:
        tags[c.T_SWEEP_ID] = state.sweep_id
        tags[c.T_JOB_NUM] = context.num
    if context.device is not None:
        tags[c.T_VISIBLE_DEVICES] = context.device
    from experiments.tracking.provenance import provenance_tags
    tags.update(provenance_tags())
    if spec is not None:
        tags.update({c.T_BACKEND: spec.runtime.name, c.T_RUNTIME: spec.runtime.kind,
                     c.T_EXECUTION: spec.runtime.execution,
                     c.T_TIMING: "emulated" if spec.runtime.emulated else "measured",
                     c.T_WHAT_RAN: labels.what_ran(spec.runtime.name),
                     c.T_CUDNN_BENCHMARK: cudnn_benchmark_tag(spec)})
    params = {**mlf.flatten(OmegaConf.to_container(cfg, resolve=True)),
              **(resolved_params(spec) if spec is not None else {})}
    run = outbox.RunRecord(uri, experiment, context.run_name or name, tags=tags,
                           parent_run_id=state.parent_run_id if state else None,
                           parent_client_id=state.parent_client_id if state else None,
                           params={k: mask(v) for k, v in params.items()})
    try:
        outbox.start(run)
        mlf.log(uri, run.run_id, params=run.params)
    except Exception as exc:   # unreachable now: measure anyway; the results' delivery creates or completes the run
        print(f"[convbench] {context.label} {name}: the tracking store {mlf.shown_uri(uri)} is unreachable "
              f"({short(exc)}); measuring anyway: the run is logged at the end (retried for up to {retry_s:g} s, "
              f"else kept in the outbox)", file=sys.stderr, flush=True)

    job, error, trace = None, "", ""
    open_run_s = time.perf_counter() - started   # config check, provenance, run creation, params
    try:
        if config_error is not None:
            raise config_error
        device_memory.start(spec.runtime)
        job = Job(spec, progress=progress_bar)
        job.run()
    except Exception as exc:
        error, trace = f"{type(exc).__name__}: {exc}", traceback.format_exc()
    outcome = job.outcome if job is not None else JobOutcome()
    outcome.phases["open_run_s"] = open_run_s
    status = STATUS_FAILED if error else STATUS_OK
    metrics = contract_metrics(spec, outcome) if spec is not None else {}
    if spec is not None:
        peak = device_memory.peak_bytes(spec.runtime)
        if peak is not None:
            metrics[c.PEAK_DEVICE_MEMORY_BYTES] = peak
        job = None   # the job's arrays, before the caches go back to the driver
        device_memory.release(spec.runtime)
    entry = None
    outcome_tags = {}
    try:
        entry = _log_result(run, cfg, spec, outcome, metrics, status, error, trace, started, retry_s, context)
        outcome_tags = {k: v for k, v in run.tags.items() if k in (c.T_ENERGY_WINDOW, c.T_QUIET, c.T_BUSY_PROCESSES)}
    except Exception as exc:
        status, error = STATUS_FAILED, error or f"logging the results failed: {type(exc).__name__}: {exc}"
    report = JobReport(name, status, error, run.run_id, context.num, metrics, None if entry is None else str(entry),
                       labels.what_ran(spec.runtime.name, outcome.device) if spec is not None else "",
                       emulated=spec is not None and spec.runtime.emulated,
                       scenario=baseline_scenario(spec) if spec is not None else "", tags=outcome_tags)
    cost = costs(outcome.phases, time.perf_counter() - started)
    print(summary_text(report, spec, outcome, context.label, context.in_sweep, uri, cost),
          file=sys.stderr if report.failed else sys.stdout, flush=True)
    return report


def _log_result(run: outbox.RunRecord, cfg, spec, outcome: JobOutcome, metrics, status, error, trace,
                started: float, retry_s: float, context: JobContext) -> Path | None:
    """Log the results (retrying while the store is unreachable), else keep the whole run in the outbox;
    returns the outbox entry, None when logged."""
    logging_started = time.perf_counter()
    tags = {c.T_STATUS: status}
    if error:
        tags[c.T_ERROR] = error
    if outcome.device:
        tags[c.T_DEVICE] = outcome.device
    if spec is not None:
        tags[c.T_ENERGY_MODE] = outcome.energy.mode if outcome.energy is not None else \
            "failed" if outcome.energy_error else "off"
        if outcome.energy_error:
            tags[c.T_ENERGY_ERROR] = outcome.energy_error
        if outcome.tuning is not None and outcome.tuning.best_single is not None:
            tags[c.T_BEST_SINGLE] = outcome.tuning.best_single.label
        tags.update(compression.tags(outcome.compression))
        tags.update(load_tags(outcome))
        if outcome.energy is not None:
            tags[c.T_ENERGY_WINDOW] = outcome.energy.window
        if status == STATUS_OK and c.SPEEDUP_VS_BASELINE in metrics and spec.runtime.name != "emulator":
            tags[c.T_VS_PYTORCH] = labels.ratio_text(metrics[c.SPEEDUP_VS_BASELINE])
    with tempfile.TemporaryDirectory(prefix="convbench-") as tmp:
        write_artifacts(Path(tmp), cfg, spec, outcome, trace)
        now = time.perf_counter()
        phases = {**outcome.phases, "logging_s": now - logging_started}
        (Path(tmp) / c.A_HARNESS).write_text(json.dumps(
            {"job": run.run_id, **costs(phases, now - started),
             "note": "seconds; logging_s and job_s stop before the artifact upload"}, indent=1))
        run.tags.update(tags)
        run.metrics, run.artifacts, run.status = metrics, tmp, "FINISHED" if status == STATUS_OK else "FAILED"
        entry = outbox.deliver(run, retry_s, context.outbox_dir, f"{context.label} {run.run_name}: logging the results")
    outcome.phases["logging_s"] = time.perf_counter() - logging_started
    return entry
