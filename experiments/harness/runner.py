"""The task function of run.py: one job from its Hydra config to an MLflow run.

A job never raises (except for bad input in a single run, which exits before any work): a
failure (bad combination, kernel error, tolerance exceeded, anything) is logged in its run
(status=failed, the error text, the traceback as an artifact, whatever was measured before
it) and returned, so that the sweep goes on. In a sweep the job's result also goes to the
sweep state for the final summary (see sweep.py).
"""
from __future__ import annotations

import csv
import json
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from experiments.compress import harness as compression
from experiments.runtime import device_memory
from experiments.tracking import contract as c
from experiments.tracking import mlflow_log as mlf

from . import devices, sweep
from .config import PYTORCH, JobSpec, job_spec
from .errors import ConfigError
from .job import Job, JobOutcome
from .sweep import EXIT_CONFIG_ERROR, SweepState
from .timing import Measurement

STATUS_OK, STATUS_FAILED, STATUS_SKIPPED = "ok", "failed", "skipped"

_last_job: "JobReport | None" = None


@dataclass
class JobReport:
    """What a job returns to Hydra (and, in a sweep, writes to the sweep state)."""

    name: str
    status: str
    error: str = ""
    run_id: str | None = None
    num: int | None = None
    metrics: dict | None = None

    @property
    def failed(self) -> bool:
        return self.status == STATUS_FAILED


@dataclass
class JobContext:
    """Where this job stands: alone, or job ``num`` of ``total`` in a sweep."""

    in_sweep: bool = False
    state: SweepState | None = None
    num: int | None = None
    duplicate_of: int | None = None
    device: str | None = None          # the GPU a parallel launcher's job was given (devices.py)

    @classmethod
    def current(cls) -> "JobContext":
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode
        if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
            return cls()
        hc = HydraConfig.get()
        state = SweepState.find(str(hc.sweep.dir))
        num = int(hc.job.num)
        duplicate_of = None
        if state is not None and num < len(state.jobs) and state.jobs[num]["overrides"] == list(hc.overrides.task):
            duplicate_of = state.jobs[num]["duplicate_of"]
        return cls(True, state, num, duplicate_of)

    @property
    def label(self) -> str:
        if not self.in_sweep:
            return "job"
        total = self.state.total if self.state is not None and self.state.total is not None else "?"
        return f"job {self.num + 1}/{total}"

    def record(self, report: JobReport) -> None:
        if self.state is not None and self.num is not None:
            self.state.write_result(self.num, {"num": self.num, "name": report.name, "status": report.status,
                                               "error": report.error, "run_id": report.run_id})


def reset_outcomes() -> None:
    """Forget the outcomes of earlier invocations in this process (run.main calls it first)."""
    global _last_job
    _last_job = None
    sweep.reset_summary()


def exit_status() -> int:
    """run.py's exit code: 1 when the sweep (or single job) of this invocation had a failure."""
    summary = sweep.last_summary()
    if summary is not None:
        return 0 if summary.success else 1
    return 1 if _last_job is not None and _last_job.failed else 0


def _progress_bar(**kwargs):
    from tqdm import tqdm
    return tqdm(leave=False, file=sys.stderr, dynamic_ncols=True, mininterval=0.5, **kwargs)


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
    try:
        spec, config_error = job_spec(cfg), None
    except ConfigError as exc:
        if not context.in_sweep:    # bad input of a single run: a clear error before any work
            print(f"convbench: {exc}", file=sys.stderr)
            raise SystemExit(EXIT_CONFIG_ERROR) from None
        spec, config_error = None, exc
    name = spec.name if spec is not None else _fallback_name(cfg)
    print(f"[convbench] {context.label} {name}", flush=True)
    try:
        report = _run_logged(cfg, spec, config_error, name, context, started)
    except Exception as exc:   # a bug of the harness itself: this job failed, the sweep goes on
        report = JobReport(name, STATUS_FAILED, f"harness error: {type(exc).__name__}: {exc}", num=context.num)
        traceback.print_exc()
        print(f"[convbench] {context.label} {name}: FAILED: {report.error}", file=sys.stderr, flush=True)
    context.record(report)
    _last_job = report
    return report


def _fallback_name(cfg: DictConfig) -> str:
    return "/".join(str(OmegaConf.select(cfg, key, default="?")) for key in ("model.name", "algo.name", "gemm.name"))


