"""Measured statements for the discussion: who wins where, by how much, and with which dimensions.

Every sentence is computed from the tables; nothing here explains or speculates. The student
writes the explanation; these are the facts it must account for.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.load import PYTORCH
from analysis.tables import (
    CI_HIGH, CI_LOW, IQR_REL, MEDIAN_MS, NOISY_IQR_REL, PYTORCH_SAME_JOB_MS, SPEEDUP, TECHNIQUE, TILE,
)
from experiments.tracking.contract import LAYER as L   # layers.csv columns
from experiments.tracking.labels import interval_text, ratio_text


def _ms(value: float) -> str:
    return f"{value:.3g} ms"


def _label(row) -> str:
    tile = row.get(TILE, np.nan) if hasattr(row, "get") else np.nan
    return f"{row[TECHNIQUE]} (tile {int(tile)})" if pd.notna(tile) else row[TECHNIQUE]


def _interval(row) -> str:
    """' (95% CI 1.2–1.9×)' or ' (not significant: 95% CI 0.9–1.3× contains 1)'; '' without one."""
    low, high = row.get(CI_LOW, np.nan), row.get(CI_HIGH, np.nan)
    if pd.isna(low) or pd.isna(high):
        return ""
    if low <= 1 <= high:
        return f" (not significant: the 95% interval, {interval_text(low, high)}, contains no difference)"
    return f" (95% CI {interval_text(low, high)})"


def ranked_by_speedup(e2e: pd.DataFrame) -> pd.DataFrame:
    """The table's rows, fastest relative to PyTorch first, by the same-job speedup the table shows."""
    return e2e[e2e[SPEEDUP].notna()].sort_values(SPEEDUP, ascending=False, kind="stable")


def end_to_end_findings(e2e: pd.DataFrame) -> list[str]:
    """Who is fastest and the ranking, both from the speedup column (each job's own PyTorch time),
    never from medians of different jobs, so a finding cannot contradict the table."""
    ranked = ranked_by_speedup(e2e)
    ours = ranked[ranked[TECHNIQUE] != PYTORCH]
    if ours.empty:
        return []
    out = []
    top = ours.iloc[0]
    same_job = (f"{_ms(top[MEDIAN_MS])} against PyTorch's {_ms(top[PYTORCH_SAME_JOB_MS])} in the same job"
                if pd.notna(top.get(PYTORCH_SAME_JOB_MS, np.nan)) else f"{_ms(top[MEDIAN_MS])} median")
    if top[SPEEDUP] > 1:
        out.append(f"**{_label(top)}** is fastest end-to-end: {ratio_text(top[SPEEDUP])} than PyTorch "
                   f"({same_job}){_interval(top)}.")
    else:
        out.append(f"PyTorch is fastest end-to-end: the closest implementation, {_label(top)}, is "
                   f"{ratio_text(top[SPEEDUP])} ({same_job}){_interval(top)}.")
    if len(ours) > 1:
        ranking = " > ".join(f"{_label(row)} ({ratio_text(row[SPEEDUP])})" for _, row in ours.iterrows())
        out.append(f"Ranking by speedup over PyTorch, each timed side by side in its own job: {ranking}.")
    out += _vendor_vs_blocked(ranked)
    return out


def _vendor_vs_blocked(ranked: pd.DataFrame) -> list[str]:
    """Vendor against blocked GEMM per algorithm: the ratio of their same-job speedups."""
    out = []
    algos = {t.split("+")[0] for t in ranked[TECHNIQUE] if "+" in t}
    for algo in sorted(algos):
        blocked = ranked[ranked[TECHNIQUE] == f"{algo}+blocked"]
        vendor = ranked[ranked[TECHNIQUE] == f"{algo}+vendor"]
        if blocked.empty or vendor.empty:
            continue
        b, v = blocked.iloc[0], vendor.iloc[0]
        tile = f" at its best tile ({int(b[TILE])})" if pd.notna(b.get(TILE, np.nan)) else ""
        out.append(f"With {algo}, the vendor GEMM is {ratio_text(v[SPEEDUP] / b[SPEEDUP])} than the blocked "
                   f"GEMM{tile} (ratio of their speedups over PyTorch).")
    return out


