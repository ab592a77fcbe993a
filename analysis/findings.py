"""Measured statements for the discussion: who wins where, by how much, and with which dimensions.

Every sentence is computed from the tables; nothing here explains or speculates. The student
writes the explanation; these are the facts it must account for.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.load import PYTORCH
from analysis.tables import IQR_REL, MEDIAN_MS, NOISY_IQR_REL, SPEEDUP, TECHNIQUE, TILE


def _ms(value: float) -> str:
    return f"{value:.3g} ms"


def _label(row) -> str:
    tile = row.get(TILE, np.nan) if hasattr(row, "get") else np.nan
    return f"{row[TECHNIQUE]} (tile {int(tile)})" if pd.notna(tile) else row[TECHNIQUE]


def end_to_end_findings(e2e: pd.DataFrame) -> list[str]:
    timed = e2e[e2e[MEDIAN_MS].notna()].sort_values(MEDIAN_MS)
    if timed.empty:
        return []
    out = []
    fastest = timed.iloc[0]
    pytorch = timed[timed[TECHNIQUE] == PYTORCH]
    ours = timed[timed[TECHNIQUE] != PYTORCH]
    if fastest[TECHNIQUE] == PYTORCH and len(ours):
        closest = ours.iloc[0]
        side_by_side = (f"; timed side by side in its own job, its speedup over PyTorch is "
                        f"{closest[SPEEDUP]:.2f}×" if pd.notna(closest[SPEEDUP]) else "")
        out.append(f"PyTorch is fastest end-to-end ({_ms(fastest[MEDIAN_MS])}); the closest "
                   f"implementation, {_label(closest)}, takes "
                   f"{closest[MEDIAN_MS] / fastest[MEDIAN_MS]:.2f}× as long "
                   f"({_ms(closest[MEDIAN_MS])}){side_by_side}.")
    elif fastest[TECHNIQUE] != PYTORCH:
        versus = (f", {fastest[SPEEDUP]:.2f}× faster than PyTorch"
                  f"{f' ({_ms(pytorch.iloc[0][MEDIAN_MS])})' if len(pytorch) else ''}"
                  if pd.notna(fastest[SPEEDUP]) else "")
        out.append(f"**{_label(fastest)}** is fastest end-to-end: {_ms(fastest[MEDIAN_MS])} "
                   f"median{versus}.")
    if len(timed) > 2:
        ranking = " < ".join(f"{_label(row)} {_ms(row[MEDIAN_MS])}" for _, row in timed.iterrows())
        out.append(f"Ranking by median latency: {ranking}.")
    out += _vendor_vs_blocked(timed)
    return out


def _vendor_vs_blocked(timed: pd.DataFrame) -> list[str]:
    out = []
    algos = {t.split("+")[0] for t in timed[TECHNIQUE] if "+" in t}
    for algo in sorted(algos):
        blocked = timed[timed[TECHNIQUE] == f"{algo}+blocked"]
        vendor = timed[timed[TECHNIQUE] == f"{algo}+vendor"]
        if blocked.empty or vendor.empty:
            continue
        b, v = blocked.iloc[0], vendor.iloc[0]
        tile = f" at its best tile ({int(b[TILE])})" if pd.notna(b.get(TILE, np.nan)) else ""
        if v[MEDIAN_MS] <= b[MEDIAN_MS]:
            out.append(f"With {algo}, the vendor GEMM is {b[MEDIAN_MS] / v[MEDIAN_MS]:.2f}× "
                       f"faster than the blocked GEMM{tile}.")
        else:
            out.append(f"With {algo}, the blocked GEMM{tile} is {v[MEDIAN_MS] / b[MEDIAN_MS]:.2f}× "
                       f"faster than the vendor GEMM.")
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


def layer_findings(matrix: pd.DataFrame, shapes: pd.DataFrame, winners: pd.Series) -> list[str]:
    out = []
    counts = winners.value_counts()
    if counts.empty:
        return out
    listed = ", ".join(f"{name} on {n}" for name, n in counts.items())
    out.append(f"Fastest per layer ({len(winners.dropna())} conv layers): {listed}.")
    if PYTORCH in matrix and len(matrix.columns) > 1:
        ours = matrix.drop(columns=PYTORCH)
        best_ours = ours.min(axis=1)
        beaten = (best_ours < matrix[PYTORCH]).sum()
        out.append(f"At least one of our implementations beats PyTorch on {beaten} of "
                   f"{matrix[PYTORCH].notna().sum()} layers.")
        out += _winners_by_kernel(ours, shapes)
    return out


def _winners_by_kernel(ours: pd.DataFrame, shapes: pd.DataFrame) -> list[str]:
    """Which of our implementations wins, split by kernel size: the dimension that sets inflation."""
    if ours.empty or ours.shape[1] < 2 or "kernel_h" not in shapes:
        return []
    kernel = shapes.reindex(ours.index)[["kernel_h", "kernel_w"]]
    parts = []
    winners = ours.dropna(how="all").idxmin(axis=1)
    for (kh, kw), names in kernel.groupby(["kernel_h", "kernel_w"]).groups.items():
        own = winners.reindex(names).dropna()
        if own.empty:
            continue
        counts = own.value_counts()
        top = ", ".join(f"{name} on {n}" for name, n in counts.items())
        parts.append(f"{len(own)} layer(s) with {int(kh)}×{int(kw)} kernels: {top}")
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
        per_kernel = own.groupby("kernel")[column].median().sort_index(ascending=False)
        parts = [f"{ratio:.2f}× on layers with k·k = {int(k)}" for k, ratio in per_kernel.items()]
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
    column = "energy per inference [J]"
    if column not in table or table[column].isna().all():
        return []
    ordered = table.dropna(subset=[column]).sort_values(column)
    best = ordered.iloc[0]
    text = f"Lowest energy per inference: {best[TECHNIQUE]} ({best[column]:.3g} J)"
    pytorch = ordered[ordered[TECHNIQUE] == PYTORCH]
    if len(pytorch) and best[TECHNIQUE] != PYTORCH:
        text += f", {pytorch.iloc[0][column] / best[column]:.2f}× less than PyTorch"
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
        out.append(f"{technique}: largest speedup over its dense fp32 run is "
                   f"{best[versus]:.2f}× at {knob} {value}{error}.")
    return out
