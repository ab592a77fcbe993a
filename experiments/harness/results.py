"""A job's outcome in the MLflow contract's terms: metrics, resolved params, layers.csv rows, costs."""
from __future__ import annotations

from dataclasses import dataclass

from experiments.compress import pipeline as compression
from experiments.conv import Variant
from experiments.tracking import contract as c

from experiments.measure import bootstrap

from . import machine_load
from .config import PYTORCH, JobSpec
from .job import JobOutcome

STATUS_OK, STATUS_FAILED, STATUS_SKIPPED = "ok", "failed", "skipped"


@dataclass
class JobReport:
    """What a job returns to Hydra (and, in a sweep, writes to the sweep state)."""

    name: str
    status: str
    error: str = ""
    run_id: str | None = None
    num: int | None = None
    metrics: dict | None = None
    outbox: str | None = None      # the outbox entry that keeps the run while its store is unreachable
    what_ran: str = ""          # in words (experiments/tracking/labels.py)
    emulated: bool = False      # the emulator ran it: correctness only, never ranked
    scenario: str = ""          # what its PyTorch baseline ran: jobs of one scenario compare PyTorch medians
    tags: dict | None = None    # the outcome's tags the sweep summary reads (energy window, machine load)

    @property
    def failed(self) -> bool:
        return self.status == STATUS_FAILED


def baseline_scenario(spec: JobSpec) -> str:
    """What PyTorch ran in this job, in words: jobs that share it should measure the same PyTorch time."""
    prune = "dense" if spec.prune == "none" else f"{spec.prune} {spec.prune_amount:g}"
    height, width = spec.input_size
    return (f"{spec.model}, batch {spec.batch_size}, {height}x{width}, {prune}, {spec.quant}, "
            f"{spec.cache_mode} cache, {spec.runtime.name}")


def resolved_params(spec: JobSpec) -> dict[str, str]:
    """What the config resolved to, logged beside the raw config: the variant's fields (variant.*); the
    report reads these rather than re-deriving them (the resolved backend is the backend tag)."""
    return spec.variant.params()