def _run_logged(cfg, spec: JobSpec | None, config_error, name: str, context: JobContext,
                started: float) -> JobReport:
    uri, experiment = str(cfg.tracking.uri), str(cfg.tracking.experiment)
    state = context.state
    tags = {c.T_RUN_KIND: "job", c.T_STATUS: "running"}
    if state is not None:
        tags[c.T_SWEEP_ID] = state.sweep_id
    if context.device is not None:
        tags[c.T_VISIBLE_DEVICES] = context.device
    try:
        from experiments.tracking.provenance import provenance_tags
        tags.update(provenance_tags())
        if spec is not None:
            tags.update({c.T_BACKEND: spec.runtime.name, c.T_RUNTIME: spec.runtime.kind,
                         c.T_TIMING: "emulated" if spec.runtime.name == "emulator" else "measured"})
        run_id = mlf.start_run(uri, experiment, name, tags, state.parent_run_id if state else None)
        mlf.log(uri, run_id, params=mlf.flatten(OmegaConf.to_container(cfg, resolve=True)))
    except Exception as exc:    # the store is unreachable: nothing can be logged, say so
        error = f"cannot log to the tracking store {mlf.resolve_uri(uri)}: {type(exc).__name__}: {exc}"
        print(f"[convbench] {context.label} {name}: FAILED: {error}", file=sys.stderr, flush=True)
        return JobReport(name, STATUS_FAILED, error, None, context.num)

    job, error, trace = None, "", ""
    open_run_s = time.perf_counter() - started   # config check, provenance, run creation, params
    try:
        if config_error is not None:
            raise config_error
        device_memory.start(spec.runtime)
        # progress bars on a terminal only: in a log file they would interleave with the lines
        job = Job(spec, progress=_progress_bar if sys.stderr.isatty() else None)
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
    try:
        _log_result(uri, run_id, cfg, spec, outcome, metrics, status, error, trace, started)
    except Exception as exc:
        status, error = STATUS_FAILED, error or f"logging the results failed: {type(exc).__name__}: {exc}"
    report = JobReport(name, status, error, run_id, context.num, metrics)
    cost = costs(outcome.phases, time.perf_counter() - started)
    print(summary_text(report, spec, outcome, context, uri, cost), file=sys.stderr if report.failed else sys.stdout,
          flush=True)
    return report


# --- results -> contract ----------------------------------------------------------------------

def contract_metrics(spec: JobSpec, outcome: JobOutcome) -> dict[str, float]:
    m: dict[str, float] = {}
    if outcome.max_rel_err is not None:
        m[c.MAX_REL_ERR] = outcome.max_rel_err
    if outcome.compile_s is not None:
        m[c.COMPILE_S] = outcome.compile_s
    model, baseline = outcome.model, outcome.baseline
    if model is not None:
        m.update({c.LATENCY_MS: model.median * 1e3, c.LATENCY_P10_MS: model.p10 * 1e3,
                  c.LATENCY_P90_MS: model.p90 * 1e3, c.LATENCY_IQR_REL: model.iqr_rel,
                  c.GFLOPS: outcome.conv_flops / model.median / 1e9})
    if baseline is not None:
        m[c.BASELINE_LATENCY_MS] = baseline.median * 1e3
    if model is not None and baseline is not None:
        m[c.SPEEDUP_VS_BASELINE] = baseline.median / model.median
    if outcome.layers and all(layer.ours is not None for layer in outcome.layers):
        m[c.CONV_LATENCY_MS] = sum(layer.ours.median for layer in outcome.layers) * 1e3
    if spec.algo != PYTORCH and outcome.layers and all(layer.cost is not None for layer in outcome.layers):
        m[c.WORKSPACE_BYTES] = max(layer.cost.workspace_bytes for layer in outcome.layers)
    if outcome.energy is not None:
        e = outcome.energy
        m.update({c.ENERGY_KWH: e.energy_kwh, c.EMISSIONS_KG: e.emissions_kg,
                  c.ENERGY_PER_INFERENCE_J: e.per_inference_j})
    m.update(_tuning_metrics(outcome))
    m.update(compression.metrics(outcome.compression, model.median if model is not None else None))
    return m


def _tuning_metrics(outcome: JobOutcome) -> dict[str, float]:
    """algo=auto: the counters that show whether this run measured or reused, and the best single candidate."""
    tuning, m = outcome.tuning, {}
    if tuning is not None:
        m.update({c.TUNING_MEASURED: tuning.measured, c.TUNING_REUSED: tuning.reused, c.TUNING_S: tuning.seconds,
                  c.TUNED_CONV_MS: tuning.tuned_conv_s * 1e3})
        best = tuning.best_single
        if best is not None:
            m[c.BEST_SINGLE_CONV_MS] = tuning.single_conv_s()[best.label] * 1e3
    if outcome.best_single is not None:
        m[c.BEST_SINGLE_LATENCY_MS] = outcome.best_single.median * 1e3
        if outcome.model is not None:
            m[c.SPEEDUP_VS_BEST_SINGLE] = outcome.best_single.median / outcome.model.median
    return m