def tile_findings(sweep: pd.DataFrame) -> list[str]:
    out = []
    for technique in sweep.columns:
        series = sweep[technique].dropna()
        if len(series) < 2:
            continue
        best, worst = series.idxmin(), series.idxmax()
        out.append(f"{technique}: best tile {best} ({_ms(series[best])}); the worst tested tile, "
                   f"{worst}, is {series[worst] / series[best]:.2f}× slower "
                   f"({len(series)} tiles tested: {', '.join(map(str, series.index))}).")
    return out


def layer_findings(matrix: pd.DataFrame, shapes: pd.DataFrame, winners: pd.Series,
                   significant: pd.Series | None = None) -> list[str]:
    out = []
    counts = winners.value_counts()
    if counts.empty:
        return out
    listed = ", ".join(f"{name} on {n}" for name, n in counts.items())
    ties = ""
    if significant is not None and significant.notna().any():
        tied = int(significant.eq(False).sum())
        ties = (f"; on {tied} of them the lead over the runner-up is within the noise (95% interval "
                f"includes 1), so those winners are ties" if tied else "; every lead is beyond the noise")
    out.append(f"Fastest per layer ({len(winners.dropna())} conv layers): {listed}{ties}.")
    if PYTORCH in matrix and len(matrix.columns) > 1:
        ours = matrix.drop(columns=PYTORCH)
        best_ours = ours.min(axis=1)
        beaten = (best_ours < matrix[PYTORCH]).sum()
        out.append(f"At least one of our implementations beats PyTorch on {beaten} of "
                   f"{matrix[PYTORCH].notna().sum()} layers.")
        out += _winners_by_filter_size(ours, shapes)
    return out


def _winners_by_filter_size(ours: pd.DataFrame, shapes: pd.DataFrame) -> list[str]:
    """Which of our implementations wins, split by filter size (KH x KW): the dimension that sets inflation."""
    if ours.empty or ours.shape[1] < 2 or L.kernel_h not in shapes:
        return []
    filters = shapes.reindex(ours.index)[[L.kernel_h, L.kernel_w]]
    parts = []
    winners = ours.dropna(how="all").idxmin(axis=1)
    for (kh, kw), names in filters.groupby([L.kernel_h, L.kernel_w]).groups.items():
        own = winners.reindex(names).dropna()
        if own.empty:
            continue
        counts = own.value_counts()
        top = ", ".join(f"{name} on {n}" for name, n in counts.items())
        parts.append(f"{len(own)} layer(s) with {int(kh)}×{int(kw)} filters: {top}")
    if len(parts) < 1:
        return []
    return ["Fastest of our implementations by kernel size — " + "; ".join(parts) + "."]


def inflation_findings(inflation: pd.DataFrame) -> list[str]:
    """Median workspace per layer relative to the tensor each algorithm inflates."""
    if inflation.empty or inflation["workspace_vs_input"].isna().all():
        return []
    out = []
    relative_to = {"im2col": ("workspace_vs_input", "input"), "kn2row": ("workspace_vs_output", "output")}
    for algo, (column, tensor) in relative_to.items():
        own = inflation[(inflation["algo"] == algo) & inflation[column].notna()]
        if own.empty:
            continue
        per_taps = own.groupby("taps")[column].median().sort_index(ascending=False)
        parts = [f"{ratio:.2f}× on layers with k·k = {int(k)}" for k, ratio in per_taps.items()]
        out.append(f"{algo}'s workspace relative to the layer {tensor} (median): "
                   f"{', '.join(parts)}.")
    scalar = inflation[inflation["algo"] == "scalar"]["workspace_vs_input"].dropna()
    if len(scalar):
        out.append("scalar uses no workspace." if (scalar == 0).all() else
                   f"scalar's workspace is at most {scalar.max():.2f}× the layer input.")
    return out


