"""The report's tables, computed from job rows and layer rows (no MLflow, no plotting).

Each builder returns a DataFrame whose column names carry their units, and a list of
notes for the reader (a metric these runs did not log, a fallback that was used).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.load import PYTORCH, QUANT_BITS
from experiments.conv.accounting import ELEMENT_BYTES, FLOAT32_BYTES
from analysis.samples import iqr_rel, speedup_interval
from experiments.measure.bootstrap import ratio_of_medians
from experiments.measure.energy import MIN_IMAGES as MIN_ENERGY_IMAGES
from experiments.measure.energy import THIN as THIN_WINDOW
from experiments.measure.timing import NOISY_IQR_REL
from analysis.selection import (
    comparison_runs, dense_fp32, ordered_techniques, technique_label, technique_sort_key,
)
from experiments.tracking import contract as c
from experiments.tracking import drift
from experiments.tracking.contract import LAYER as L   # layers.csv columns


TECHNIQUE = "technique"
TILE = "tile"
MEDIAN_MS = "median [ms]"
P10_MS = "p10 [ms]"
P90_MS = "p90 [ms]"
IQR_REL = "IQR/median"
SPEEDUP = "speedup vs PyTorch [×]"
CI_LOW = "speedup 95% CI low [×]"
CI_HIGH = "speedup 95% CI high [×]"
SIGNIFICANT = "significant"
NOT_SIGNIFICANT = "not significant"
PYTORCH_SAME_JOB_MS = "PyTorch same job [ms]"
ENERGY_PER_IMAGE = "energy per image [J]"
CO2_PER_IMAGE = "CO2 per image [mg CO2e]"
BASELINE_SOURCE = "PyTorch reference"
RUN = "run"
PROTOCOL = "protocol"
NOISY_LAYER = f"noisy (IQR/median > {NOISY_IQR_REL:.0%})"

SAME_JOB = "same job"
PYTORCH_RUN = "PyTorch run"


def sort_by_technique(frame: pd.DataFrame, column: str = TECHNIQUE) -> pd.DataFrame:
    keys = frame[column].map(technique_sort_key)
    return frame.assign(_key=keys).sort_values(["_key"] + ([TILE] if TILE in frame else []),
                                               kind="stable").drop(columns="_key")


def drop_unlogged(frame: pd.DataFrame, columns: dict[str, str], notes: list[str]) -> pd.DataFrame:
    """Leave out columns no run logged (older harness), with a note naming the metric."""
    for column, metric in columns.items():
        if column in frame and frame[column].isna().all():
            frame = frame.drop(columns=column)
            notes.append(f"`{metric}` was not logged by these runs: column '{column}' left out.")
        elif column in frame and frame[column].isna().any():
            missing = int(frame[column].isna().sum())
            notes.append(f"`{metric}` is missing from {missing} run(s): shown as —.")
    return frame


def pytorch_latency(runs: pd.DataFrame) -> float:
    rows = runs[runs["technique"] == PYTORCH]
    return float(rows[c.LATENCY_MS].iloc[0]) if len(rows) else np.nan


def speedups(runs: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Speedup over PyTorch of each run, and where its PyTorch time came from.

    The harness times PyTorch side by side in every job (baseline_latency_ms); that ratio is
    immune to drift between jobs, so it is preferred. Runs without it fall back to the
    separate PyTorch run of the same scenario.
    """
    separate = pytorch_latency(runs)
    same_job = runs[c.BASELINE_LATENCY_MS] / runs[c.LATENCY_MS]
    fallback = separate / runs[c.LATENCY_MS]
    speedup = same_job.where(same_job.notna(), fallback)
    source = pd.Series(np.where(same_job.notna(), SAME_JOB,
                                np.where(fallback.notna(), PYTORCH_RUN, "")), index=runs.index)
    is_pytorch = runs["technique"] == PYTORCH
    speedup[is_pytorch] = 1.0
    source[is_pytorch] = ""
    return speedup, source


def speedup_intervals(runs: pd.DataFrame, samples: dict | None) -> tuple[pd.Series, pd.Series]:
    """95% bootstrap interval of each run's same-job speedup: from its raw samples (artifact) where the
    report has them, else as the job logged it (the same computation); NaN for PyTorch's own runs."""
    low, high = [], []
    for _, run in runs.iterrows():
        own = (samples or {}).get(run["run_id"])
        interval = speedup_interval(own, run["algo"]) if own else None
        if interval is not None:
            low.append(interval.low), high.append(interval.high)
        else:
            low.append(run.get(c.SPEEDUP_CI95_LOW, np.nan)), high.append(run.get(c.SPEEDUP_CI95_HIGH, np.nan))
    return pd.Series(low, index=runs.index, dtype=float), pd.Series(high, index=runs.index, dtype=float)