def _pair(value: tuple[int, int]):
    """A square stride/padding/dilation as one int (what the report expects), else 'HxW'."""
    return value[0] if value[0] == value[1] else f"{value[0]}x{value[1]}"


def layer_rows(spec: JobSpec, outcome: JobOutcome) -> list[dict]:
    rows = []
    tuned = {choice.name: choice for choice in outcome.tuning.layers} if outcome.tuning is not None else {}
    for layer in outcome.layers:
        g, cost = layer.geometry, layer.cost
        row = {"layer": layer.name, "batch": g.batch, "in_channels": g.in_channels, "out_channels": g.out_channels,
               "kernel_h": g.kernel_h, "kernel_w": g.kernel_w, "stride": _pair(g.stride),
               "padding": _pair(g.padding), "dilation": _pair(g.dilation), "groups": g.groups,
               "in_h": g.in_h, "in_w": g.in_w, "out_h": g.out_h, "out_w": g.out_w, "max_rel_err": layer.max_rel_err}
        if cost is not None:
            row.update({"flops": cost.flops, "min_bytes": cost.min_bytes,
                        "arithmetic_intensity": cost.arithmetic_intensity})
            if spec.algo != PYTORCH:   # PyTorch's GEMM shapes and workspace are its own business
                row.update({"gemm_m": cost.gemm_m, "gemm_n": cost.gemm_n, "gemm_k": cost.gemm_k,
                            "workspace_bytes": cost.workspace_bytes, "gemm_groups": cost.gemm_groups,
                            "kernel": cost.kernel})
        for key, measured in (("latency", layer.ours), ("baseline_latency", layer.baseline)):
            if measured is not None:
                row[f"{key}_ms"] = measured.median * 1e3
        if layer.ours is not None:
            row["latency_p10_ms"], row["latency_p90_ms"] = layer.ours.p10 * 1e3, layer.ours.p90 * 1e3
        choice = tuned.get(layer.name)
        if choice is not None:   # algo=auto
            e = choice.entry
            row.update({"choice": e.choice, "runner_up": e.runner_up or "", "choice_tuned_ms": e.choice_s * 1e3,
                        "runner_up_tuned_ms": None if e.runner_up_s is None else e.runner_up_s * 1e3,
                        "tuning": choice.source})
        rows.append(row)
    return rows


def _measurements(outcome: JobOutcome) -> list[Measurement]:
    found = [outcome.model, outcome.baseline, outcome.best_single]
    for layer in outcome.layers:
        found += [layer.ours, layer.baseline]
    unique: dict[str, Measurement] = {}
    for m in found:
        if m is not None:
            unique.setdefault(m.label, m)
    return list(unique.values())


