"""Which runs are compared with which.

Rules, in the order they apply:
- only finished, successful runs are compared (failed ones go to their own table);
- a comparison never mixes devices, backends or cache modes (the *group*), nor models,
  batch sizes or input sizes (the *scenario*);
- emulated timings are kept apart and never compared as performance;
- when several runs measured the same configuration (repeated sweeps; scalar or pytorch
  crossed with GEMM tiles that do not apply to them), the one with the most precise protocol
  counts (paper > default > smoke, PROTOCOL_RANK), and among those the most recent;
- a configuration is the resolved variant (its label: algorithm, GEMM back-end with its rung or the
  user's kernel, tile, precision) with its pruning: two rungs or two kernels at one tile are two
  configurations, never one replacing the other;
- the blocked GEMM is represented by its best tile (lowest median latency) per technique (algorithm,
  GEMM and rung) and scenario.
"""
from __future__ import annotations

from collections.abc import Iterator

import pandas as pd

from analysis.load import BLOCKED, PYTORCH, SCALAR, STATUS_OK
from experiments.conv.ladder import DEFAULT_RUNG, RUNG_NAMES
from experiments.tracking import contract
from experiments.tracking.labels import what_ran

GROUP_KEYS = ["device", "backend", "cache_mode"]
SCENARIO_KEYS = ["model", "batch", "input_size"]
# variant: the whole resolved label (rung and custom kernel included); technique, tile and quant are parts of it;
# custom_sha256: which file of a user's kernel ran (two edits of one kernel file are two configurations)
VARIANT_KEYS = ["variant", "quant", "prune", "prune_amount", "technique", "tile", "custom_sha256"]
CONFIGURATION_KEYS = GROUP_KEYS + SCENARIO_KEYS + VARIANT_KEYS

# Reading order of techniques in tables and legends: the baseline first, scalar last.
_ALGO_ORDER = {PYTORCH: 0, "im2col": 1, "kn2row": 2, SCALAR: 9}


def technique_sort_key(technique: str) -> tuple:
    """PyTorch, then per algorithm its blocked GEMM's rungs in ladder order, then its other GEMMs."""
    algo, _, gemm = technique.partition("+")
    back_end, _, rung = gemm.partition("-")
    step = RUNG_NAMES.index(rung or DEFAULT_RUNG) if back_end == BLOCKED and (rung or DEFAULT_RUNG) in RUNG_NAMES \
        else len(RUNG_NAMES)
    return (_ALGO_ORDER.get(algo, 5), algo, back_end != BLOCKED, step, gemm)


def ordered_techniques(techniques) -> list[str]:
    return sorted(set(techniques), key=technique_sort_key)


def successful(jobs: pd.DataFrame) -> pd.DataFrame:
    return jobs[jobs["status"] == STATUS_OK]


# How precise each bench protocol is (conf/bench/): more samples and longer windows rank higher.
# An unknown or missing protocol (older runs) ranks below smoke.
PROTOCOL_RANK = {"smoke": 1, "default": 2, "paper": 3}


def protocol_rank(bench: pd.Series) -> pd.Series:
    return bench.map(PROTOCOL_RANK).fillna(0)


def best_per_configuration(jobs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per configuration the run with the most precise protocol, newest first among equals; and the
    runs it replaced."""
    ordered = jobs.assign(_rank=protocol_rank(jobs["bench"])).sort_values(["_rank", "start_time", "run_id"])
    best = ordered.drop_duplicates(subset=CONFIGURATION_KEYS, keep="last").drop(columns="_rank")
    return best.sort_index(), jobs.drop(index=best.index)


def dense_fp32(jobs: pd.DataFrame) -> pd.DataFrame:
    return jobs[(jobs["quant"] == "fp32") & (jobs["prune"] == "none")]


def is_blocked(jobs: pd.DataFrame) -> pd.Series:
    return jobs["tile"].notna()


def best_tile_runs(jobs: pd.DataFrame) -> pd.DataFrame:
    """Per blocked technique and scenario, the run at the tile with the lowest median latency."""
    blocked = jobs[is_blocked(jobs) & jobs[contract.LATENCY_MS].notna()]
    if blocked.empty:
        return blocked
    keys = GROUP_KEYS + SCENARIO_KEYS + ["quant", "prune", "prune_amount", "technique"]
    # Ties go to the smaller tile, so the choice does not depend on run order.
    ranked = blocked.sort_values([contract.LATENCY_MS, "tile"])
    return ranked.drop_duplicates(subset=keys, keep="first").sort_index()


def comparison_runs(jobs: pd.DataFrame) -> pd.DataFrame:
    """One run per technique and scenario: every non-blocked variant, blocked at its best tile."""
    return pd.concat([jobs[~is_blocked(jobs)], best_tile_runs(jobs)]).sort_index()


def iterate_groups(jobs: pd.DataFrame) -> Iterator[tuple[tuple, pd.DataFrame]]:
    """(device, backend, cache_mode) and its runs, in a stable order."""
    for key, frame in jobs.groupby(GROUP_KEYS, sort=True, dropna=False):
        yield key, frame


def iterate_scenarios(jobs: pd.DataFrame) -> Iterator[tuple[tuple, pd.DataFrame]]:
    for key, frame in jobs.groupby(SCENARIO_KEYS, sort=True, dropna=False):
        yield key, frame


def group_label(key: tuple) -> str:
    """'AMD EPYC 9B14 · numpy reference on the CPU, not the HIP kernels': the device and what ran on it."""
    device, backend, cache_mode = key
    label = f"{device} · {what_ran(backend)}"
    return f"{label} · {cache_mode} cache" if cache_mode else label


def scenario_label(key: tuple) -> str:
    model, batch, input_size = key
    details = [f"batch {batch}" if batch else "", f"{input_size} px" if input_size else ""]
    details = [d for d in details if d]
    return f"{model} ({', '.join(details)})" if details else str(model)


def technique_label(technique: str, tile) -> str:
    """What a reader sees: 'im2col+blocked (tile 16)' names the tile the numbers come from."""
    return f"{technique} (tile {int(tile)})" if pd.notna(tile) else technique
