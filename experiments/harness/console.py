"""What the user reads of a job: the progress bars and the closing summary line."""
from __future__ import annotations

import sys
import time

from experiments.compress import pipeline as compression
from experiments.tracking import contract as c
from experiments.tracking import labels
from experiments.tracking import mlflow_log as mlf
from experiments.tracking import outbox

from . import machine_load
from .config import PYTORCH, JobSpec
from experiments.measure.energy import MIN_IMAGES, READABLE
from .job import JobOutcome
from .results import JobReport


LOG_EVERY_S = 10.0   # a log file gets a progress line at most this often: a long job shows it moves, a short one says nothing


def progress_bar(total: int, desc: str):
    """A job's progress: tqdm's bar redrawn in place on a terminal; in a log file (where a bar's redraws would
    interleave with the lines) a line now and then with the count and the time left (LogProgress)."""
    if not sys.stderr.isatty():
        return LogProgress(total, desc)
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, leave=False, file=sys.stderr, dynamic_ncols=True, mininterval=0.5)


class LogProgress:
    """tqdm's update()/close() for a log file: "[convbench] layers: 5/20, 12 s, about 36 s left", at most every
    LOG_EVERY_S seconds; the time left assumes the remaining steps take the mean step time so far."""

    def __init__(self, total: int, desc: str, now=time.monotonic, out=None):
        self.total, self.desc, self.now, self.out = total, desc, now, out
        self.done = 0
        self.start = self.last_line = now()

    def update(self, n: int = 1) -> None:
        self.done += n
        t = self.now()
        if t - self.last_line < LOG_EVERY_S:
            return
        self.last_line, elapsed = t, t - self.start
        left = self.total - self.done
        when = f"about {elapsed / self.done * left:.0f} s left" if left > 0 else "its count reached"
        print(f"[convbench] {self.desc}: {self.done}/{self.total}, {elapsed:.0f} s, {when}",
              file=self.out or sys.stderr, flush=True)

    def close(self) -> None:
        """Nothing to clear: a log keeps its lines."""


def _ms(seconds: float) -> str:
    return f"{labels.significant(seconds * 1e3)} ms"


def summary_text(report: JobReport, spec: JobSpec | None, outcome: JobOutcome, label: str, in_sweep: bool,
                 uri: str, cost: dict[str, float]) -> str:
    """The closing line(s) of a job; ``label`` says which job (job 2/3), ``in_sweep`` drops the details."""
    head = f"[convbench] {label} {report.name} ({report.what_ran or 'not run'}):"
    kept = "" if report.outbox is None else (
        f"\n  NOT LOGGED: the tracking store {mlf.shown_uri(uri)} stayed unreachable; the whole run is kept in "
        f"{report.outbox}; upload it with `{outbox.sync_command(report.outbox)}` (python -m experiments.tracking.outbox)")
    if report.failed:
        return f"{head} FAILED: {report.error}" + (f" (run {report.run_id})" if report.run_id else "") + kept
    model, baseline = outcome.model, outcome.baseline
    emulated = spec.runtime.emulated
    if emulated:   # correctness checked in full; each target timed once (timing.ONE_CALL)
        parts = [f"one timed call {_ms(model.median)} (emulated: not a performance number)"]
    else:
        parts = [f"latency {_ms(model.median)} (p10 {_ms(model.p10)}, p90 {_ms(model.p90)}, n={model.n}"
                 + (", NOISY" if model.noisy else "") + ")"]
    if emulated and spec.algo != PYTORCH:
        parts.append(f"PyTorch {_ms(baseline.median)} (no speedup: an emulated time is not performance)")
    elif spec.algo != PYTORCH:
        metrics = report.metrics or {}
        interval = ""
        if c.SPEEDUP_CI95_LOW in metrics:
            low, high = metrics[c.SPEEDUP_CI95_LOW], metrics[c.SPEEDUP_CI95_HIGH]
            interval = f" (the speedup's 95% CI: {labels.interval_text(low, high)}" + (", not significant)" if low <= 1 <= high else ")")
        parts.append(f"PyTorch {_ms(baseline.median)}: {labels.ratio_text(baseline.median / model.median)}{interval}")
    gated = [layer.gate for layer in outcome.layers if layer.gate]
    if gated:   # fp16/int8: each layer exact (experiments/conv/exactness.py); the model's error is a cost
        counts = ", ".join(f"{gated.count(method)} {method}" for method in dict.fromkeys(gated))
        parts.append(f"exactness gate passed ({counts}); max_rel_err {outcome.max_rel_err:.2g} against float64 "
                     f"of the fp32 model")
    else:
        parts.append(f"max_rel_err {outcome.max_rel_err:.2g} (PyTorch fp32 {outcome.baseline_rel_err:.2g}, "
                     f"tolerance {spec.tolerance:g})")
    if outcome.tuning is not None:
        tuning = outcome.tuning
        best = f"; best single {tuning.best_single.label} {_ms(outcome.best_single.median)}" \
            if outcome.best_single is not None else ""
        from_db = tuning.reused - tuning.reused_from_run
        parts.append(f"tuning {tuning.measured} layers measured, {tuning.reused_from_run} reused from this run "
                     f"(same shape as an earlier layer), {from_db} reused from the database {tuning.db_path} "
                     f"in {tuning.seconds:.1f} s{best}")
    parts += compression.summary(outcome.compression, model.median)
    if outcome.energy is not None and emulated:
        parts.append("energy window measured, not shown (emulated)")
    elif outcome.energy is not None:
        e = outcome.energy
        thin = "" if e.window == READABLE else (f"; THIN window: {e.images} images, fewer than {MIN_IMAGES}: "
                                                 f"not comparable, left out of rankings")
        parts.append(f"energy {e.per_inference_j:.3g} J and {e.per_inference_co2_mg:.3g} mg CO2e per image "
                     f"({e.mode}; window total {e.energy_kwh * 1e3:.3g} Wh over {e.duration_s:.1f} s, "
                     f"{e.images} images{thin})")
    elif outcome.energy_error:
        parts.append(f"energy failed: {outcome.energy_error}")
    parts.append(f"fixed cost {cost['fixed_cost_s']:.2f} s")
    busy = machine_load.warning(outcome.load_start, outcome.load_end)
    if busy:
        parts.append(busy)
    text = f"{head} " + "; ".join(parts)
    if not in_sweep:
        text += (f"\n  on {outcome.device} ({spec.runtime.name}); job {cost['job_s']:.1f} s: timing loops "
                 f"{cost.get('timing_s', 0):.1f} s, energy window {cost.get('energy_s', 0):.1f} s, fixed cost "
                 f"{cost['fixed_cost_s']:.2f} s (first calls {cost.get('first_calls_s', 0):.2f}, harness "
                 f"{cost['harness_overhead_s']:.2f}: setup, float64 reference, logging)"
                 + ("" if report.outbox else
                    f"\n  MLflow run {report.run_id} in experiment '{spec.experiment}' at {mlf.shown_uri(uri)}"
                    f"\n  Open the UI: {mlf.ui_command(uri)}"))
    return text + kept