def significance(low: pd.Series, high: pd.Series) -> pd.Series:
    """'not significant' where the interval contains 1, 'yes' where it excludes it, '' without one."""
    contains_one = (low <= 1) & (high >= 1)
    return pd.Series(np.where(low.isna(), "", np.where(contains_one, NOT_SIGNIFICANT, "yes")), index=low.index)


def baseline_drifts(runs: pd.DataFrame) -> list[drift.Drift]:
    """Per sweep and scenario (what PyTorch ran), PyTorch's medians across the jobs where they drifted
    (experiments/tracking/drift.py: the rule the sweep's summary applies), jobs named by their runs."""
    keys = ["sweep_id", "model", "batch", "input_size", "quant", "prune", "prune_amount"]
    found = []
    for key, group in runs[runs[c.BASELINE_LATENCY_MS].notna()].groupby(keys, sort=True, dropna=False):
        sweep, model, batch, input_size = key[:4]
        scenario = f"sweep {sweep or '(none)'}, {model}, batch {batch}, {input_size} px, {key[4]}, {key[5]}"
        medians = dict(zip(group["run_name"] + " (" + group["run_id"].str[:8] + ")", group[c.BASELINE_LATENCY_MS]))
        found.append(drift.baseline_drift(medians, scenario))
    return [d for d in found if d is not None]


def co2_per_image_mg(runs: pd.DataFrame) -> pd.Series:
    """Logged by the job; for older runs, energy per image x the run's carbon intensity (window CO2 / energy)."""
    logged = runs[c.CO2_PER_INFERENCE_MG] if c.CO2_PER_INFERENCE_MG in runs else pd.Series(np.nan, index=runs.index)
    intensity_kg_per_kwh = runs[c.EMISSIONS_KG] / runs[c.ENERGY_KWH].replace(0, np.nan)
    derived = runs[c.ENERGY_PER_INFERENCE_J] / 3.6e6 * intensity_kg_per_kwh * 1e6
    return logged.where(logged.notna(), derived)


def end_to_end(runs: pd.DataFrame, samples: dict | None = None) -> tuple[pd.DataFrame, list[str]]:
    """One scenario's comparison runs -> median, p10-p90, speedup with its interval, energy per technique."""
    notes: list[str] = []
    speedup, source = speedups(runs)
    low, high = speedup_intervals(runs, samples)
    table = pd.DataFrame({
        TECHNIQUE: runs["technique"],
        TILE: runs["tile"],
        MEDIAN_MS: runs[c.LATENCY_MS],
        P10_MS: runs[c.LATENCY_P10_MS],
        P90_MS: runs[c.LATENCY_P90_MS],
        IQR_REL: runs[c.LATENCY_IQR_REL],
        # Shown so every speedup can be checked: it is this column over the median.
        PYTORCH_SAME_JOB_MS: runs[c.BASELINE_LATENCY_MS].where(runs["technique"] != PYTORCH),
        SPEEDUP: speedup,
        CI_LOW: low,
        CI_HIGH: high,
        SIGNIFICANT: significance(low, high),
        # a thin window's per-image figure is in the energy table, marked, and compared nowhere
        ENERGY_PER_IMAGE: runs[c.ENERGY_PER_INFERENCE_J].where(~thin_window(runs)),
        CO2_PER_IMAGE: co2_per_image_mg(runs).where(~thin_window(runs)),
        BASELINE_SOURCE: source,
        PROTOCOL: runs["bench"].replace("", "unknown"),
        RUN: runs["run_name"],
    })
    table = sort_by_technique(table).reset_index(drop=True)
    for column in (CI_LOW, CI_HIGH, SIGNIFICANT, ENERGY_PER_IMAGE, CO2_PER_IMAGE):
        if table[column].isna().all() or (table[column] == "").all():
            table = table.drop(columns=column)
    table = drop_unlogged(table, {P10_MS: c.LATENCY_P10_MS, P90_MS: c.LATENCY_P90_MS,
                                  IQR_REL: c.LATENCY_IQR_REL}, notes)
    if table[PYTORCH_SAME_JOB_MS].isna().all():
        table = table.drop(columns=PYTORCH_SAME_JOB_MS)
    if IQR_REL in table and (table[IQR_REL] > NOISY_IQR_REL).any():
        noisy = ", ".join(table.loc[table[IQR_REL] > NOISY_IQR_REL, TECHNIQUE])
        notes.append(f"Noisy (IQR/median > {NOISY_IQR_REL:.0%}): {noisy}.")
    if (table[BASELINE_SOURCE] == PYTORCH_RUN).any():
        notes.append("Some jobs logged no side-by-side PyTorch time: their speedup uses the "
                     "separate PyTorch run of this scenario (column 'PyTorch reference').")
    elif BASELINE_SOURCE in table:
        table = table.drop(columns=BASELINE_SOURCE)
    if table[TILE].isna().all():
        table = table.drop(columns=TILE)
    if thin_window(runs).any():
        notes.append(f"Energy per image left out for {', '.join(runs.loc[thin_window(runs), 'technique'])}: its energy "
                     f"window ran fewer than {MIN_ENERGY_IMAGES} images (thin; see the energy table).")
    return table, notes


