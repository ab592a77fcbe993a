"""MLflow runs -> one tidy pandas row per job; layers.csv files -> one row per conv layer.

Column names of the job frame: the contract's metric names as they are (latency_ms, ...),
plus short names for params and tags (model, algo, gemm, tile, device, backend, ...).
algo, gemm, tile, quant and variant (its label) come from the resolved variant the harness logged
(variant.* params, experiments/conv/variant.py); a run logged before those params existed gets its
variant by the same rule (Variant.of) from its raw config. A metric a run did not log is NaN, so
older runs load like newer ones.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from experiments.conv.variant import CUSTOM, GEMM_ALGORITHMS, Variant
from experiments.tracking import contract

PYTORCH = "pytorch"
SCALAR = "scalar"
BLOCKED = "blocked"

STATUS_OK, STATUS_FAILED, STATUS_RUNNING = "ok", "failed", "running"

# Bit width of each quantization scheme, for "speedup against bit width".
QUANT_BITS = {"fp32": 32, "tf32": 19, "bf16": 16, "fp16": 16, "int8": 8, "int4": 4}

JOB_COLUMNS = [
    "run_id", "run_name", "experiment", "start_time", "status", "error",
    "model", "batch", "input_size", "algo", "gemm", "tile", "variant", "technique", "custom_sha256",
    "device", "backend", "runtime", "timing", "emulated", "cache_mode", "bench",
    "quant", "prune", "prune_amount", "weights", "fp32_layer_names", "precision_worst_layer",
    "sweep_id", "git_sha", "git_dirty", "kernel_hash", "energy_mode", "energy_window", "machine_quiet", "best_single",
    "versions", "bench_params",
    *contract.METRICS, *contract.AUTO_METRICS, *contract.GPU_METRICS, *contract.COMPRESSION_METRICS,
]
# Metrics loaded into the job frame: the contract's, and those of algo=auto, GPU and pruned/quantized jobs
# (NaN elsewhere).
LOADED_METRICS = (*contract.METRICS, *contract.AUTO_METRICS, *contract.GPU_METRICS, *contract.COMPRESSION_METRICS)


def technique(variant: Variant) -> str:
    """The report's grouping of variants across tiles: the variant but its tile and dtype. pytorch, scalar, or
    algorithm+GEMM with its rung where it is not the default one (im2col+vendor, im2col+blocked,
    im2col+blocked-warptile) or the user's kernel (im2col+custom-NAME): two kernels are never one technique."""
    if not variant.uses_gemm:
        return variant.algo
    segment, tile = variant.gemm_label, f"-t{variant.tile}"
    return f"{variant.algo}+{segment[:-len(tile)] if variant.tile is not None and segment.endswith(tile) else segment}"


def technique_of(algo: str, gemm: str | None, custom: str | None = None, rung: str | None = None) -> str:
    """technique() of a choice: technique_of("im2col", "blocked", rung="fold") == "im2col+blocked-fold"; a
    user's kernel by its name: technique_of("im2col", "custom", "mygemm") == "im2col+custom-mygemm"."""
    if gemm == CUSTOM and algo in GEMM_ALGORITHMS:
        return f"{algo}+{CUSTOM}-{custom}" if custom else f"{algo}+{CUSTOM}"
    return technique(Variant.of(algo, gemm, rung=rung))


def variant_of(params: dict) -> Variant:
    """The run's resolved variant: its variant.label param, else its raw config by Variant.of."""
    if contract.P_VARIANT_LABEL in params:
        return Variant.parse(params[contract.P_VARIANT_LABEL])
    raw = {key: params.get(name, "").strip().lower() for key, name in
           (("algo", contract.P_ALGO), ("gemm", contract.P_GEMM), ("dtype", contract.P_QUANT))}
    return Variant.of(raw["algo"], raw["gemm"] or None, _int_or_none(params.get(contract.P_TILE)),
                      raw["dtype"] or "fp32")


def _status(tags: dict, run_status: str) -> str:
    tagged = tags.get(contract.T_STATUS)
    if tagged in (STATUS_OK, STATUS_FAILED):
        return tagged
    if run_status in ("FAILED", "KILLED"):
        return STATUS_FAILED
    # The harness tags a job "running" until it logs its result: a job killed mid-way keeps
    # that tag, and its metrics are incomplete. Only untagged runs (older harness) that
    # MLflow saw finish count as successful.
    if tagged is None and run_status == "FINISHED":
        return STATUS_OK
    return STATUS_RUNNING


def _int_or_none(text):
    try:
        return int(float(text))
    except (TypeError, ValueError):
        return None


def _weights(param) -> str:
    """model.weights as logged (null for random initialisation) -> the label results use."""
    return "random" if param in (None, "", "None", "none", "null") else str(param)


def _float_or(text, default):
    try:
        return float(text)
    except (TypeError, ValueError):
        return default