def roofline_findings(points: pd.DataFrame, ceilings) -> list[str]:
    if points.empty:
        return []
    out = []
    achieved, intensity = "achieved [GFLOP/s]", "arithmetic intensity [FLOP/B]"
    medians = points.groupby(TECHNIQUE)[[achieved, intensity]].median()
    medians = medians.sort_values(achieved, ascending=False)
    listed = "; ".join(f"{name} {row[achieved]:.3g} GFLOP/s at {row[intensity]:.3g} FLOP/B"
                       for name, row in medians.iterrows())
    out.append(f"Median per layer, achieved throughput and arithmetic intensity: {listed}.")
    for technique, own in points.groupby(TECHNIQUE):
        if technique == PYTORCH or len(own) < 4 or own[intensity].nunique() < 2:
            continue
        rho = own[intensity].corr(own[achieved], method="spearman")
        if pd.notna(rho):
            out.append(f"{technique}: across {len(own)} layers, the rank correlation of achieved "
                       f"GFLOP/s with arithmetic intensity is ρ = {rho:.2f}.")
    if ceilings is not None:
        top = points.loc[points[achieved].idxmax()]
        fraction = top[achieved] / ceilings.peak_gflops
        out.append(f"Highest achieved: {top[achieved]:.3g} GFLOP/s ({top[TECHNIQUE]}, "
                   f"{top['model']} {top['layer']}), {fraction:.1%} of the {ceilings.source} "
                   f"compute ceiling.")
        above = points[points[achieved] > ceilings.peak_gflops]
        if len(above):
            out.append(f"{len(above)} point(s) lie above the compute ceiling, so the ceiling "
                       f"({ceilings.describe()}) underestimates this device: measure it again on "
                       f"an idle machine with a larger matmul (`python -m analysis.ceilings "
                       f"--matmul-n 4096`).")
    return out


def noise_findings(e2e_tables: list[pd.DataFrame]) -> list[str]:
    rows = pd.concat([t for t in e2e_tables if IQR_REL in t], ignore_index=True) \
        if any(IQR_REL in t for t in e2e_tables) else pd.DataFrame()
    if rows.empty:
        return []
    noisy = rows[rows[IQR_REL] > NOISY_IQR_REL]
    if noisy.empty:
        return [f"All {len(rows)} compared measurements have IQR/median ≤ {NOISY_IQR_REL:.0%}."]
    return [f"{len(noisy)} of {len(rows)} compared measurements ({', '.join(noisy[TECHNIQUE])}) "
            f"have IQR/median > {NOISY_IQR_REL:.0%}: differences smaller than their spread are "
            f"not significant."]


def energy_findings(table: pd.DataFrame, mode_text: str) -> list[str]:
    column, co2 = "energy per inference [J]", "CO2 per inference [mg CO2e]"
    if column not in table or table[column].isna().all():
        return []
    ordered = table.dropna(subset=[column]).sort_values(column)
    best = ordered.iloc[0]
    amount = f"{best[column]:.3g} J"
    if co2 in table and pd.notna(best.get(co2, np.nan)):
        amount += f" and {best[co2]:.3g} mg CO2e"
    text = f"Lowest energy per inference: {best[TECHNIQUE]}, {amount} per image"
    pytorch = ordered[ordered[TECHNIQUE] == PYTORCH]
    if len(pytorch) and best[TECHNIQUE] != PYTORCH:
        text += f", {pytorch.iloc[0][column] / best[column]:.2f}× less energy than PyTorch"
    return [f"{text}; energy {mode_text}."]


def variant_findings(table: pd.DataFrame, knob: str, versus: str) -> list[str]:
    """Pruning/quantization: the largest speedup over the dense fp32 variant and its error."""
    if table.empty or versus not in table or table[versus].isna().all():
        return []
    out = []
    for technique, own in table.groupby(TECHNIQUE, sort=False):
        own = own.dropna(subset=[versus])
        if own.empty:
            continue
        best = own.loc[own[versus].idxmax()]
        error = f", max rel err {best['max rel err']:.2g}" if pd.notna(best["max rel err"]) else ""
        value = f"{best[knob]:g}" if isinstance(best[knob], float) else str(best[knob])
        out.append(f"{technique}: its best {knob}, {value}, is {ratio_text(best[versus])} than its dense "
                   f"fp32 run{error}.")
    return out


def auto_findings(run, per_layer: pd.DataFrame) -> list[str]:
    """What algo=auto chose, how close the runner-ups were, and what tuning bought over one candidate."""
    counts = per_layer["choice"].value_counts()
    listed = ", ".join(f"{name} on {n}" for name, n in counts.items())
    close = int((per_layer["runner-up ÷ choice [×]"] < 1.05).sum())
    out = [f"algo=auto ({run['run_name']}) chose {listed} of {len(per_layer)} layers; on {close} layer(s) the "
           f"runner-up was within 5% in tuning."]
    versus = run.get("speedup_vs_best_single", np.nan)
    if pd.notna(versus):
        tuning = run.get("tuning_s", np.nan)
        spent = f" after {tuning:.3g} s of tuning" if pd.notna(tuning) else ""
        out.append(f"The tuned model is {ratio_text(versus)} than the best single candidate "
                   f"({run['best_single'] or 'unnamed'}), timed in the same job{spent}.")
    return out