# --- per layer ------------------------------------------------------------------------

def _layers_of(layers: pd.DataFrame, run_id: str) -> pd.DataFrame:
    return layers[layers["run_id"] == run_id].sort_values("layer_index")


def layer_shapes(runs: pd.DataFrame, layers: pd.DataFrame) -> pd.DataFrame:
    """Each conv layer's shape, from the first run of the scenario that logged layers.csv."""
    for run_id in runs["run_id"]:
        own = _layers_of(layers, run_id)
        if len(own):
            return own.set_index(L.layer)
    return pd.DataFrame()


def shape_text(row) -> str:
    """'64→128 3×3/s2 56×56' : channels, kernel and stride, input plane."""
    def num(x):  # stride/padding of non-square layers arrive as "2x1"
        if pd.isna(x):
            return "?"
        try:
            return str(int(float(x)))
        except (TypeError, ValueError):
            return str(x)
    return (f"{num(row['in_channels'])}→{num(row['out_channels'])} "
            f"{num(row['kernel_h'])}×{num(row['kernel_w'])}/s{num(row['stride'])} "
            f"{num(row['in_h'])}×{num(row['in_w'])}")


def layer_latency_matrix(runs: pd.DataFrame, layers: pd.DataFrame) -> pd.DataFrame:
    """Layers (rows, model order) x technique labels (columns): per-layer median latency [ms]."""
    columns = {}
    for _, run in sort_by_technique(runs).iterrows():
        own = _layers_of(layers, run["run_id"])
        if own.empty:
            continue
        columns[technique_label(run["technique"], run["tile"])] = own.set_index(L.layer)[c.LATENCY_MS]
    pytorch_missing = not any(label == PYTORCH for label in columns)
    if pytorch_missing:
        # No PyTorch run with layers: use the side-by-side baseline one job timed per layer.
        for run_id in runs["run_id"]:
            own = _layers_of(layers, run_id)
            if own[c.BASELINE_LATENCY_MS].notna().any():
                columns = {PYTORCH: own.set_index(L.layer)[c.BASELINE_LATENCY_MS], **columns}
                break
    if not columns:
        return pd.DataFrame()
    order = layer_shapes(runs, layers).index
    return pd.DataFrame(columns).reindex(order)


def layer_samples(runs: pd.DataFrame, samples: dict | None) -> dict[str, dict[str, np.ndarray]]:
    """Raw per-call times of each layer, keyed like layer_latency_matrix's columns: label -> layer -> seconds.
    PyTorch's come from its own run, else from the side-by-side baseline of the first job that has them."""
    found: dict[str, dict[str, np.ndarray]] = {}
    for _, run in sort_by_technique(runs).iterrows():
        own = (samples or {}).get(run["run_id"]) or {}
        prefix = f"{run['algo']}/"
        layers = {target[len(prefix):]: values for target, values in own.items()
                  if target.startswith(prefix) and target != f"{run['algo']}/model"}
        if layers:
            found[technique_label(run["technique"], run["tile"])] = layers
        if PYTORCH not in found or run["algo"] == PYTORCH:
            base = {target[len("pytorch/"):]: values for target, values in own.items()
                    if target.startswith("pytorch/") and target not in ("pytorch/model", "pytorch/dense_model")}
            if base:
                found[PYTORCH] = base
    return found