def write_artifacts(directory: Path, cfg: DictConfig, spec: JobSpec | None, outcome: JobOutcome,
                    trace: str) -> None:
    (directory / c.A_CONFIG).write_text(OmegaConf.to_yaml(cfg, resolve=True))
    if spec is not None and outcome.layers:
        with open(directory / c.A_LAYERS, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(c.LAYER_COLUMNS))
            writer.writeheader()
            writer.writerows(layer_rows(spec, outcome))
    measurements = _measurements(outcome)
    if measurements:
        samples = directory / c.A_SAMPLES_DIR
        for m in measurements:     # label: <implementation>/<target>, e.g. im2col/layer1.0.conv1
            path = samples / f"{m.label}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "w", newline="") as f:
                f.write("sample,seconds\n")
                f.writelines(f"{i},{s:.9g}\n" for i, s in enumerate(m.samples_s))
        with open(samples / "summary.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(measurements[0].stats()))
            writer.writeheader()
            writer.writerows(m.stats() for m in measurements)
    if outcome.tuning is not None and outcome.tuning.db_path.is_file():
        from experiments.tuning import TuningDatabase
        with TuningDatabase(outcome.tuning.db_path) as db:   # a consistent copy, whoever writes meanwhile
            db.snapshot(directory / c.A_TUNING_DB)
    if trace:
        (directory / mlf.A_TRACEBACK).write_text(trace)


def costs(phases: dict[str, float], job_s: float) -> dict[str, float]:
    """Where a job's time went. fixed_cost_s: everything but the timing loops and the energy window;
    harness_overhead_s: that, less the first calls (the correctness check's own compute)."""
    fixed = job_s - phases.get("timing_s", 0.0) - phases.get("energy_s", 0.0)
    return {**phases, "job_s": job_s, "fixed_cost_s": fixed,
            "harness_overhead_s": fixed - phases.get("first_calls_s", 0.0)}


def _log_result(uri, run_id, cfg, spec, outcome: JobOutcome, metrics, status, error, trace, started: float) -> None:
    logging_started = time.perf_counter()
    tags = {c.T_STATUS: status}
    if error:
        tags[c.T_ERROR] = error
    if outcome.device:
        tags[c.T_DEVICE] = outcome.device
    if spec is not None:
        tags[c.T_ENERGY_MODE] = outcome.energy.mode if outcome.energy is not None else "off"
        if outcome.energy_error:
            tags["energy_error"] = outcome.energy_error
        if outcome.tuning is not None and outcome.tuning.best_single is not None:
            tags[c.T_BEST_SINGLE] = outcome.tuning.best_single.label
        tags.update(compression.tags(outcome.compression))
    with tempfile.TemporaryDirectory(prefix="convbench-") as tmp:
        write_artifacts(Path(tmp), cfg, spec, outcome, trace)
        now = time.perf_counter()
        phases = {**outcome.phases, "logging_s": now - logging_started}
        (Path(tmp) / mlf.A_HARNESS).write_text(json.dumps(
            {"job": run_id, **costs(phases, now - started),
             "note": "seconds; logging_s and job_s stop before the artifact upload"}, indent=1))
        mlf.log(uri, run_id, metrics=metrics, tags=tags)
        mlf.log_artifacts(uri, run_id, Path(tmp))
    mlf.finish(uri, run_id, status == STATUS_OK)
    outcome.phases["logging_s"] = time.perf_counter() - logging_started


# --- what the user reads ------------------------------------------------------------------

def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.4g} ms"


def summary_text(report: JobReport, spec: JobSpec | None, outcome: JobOutcome, context: JobContext,
                 uri: str, cost: dict[str, float]) -> str:
    head = f"[convbench] {context.label} {report.name}:"
    if report.failed:
        return f"{head} FAILED: {report.error}" + (f" (run {report.run_id})" if report.run_id else "")
    model, baseline = outcome.model, outcome.baseline
    emulated = ", emulated: not a performance number" if spec.runtime.name == "emulator" else ""
    parts = [f"latency {_ms(model.median)} (p10 {_ms(model.p10)}, p90 {_ms(model.p90)}, n={model.n}"
             + (", NOISY" if model.noisy else "") + emulated + ")"]
    if spec.algo != PYTORCH:
        parts.append(f"PyTorch {_ms(baseline.median)}, speedup {baseline.median / model.median:.3g}x")
    parts.append(f"max_rel_err {outcome.max_rel_err:.2g} (PyTorch fp32 {outcome.baseline_rel_err:.2g}, "
                 f"tolerance {spec.tolerance:g})")
    if outcome.tuning is not None:
        tuning = outcome.tuning
        best = f"; best single {tuning.best_single.label} {_ms(outcome.best_single.median)}" \
            if outcome.best_single is not None else ""
        parts.append(f"tuning {tuning.measured} layers measured, {tuning.reused} reused from {tuning.db_path} "
                     f"in {tuning.seconds:.1f} s{best}")
    parts += compression.summary(outcome.compression, model.median)
    if outcome.energy is not None:
        parts.append(f"energy {outcome.energy.per_inference_j:.3g} J/image ({outcome.energy.mode})")
    elif outcome.energy_error:
        parts.append(f"energy failed: {outcome.energy_error}")
    parts.append(f"fixed cost {cost['fixed_cost_s']:.2f} s")
    text = f"{head} " + "; ".join(parts)
    if not context.in_sweep:
        text += (f"\n  on {outcome.device} ({spec.runtime.name}); job {cost['job_s']:.1f} s: timing loops "
                 f"{cost.get('timing_s', 0):.1f} s, energy window {cost.get('energy_s', 0):.1f} s, fixed cost "
                 f"{cost['fixed_cost_s']:.2f} s (first calls {cost.get('first_calls_s', 0):.2f}, harness "
                 f"{cost['harness_overhead_s']:.2f}: setup, float64 reference, logging)"
                 f"\n  MLflow run {report.run_id} in experiment '{spec.experiment}' at {mlf.resolve_uri(uri)}"
                 f"\n  Open the UI: {mlf.ui_command(uri)}")
    return text