def job_row(run, experiment_name: str = "") -> dict | None:
    """One run as a flat dict, or None for runs that are not jobs (sweep parents, strays)."""
    params, tags, metrics = run.data.params, run.data.tags, run.data.metrics
    if tags.get(contract.T_RUN_KIND) == "parent" or contract.P_ALGO not in params:
        return None
    variant = variant_of(params)
    backend = tags.get(contract.T_BACKEND) or params.get(contract.P_BACKEND, "unknown")
    runtime = tags.get(contract.T_RUNTIME, "")
    timing = tags.get(contract.T_TIMING) or ("emulated" if backend == "emulator" else "measured")
    row = {
        "run_id": run.info.run_id,
        "run_name": run.info.run_name or run.info.run_id[:8],
        "experiment": experiment_name,
        "start_time": pd.to_datetime(run.info.start_time, unit="ms", utc=True),
        "status": _status(tags, run.info.status),
        "error": tags.get(contract.T_ERROR, ""),
        "model": params.get(contract.P_MODEL, "unknown model"),
        "batch": params.get(contract.P_BATCH, ""),
        "input_size": params.get(contract.P_INPUT_SIZE, ""),
        "algo": variant.algo,
        "gemm": variant.gemm,
        "tile": variant.tile,
        "variant": variant.label,
        "technique": technique(variant),
        "custom_sha256": params.get(contract.P_VARIANT_CUSTOM_SHA256, ""),   # gemm=custom: which file ran
        "device": tags.get(contract.T_DEVICE) or "unknown device",
        "backend": backend,
        "runtime": runtime,
        "timing": timing,
        # Emulated kernels run on the CPU through fibers: correct, but their time means nothing.
        "emulated": timing == "emulated" or backend == "emulator" or runtime == "emulated",
        "cache_mode": params.get(contract.P_CACHE_MODE, ""),
        "bench": params.get(contract.P_BENCH, ""),
        "quant": variant.dtype,
        "prune": params.get(contract.P_PRUNE, "none").strip().lower() or "none",
        "prune_amount": _float_or(params.get(contract.P_PRUNE_AMOUNT), 0.0),
        "weights": tags.get(contract.T_WEIGHTS) or _weights(params.get(contract.P_WEIGHTS)),
        "fp32_layer_names": tags.get(contract.T_FP32_LAYERS, ""),
        "precision_worst_layer": tags.get(contract.T_PRECISION_WORST_LAYER, ""),
        "sweep_id": tags.get(contract.T_SWEEP_ID, ""),
        "git_sha": tags.get(contract.T_GIT_SHA, ""),
        "git_dirty": tags.get(contract.T_GIT_DIRTY, ""),
        "kernel_hash": tags.get(contract.T_KERNEL_HASH, ""),
        "energy_mode": tags.get(contract.T_ENERGY_MODE, ""),
        "energy_window": tags.get(contract.T_ENERGY_WINDOW, ""),   # thin: too few images to compare; "" older runs
        "machine_quiet": tags.get(contract.T_QUIET, ""),
        "best_single": tags.get(contract.T_BEST_SINGLE, ""),
        "versions": {
            key[len(contract.T_VERSION_PREFIX):]: value
            for key, value in tags.items()
            if key.startswith(contract.T_VERSION_PREFIX)
        },
        "bench_params": {k: v for k, v in params.items() if k.startswith("bench.")},
    }
    if row["prune"] == "none":
        row["prune_amount"] = 0.0
    for name in LOADED_METRICS:
        row[name] = float(metrics[name]) if name in metrics else np.nan
    return row


def jobs_frame(runs, experiment_names: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per job run (parents skipped), columns JOB_COLUMNS."""
    experiment_names = experiment_names or {}
    rows = [job_row(run, experiment_names.get(run.info.experiment_id, "")) for run in runs]
    frame = pd.DataFrame([row for row in rows if row is not None], columns=JOB_COLUMNS)
    frame["tile"] = frame["tile"].astype("Int64")
    frame["emulated"] = frame["emulated"].astype(bool)
    for name in LOADED_METRICS:
        frame[name] = frame[name].astype(float)
    return frame


def read_layers(path: Path, run_id: str) -> pd.DataFrame:
    """A layers.csv as a frame with every contract column (missing ones NaN) and its row order."""
    layers = pd.read_csv(path).rename(columns=contract.FORMER_LAYER_COLUMNS)
    for column in contract.LAYER_COLUMNS:
        if column not in layers:
            layers[column] = np.nan
    layers = layers[list(contract.LAYER_COLUMNS)].copy()
    layers[contract.LAYER.layer] = layers[contract.LAYER.layer].astype(str)
    layers.insert(0, "layer_index", range(len(layers)))
    layers.insert(0, "run_id", run_id)
    return layers


def layers_frame(paths: dict[str, Path]) -> pd.DataFrame:
    """All layers.csv of the given runs (run_id -> path) in one long frame."""
    frames = [read_layers(path, run_id) for run_id, path in paths.items()]
    if not frames:
        return pd.DataFrame(columns=["run_id", "layer_index", *contract.LAYER_COLUMNS])
    return pd.concat(frames, ignore_index=True)