def layer_noise(matrix: pd.DataFrame, samples: dict[str, dict[str, np.ndarray]]) -> pd.DataFrame:
    """IQR/median of every cell of the layer matrix, from its raw samples (NaN where there are none)."""
    return pd.DataFrame({label: [iqr_rel(samples.get(label, {}).get(layer)) for layer in matrix.index]
                         for label in matrix.columns}, index=matrix.index)


def winner_is_significant(matrix: pd.DataFrame, samples: dict[str, dict[str, np.ndarray]]) -> pd.Series:
    """Per layer: True when the fastest is faster than the runner-up beyond noise (95% interval of
    runner-up median / fastest median above 1), False for a tie, NA without samples of both."""
    verdicts = []
    for layer, row in matrix.iterrows():
        ranked = row.dropna().sort_values()
        if len(ranked) < 2:
            verdicts.append(pd.NA)
            continue
        first, second = (samples.get(label, {}).get(layer) for label in ranked.index[:2])
        interval = ratio_of_medians(second, first) if first is not None and second is not None else None
        verdicts.append(pd.NA if interval is None else interval.low > 1)
    return pd.Series(verdicts, index=matrix.index, dtype="boolean")


def per_layer(matrix: pd.DataFrame, shapes: pd.DataFrame, noise: pd.DataFrame | None = None,
              significant: pd.Series | None = None) -> pd.DataFrame:
    """Latency per layer and technique with its spread (IQR/median), the fastest and its speedup over
    PyTorch; a fastest whose lead over the runner-up is within the noise is marked a tie."""
    table = pd.DataFrame({"layer": matrix.index})
    table["shape (Cin→Cout k×k/s H×W)"] = [shape_text(shapes.loc[name]) for name in matrix.index]
    table["MFLOP"] = shapes.loc[matrix.index, L.flops].to_numpy() / 1e6
    for label in matrix.columns:
        table[f"{label} [ms]"] = matrix[label].to_numpy()
        if noise is not None and noise[label].notna().any():
            table[f"{label} IQR/median"] = noise[label].to_numpy()
    fastest = fastest_per_layer(matrix)
    if significant is not None:
        runner_up = matrix.apply(lambda row: row.dropna().sort_values().index[1]
                                 if row.notna().sum() > 1 else None, axis=1)
        tie = significant.eq(False).fillna(False)    # NA (no samples) is no verdict, not a tie
        fastest = pd.Series([f"{name} (tie with {second})" if is_tie else name
                             for name, second, is_tie in zip(fastest, runner_up, tie)], index=matrix.index)
    table["fastest"] = fastest.to_numpy()
    if noise is not None:
        noisy = noise.gt(NOISY_IQR_REL)
        table[NOISY_LAYER] = [", ".join(noise.columns[flags]) for flags in noisy.to_numpy()]
    if PYTORCH in matrix:   # PyTorch's time over our best one: below 1 where PyTorch is the fastest
        best_of_ours = matrix.drop(columns=PYTORCH).min(axis=1)
        table["fastest vs PyTorch [×]"] = (matrix[PYTORCH] / best_of_ours).to_numpy()
    return table


def fastest_per_layer(matrix: pd.DataFrame) -> pd.Series:
    complete = matrix.dropna(how="all")
    winners = complete.idxmin(axis=1)
    return winners.reindex(matrix.index)


def byte_scale(values) -> tuple[float, str]:
    """Divisor and unit that keep the largest value readable."""
    largest = np.nanmax(np.asarray(values, dtype=float)) if len(values) else 0.0
    for divisor, unit in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if largest >= divisor:
            return divisor, unit
    return 1.0, "B"