def contract_metrics(spec: JobSpec, outcome: JobOutcome) -> dict[str, float]:
    m: dict[str, float] = {}
    if outcome.max_rel_err is not None:
        m[c.MAX_REL_ERR] = outcome.max_rel_err
    if outcome.compile_s is not None:
        m[c.COMPILE_S] = outcome.compile_s
    model, baseline = outcome.model, outcome.baseline
    if model is not None:
        m.update({c.LATENCY_MS: model.median * 1e3, c.LATENCY_SAMPLES: model.n,
                  c.GFLOPS: outcome.conv_flops / model.median / 1e9})
        if model.has_spread:   # one call (emulated) has no percentiles
            m.update({c.LATENCY_P10_MS: model.p10 * 1e3, c.LATENCY_P90_MS: model.p90 * 1e3,
                      c.LATENCY_IQR_REL: model.iqr_rel})
    if baseline is not None:
        m[c.BASELINE_LATENCY_MS] = baseline.median * 1e3
    # an emulated time is no performance: no speedup and no energy per image to be shown or ranked anywhere (the
    # UI's columns included); the raw latencies and the window's totals stay logged
    emulated = spec.runtime.emulated
    if model is not None and baseline is not None and not emulated:
        m[c.SPEEDUP_VS_BASELINE] = baseline.median / model.median
        interval = bootstrap.ratio_of_medians(baseline.samples_s, model.samples_s) if model is not baseline else None
        if interval is not None:
            m[c.SPEEDUP_CI95_LOW], m[c.SPEEDUP_CI95_HIGH] = interval.low, interval.high
    if outcome.layers and all(layer.ours is not None for layer in outcome.layers):
        m[c.CONV_LATENCY_MS] = sum(layer.ours.median for layer in outcome.layers) * 1e3
    if spec.algo != PYTORCH and outcome.layers and all(layer.cost is not None for layer in outcome.layers):
        m[c.WORKSPACE_BYTES] = max(layer.cost.workspace_bytes for layer in outcome.layers)
    if outcome.energy is not None:
        e = outcome.energy
        m.update({c.ENERGY_KWH: e.energy_kwh, c.EMISSIONS_KG: e.emissions_kg, c.ENERGY_IMAGES: e.images})
        if not emulated:
            m.update({c.ENERGY_PER_INFERENCE_J: e.per_inference_j, c.CO2_PER_INFERENCE_MG: e.per_inference_co2_mg})
    for name, shot in ((c.LOAD_AVG_START, outcome.load_start), (c.LOAD_AVG_END, outcome.load_end)):
        if shot is not None:
            m[name] = shot.load_avg_1min
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
    """layers.csv's rows, keyed by the contract's column names (c.LAYER)."""
    L = c.LAYER
    rows = []
    tuned = {choice.name: choice for choice in outcome.tuning.layers} if outcome.tuning is not None else {}
    for layer in outcome.layers:
        g, cost = layer.geometry, layer.cost
        row = {L.layer: layer.name, L.batch: g.batch, L.in_channels: g.in_channels, L.out_channels: g.out_channels,
               L.kernel_h: g.kernel_h, L.kernel_w: g.kernel_w, L.stride: _pair(g.stride),
               L.padding: _pair(g.padding), L.dilation: _pair(g.dilation), L.groups: g.groups,
               L.in_h: g.in_h, L.in_w: g.in_w, L.out_h: g.out_h, L.out_w: g.out_w, L.max_rel_err: layer.max_rel_err}
        if layer.gate:   # fp16/int8 jobs
            row.update({L.gate: layer.gate, L.precision_rel_err: layer.precision_rel_err})
        if cost is not None:
            row.update({L.flops: cost.flops, L.min_bytes: cost.min_bytes,
                        L.arithmetic_intensity: cost.arithmetic_intensity})
            if spec.algo != PYTORCH:   # PyTorch's GEMM shapes and workspace are its own business
                row.update({L.gemm_m: cost.gemm_m, L.gemm_n: cost.gemm_n, L.gemm_k: cost.gemm_k,
                            L.workspace_bytes: cost.workspace_bytes, L.gemm_groups: cost.gemm_groups,
                            L.variant: cost.variant, L.tile: Variant.parse(cost.variant).tile})
        for column, measured in ((L.latency_ms, layer.ours), (L.baseline_latency_ms, layer.baseline)):
            if measured is not None:
                row[column] = measured.median * 1e3
        if layer.ours is not None and layer.ours.has_spread:
            row[L.latency_p10_ms], row[L.latency_p90_ms] = layer.ours.p10 * 1e3, layer.ours.p90 * 1e3
        choice = tuned.get(layer.name)
        if choice is not None:   # algo=auto
            e = choice.entry
            row.update({L.choice: e.choice, L.runner_up: e.runner_up or "", L.choice_tuned_ms: e.choice_s * 1e3,
                        L.runner_up_tuned_ms: None if e.runner_up_s is None else e.runner_up_s * 1e3,
                        L.tuning: choice.source})
        rows.append(row)
    return rows


def costs(phases: dict[str, float], job_s: float) -> dict[str, float]:
    """Where a job's time went. fixed_cost_s: everything but the timing loops and the energy window;
    harness_overhead_s: that, less the first calls (the correctness check's own compute)."""
    fixed = job_s - phases.get("timing_s", 0.0) - phases.get("energy_s", 0.0)
    return {**phases, "job_s": job_s, "fixed_cost_s": fixed,
            "harness_overhead_s": fixed - phases.get("first_calls_s", 0.0)}


def load_tags(outcome: JobOutcome) -> dict[str, str]:
    """machine_quiet (yes/no) and, when not quiet, what was busy (experiments/harness/machine_load.py)."""
    shots = [shot for shot in (outcome.load_start, outcome.load_end) if shot is not None]
    if not shots:
        return {}
    warning = machine_load.warning(outcome.load_start, outcome.load_end)
    return {c.T_QUIET: "no" if warning else "yes", **({c.T_BUSY_PROCESSES: warning[:500]} if warning else {})}