def layer_anatomy(runs: pd.DataFrame, layers: pd.DataFrame) -> pd.DataFrame:
    """Per layer and algorithm: GEMM dimensions, workspace and arithmetic intensity.

    These do not depend on the GEMM back-end or tile, so one run per algorithm suffices.
    They are the 'why' beside the latencies: im2col's workspace grows with k*k*C_in (input
    inflation), kn2row's with k*k*C_out (output inflation), scalar has none but no reuse.
    """
    shapes = layer_shapes(runs, layers)
    if shapes.empty:
        return pd.DataFrame()
    table = pd.DataFrame({"layer": shapes.index,
                          "filter": [f"{int(h)}×{int(w)}" if pd.notna(h) else "?"
                                     for h, w in zip(shapes[L.kernel_h], shapes[L.kernel_w])]})
    # Compulsory intensity: FLOPs over the traffic any algorithm pays (input, filter, output).
    table["compulsory AI [FLOP/B]"] = (shapes[L.flops] / shapes[L.min_bytes]).to_numpy()
    per_algo = {}
    for _, run in sort_by_technique(runs).iterrows():
        own = _layers_of(layers, run["run_id"])
        # PyTorch's workspace is cuDNN's/oneDNN's own business: the accounting does not know it.
        if run["algo"] != PYTORCH and run["algo"] not in per_algo and len(own):
            per_algo[run["algo"]] = own.set_index(L.layer).reindex(shapes.index)
    all_workspace = pd.concat([frame[L.workspace_bytes] for frame in per_algo.values()]) \
        if per_algo else pd.Series(dtype=float)
    divisor, unit = byte_scale(all_workspace.dropna())
    for algo, own in per_algo.items():
        dims = own[[L.gemm_m, L.gemm_n, L.gemm_k]].to_numpy(dtype=float)
        has_gemm = np.isfinite(dims).all(axis=1) & (dims > 0).all(axis=1)  # scalar logs 0 x 0 x 0
        if has_gemm.any():
            groups = pd.to_numeric(own[L.gemm_groups], errors="coerce").to_numpy() \
                if L.gemm_groups in own else np.ones(len(own))
            table[f"{algo} GEMM M×N×K"] = [
                "×".join(str(int(v)) for v in row) + (f" (×{int(n)} groups)" if n > 1 else "") if ok else "—"
                for row, ok, n in zip(dims, has_gemm, groups)]   # grouped layers: per-group dims
        if own[L.workspace_bytes].notna().any():
            table[f"{algo} workspace [{unit}]"] = own[L.workspace_bytes].to_numpy() / divisor
        if own[L.arithmetic_intensity].notna().any():
            table[f"{algo} AI [FLOP/B]"] = own[L.arithmetic_intensity].to_numpy()
    return table


def inflation(runs: pd.DataFrame, layers: pd.DataFrame) -> pd.DataFrame:
    """Per layer and algorithm: workspace relative to the layer's input and output tensors."""
    rows = []
    for _, run in runs.iterrows():
        own = _layers_of(layers, run["run_id"])
        element = ELEMENT_BYTES.get(run["quant"], FLOAT32_BYTES)   # the input at the run's precision
        for _, layer in own.iterrows():
            in_bytes = layer[L.batch] * layer[L.in_channels] * layer[L.in_h] * layer[L.in_w] * element
            # the output (and kn2row's partial planes) is float32 at every precision, as the accounting counts it
            out_bytes = layer[L.batch] * layer[L.out_channels] * layer[L.out_h] * layer[L.out_w] * FLOAT32_BYTES
            rows.append({"algo": run["algo"], "layer": layer[L.layer],
                         "taps": layer[L.kernel_h] * layer[L.kernel_w],
                         "workspace_vs_input": layer[L.workspace_bytes] / in_bytes,
                         "workspace_vs_output": layer[L.workspace_bytes] / out_bytes})
    return pd.DataFrame(rows).drop_duplicates(subset=["algo", "layer"]) if rows else pd.DataFrame()


# --- tile sweep -----------------------------------------------------------------------

def tile_sweep(runs: pd.DataFrame) -> pd.DataFrame:
    """Blocked runs of one scenario: model latency [ms] per tile (rows) and technique."""
    blocked = runs[runs["tile"].notna()]
    if blocked.empty:
        return pd.DataFrame()
    sweep = blocked.pivot_table(index="tile", columns="technique", values=c.LATENCY_MS,
                                aggfunc="first")
    sweep = sweep[ordered_techniques(sweep.columns)]
    sweep.index = sweep.index.astype(int)
    return sweep


def tile_sweep_table(sweep: pd.DataFrame) -> pd.DataFrame:
    table = sweep.copy()
    table.columns = [f"{name} [ms]" for name in table.columns]
    table = table.reset_index().rename(columns={"tile": TILE})
    return table


def best_tile_per_layer(runs: pd.DataFrame, layers: pd.DataFrame) -> pd.DataFrame:
    """Per layer and blocked technique: the tile with the lowest layer latency, and that latency."""
    blocked = runs[runs["tile"].notna()]
    merged = layers.drop(columns="tile").merge(blocked[["run_id", "technique", "tile"]], on="run_id")
    merged = merged[merged[c.LATENCY_MS].notna()]
    if merged.empty:
        return pd.DataFrame()
    order = merged.groupby(L.layer)["layer_index"].min().sort_values().index
    best = merged.sort_values([c.LATENCY_MS, "tile"]).drop_duplicates(["layer", "technique"])
    table = pd.DataFrame({"layer": order})
    for technique in ordered_techniques(best["technique"]):
        own = best[best["technique"] == technique].set_index("layer").reindex(order)
        table[f"{technique} best tile"] = own["tile"].astype("Int64").to_numpy()
        table[f"{technique} at best [ms]"] = own[c.LATENCY_MS].to_numpy()
    return table


# --- energy ---------------------------------------------------------------------------

ENERGY_PER_INFERENCE = "energy per inference [J]"
CO2_PER_INFERENCE = "CO2 per inference [mg CO2e]"
ENERGY_PER_RUN = "energy window total [Wh]"
CO2_PER_RUN = "CO2 window total [g CO2e]"
ENERGY_WINDOW = "window"


def thin_window(runs: pd.DataFrame) -> pd.Series:
    """True where the job's energy window held too few images for its per-image figure to be compared."""
    return runs["energy_window"] == THIN_WINDOW


def energy(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Energy and CO2 per inference, and the totals of each job's energy window (the fixed-duration
    loop of back-to-back inferences they were divided from), per technique."""
    notes: list[str] = []
    table = pd.DataFrame({
        TECHNIQUE: [technique_label(t, tile) for t, tile in zip(runs["technique"], runs["tile"])],
        ENERGY_PER_INFERENCE: runs[c.ENERGY_PER_INFERENCE_J],
        CO2_PER_INFERENCE: co2_per_image_mg(runs),
        ENERGY_PER_RUN: runs[c.ENERGY_KWH] * 1e3,
        CO2_PER_RUN: runs[c.EMISSIONS_KG] * 1e3,
        "energy mode": runs["energy_mode"].replace("", "unknown"),
        ENERGY_WINDOW: runs["energy_window"].replace("", "unknown"),
    })
    table = table.assign(_key=runs["technique"].map(technique_sort_key)).sort_values(
        "_key", kind="stable").drop(columns="_key").reset_index(drop=True)
    table = drop_unlogged(table, {ENERGY_PER_INFERENCE: c.ENERGY_PER_INFERENCE_J,
                                  ENERGY_PER_RUN: c.ENERGY_KWH, CO2_PER_RUN: c.EMISSIONS_KG}, notes)
    if CO2_PER_INFERENCE in table and table[CO2_PER_INFERENCE].isna().all():
        table = table.drop(columns=CO2_PER_INFERENCE)
    if (table[ENERGY_WINDOW] == THIN_WINDOW).any():
        notes.append(f"Window '{THIN_WINDOW}': fewer than {MIN_ENERGY_IMAGES} images ran in it, so its per-image "
                     "figure is not comparable: it is in no ranking, finding or figure.")
    return table, notes


# --- roofline -------------------------------------------------------------------------

def roofline_points(runs: pd.DataFrame, layers: pd.DataFrame) -> pd.DataFrame:
    """Per layer and technique: arithmetic intensity [FLOP/B] and achieved GFLOP/s."""
    merged = layers.drop(columns="tile").merge(runs[["run_id", "technique", "tile", "model"]], on="run_id")
    merged = merged[(merged[c.LATENCY_MS] > 0) & merged[L.flops].notna()
                    & (merged[L.arithmetic_intensity] > 0)]
    return pd.DataFrame({
        "model": merged["model"], "layer": merged[L.layer], TECHNIQUE: merged["technique"],
        "arithmetic intensity [FLOP/B]": merged[L.arithmetic_intensity],
        "achieved [GFLOP/s]": merged[L.flops] / (merged[c.LATENCY_MS] * 1e-3) / 1e9,
    }).reset_index(drop=True)


# --- algo=auto ---------------------------------------------------------------------------

AUTO = "auto"


def auto_summary(runs: pd.DataFrame) -> pd.DataFrame:
    """algo=auto runs: the tuned model against the best single candidate, timed in the same job, and
    what the tuning cost (seconds; layers measured or reused from the tuning database)."""
    auto = runs[runs["algo"] == AUTO]
    return pd.DataFrame({
        RUN: auto["run_name"], "tuned [ms]": auto[c.LATENCY_MS], "best single candidate": auto["best_single"],
        "best single [ms]": auto[c.BEST_SINGLE_LATENCY_MS],
        "tuned vs best single [×]": auto[c.SPEEDUP_VS_BEST_SINGLE],
        SPEEDUP: auto[c.BASELINE_LATENCY_MS] / auto[c.LATENCY_MS],
        "tuning [s]": auto[c.TUNING_S], "layers measured": auto[c.TUNING_MEASURED],
        "layers reused": auto[c.TUNING_REUSED], PROTOCOL: auto["bench"],
        "started (UTC)": auto["start_time"].dt.strftime("%Y-%m-%d %H:%M"),
    }).reset_index(drop=True)


def auto_layers(run_id: str, layers: pd.DataFrame) -> pd.DataFrame:
    """Per layer of one algo=auto run: its choice and the runner-up, with their tuning medians."""
    own = _layers_of(layers, run_id)
    if own.empty or own[L.choice].isna().all():
        return pd.DataFrame()
    return pd.DataFrame({
        "layer": own[L.layer], "shape (Cin→Cout k×k/s H×W)": [shape_text(row) for _, row in own.iterrows()],
        "choice": own[L.choice], "choice tuned [ms]": own[L.choice_tuned_ms],
        "runner-up": own[L.runner_up].fillna("—"), "runner-up tuned [ms]": own[L.runner_up_tuned_ms],
        "runner-up ÷ choice [×]": own[L.runner_up_tuned_ms] / own[L.choice_tuned_ms],
        "tuning": own["tuning"], "layer in model [ms]": own[c.LATENCY_MS],
    }).reset_index(drop=True)


# --- pruning and quantization ---------------------------------------------------------

def _dense_reference(runs_all: pd.DataFrame, run) -> float:
    """Latency of the dense fp32 comparison run of the same technique and scenario."""
    dense = comparison_runs(dense_fp32(runs_all))
    same = dense[(dense["technique"] == run["technique"]) & (dense["model"] == run["model"])
                 & (dense["batch"] == run["batch"]) & (dense["input_size"] == run["input_size"])]
    return float(same[c.LATENCY_MS].iloc[0]) if len(same) else np.nan


def _compression_columns(runs: pd.DataFrame, ratio: bool) -> dict:
    """What pruned/quantized jobs measured in the same job (experiments/compress): the dense fp32 model's
    time there, the MAC ratio pruning tools report beside it, and the accuracy cost. The dense rows of a
    table have none of these (NaN); columns no run has are dropped by the caller."""
    columns = {"speedup vs dense, same job [×]": runs.get(c.SPEEDUP_VS_DENSE)}
    if ratio:
        columns["MAC ratio"] = runs.get(c.MAC_RATIO)
        columns["pruned (achieved)"] = runs.get(c.PRUNED_FRACTION)
    columns["weights"] = runs["weights"]   # "random": fidelity and cost say how the arithmetic behaves, not accuracy
    columns.update({"top-1 agreement": runs.get(c.TOP1_AGREEMENT), "fidelity rel err": runs.get(c.FIDELITY_REL_ERR),
                    "top-1 accuracy": runs.get(c.ACCURACY_TOP1), "dense top-1 accuracy": runs.get(c.DENSE_ACCURACY_TOP1)})
    return {k: (v if v is not None else pd.Series(np.nan, index=runs.index)) for k, v in columns.items()}


def _compression_table(group_runs: pd.DataFrame, runs: pd.DataFrame, columns: dict, speedup: str,
                       ratio: bool) -> pd.DataFrame:
    """A compression table: model and technique, the study's own ``columns``, the same-job speedup and the
    ``speedup`` against the dense fp32 reference, error and compression metrics (``_order`` to sort by)."""
    return pd.DataFrame({
        "model": runs["model"],
        TECHNIQUE: [technique_label(t, tile) for t, tile in zip(runs["technique"], runs["tile"])],
        **columns,
        MEDIAN_MS: runs[c.LATENCY_MS],
        SPEEDUP: runs[c.BASELINE_LATENCY_MS] / runs[c.LATENCY_MS],
        speedup: [_dense_reference(group_runs, run) / run[c.LATENCY_MS] for _, run in runs.iterrows()],
        "max rel err": runs[c.MAX_REL_ERR],
        **_compression_columns(runs, ratio=ratio),
        "_order": runs["technique"].map(technique_sort_key),
    })


def _precision_cost_columns(runs: pd.DataFrame) -> dict:
    """What a reduced precision costs against the fp32 model it quantized (experiments/compress/precision_cost.py):
    measured in each fp16/int8 job after its layers passed the exactness gate; empty for fp32 rows."""
    quantized = runs["quant"] != "fp32"
    return {"kept fp32": runs["fp32_layer_names"].replace("", "none").where(quantized),
            "cost: rel err vs fp32": runs[c.PRECISION_REL_ERR],
            "top-1 vs fp32": runs[c.PRECISION_TOP1_AGREEMENT],
            "worst layer": runs["precision_worst_layer"].where(quantized & (runs["precision_worst_layer"] != "")),
            "worst layer rel err": runs[c.PRECISION_WORST_LAYER_REL_ERR]}


def pruning(group_runs: pd.DataFrame) -> pd.DataFrame:
    """Pruned runs of one group: speedup against density, fidelity."""
    pruned = comparison_runs(group_runs[group_runs["prune"] != "none"])
    if pruned.empty:
        return pd.DataFrame()
    # The dense run of each pruned technique is the density-1 point of its curve.
    dense = comparison_runs(dense_fp32(group_runs))
    dense = dense[dense["technique"].isin(pruned["technique"]) & dense["model"].isin(pruned["model"])]
    pruned = pd.concat([dense, pruned])
    table = _compression_table(group_runs, pruned, {"pruning": pruned["prune"],
                                                    "density": (1.0 - pruned["prune_amount"]).round(6),
                                                    "precision": pruned["quant"]}, "speedup vs dense [×]", ratio=True)
    table = table.sort_values(["model", "_order", "pruning", "density"]).drop(columns="_order")
    table = table.dropna(axis=1, how="all")
    if (table["precision"] == "fp32").all():
        table = table.drop(columns="precision")
    return table.reset_index(drop=True)


def pruning_curves(table: pd.DataFrame) -> pd.DataFrame:
    """One curve per technique and pruning method, each starting from the dense point."""
    methods = sorted(set(table["pruning"]) - {"none"})
    curves = []
    for method in methods:
        own = table[table["pruning"].isin([method, "none"])]
        own = own[own[TECHNIQUE].isin(table.loc[table["pruning"] == method, TECHNIQUE])]
        label = own[TECHNIQUE] + (f" ({method})" if len(methods) > 1 else "")
        curves.append(own.assign(**{TECHNIQUE: label}))
    return pd.concat(curves, ignore_index=True)


def quantization(group_runs: pd.DataFrame) -> pd.DataFrame:
    """Dense runs at reduced precision, with their fp32 references: speedup against bit width."""
    dense = group_runs[group_runs["prune"] == "none"]
    if (dense["quant"] == "fp32").all():
        return pd.DataFrame()
    chosen = comparison_runs(dense)
    chosen = chosen[chosen["technique"].isin(chosen.loc[chosen["quant"] != "fp32", "technique"])]
    table = _compression_table(group_runs, chosen, {"precision": chosen["quant"],
                                                    "bits": chosen["quant"].map(QUANT_BITS).astype("Int64")},
                               "speedup vs fp32 [×]", ratio=False).assign(**_precision_cost_columns(chosen))
    table = table.sort_values(["model", "_order", "bits"], ascending=[True, True, False])
    table = table.dropna(axis=1, how="all")
    return table.drop(columns="_order").reset_index(drop=True)


# --- runs that are not compared -------------------------------------------------------

def failed_runs(jobs: pd.DataFrame) -> pd.DataFrame:
    failed = jobs[jobs["status"] == "failed"].sort_values("start_time")
    return pd.DataFrame({
        RUN: failed["run_name"], "model": failed["model"], TECHNIQUE: failed["technique"],
        TILE: failed["tile"], "precision": failed["quant"], "pruning": failed["prune"],
        "device": failed["device"], "backend": failed["backend"],
        "error": failed["error"].replace("", "(no error logged)"),
    }).reset_index(drop=True)


def emulated_runs(jobs: pd.DataFrame) -> pd.DataFrame:
    """Emulated runs: what ran and whether it was correct; no timing columns on purpose."""
    table = pd.DataFrame({
        "device": jobs["device"], "model": jobs["model"], TECHNIQUE: jobs["technique"],
        TILE: jobs["tile"], "precision": jobs["quant"], "pruning": jobs["prune"],
        "status": jobs["status"], "max rel err": jobs[c.MAX_REL_ERR],
    })
    table = table.assign(_key=jobs["technique"].map(technique_sort_key)).sort_values(
        ["device", "model", "_key", TILE], kind="stable").drop(columns="_key")
    return table.reset_index(drop=True)
