"""The report's figures as PNG files (matplotlib, Agg backend: no display needed).

Every figure names its axes with units, has a legend where colours mean something, and
uses one colour per technique across all figures so a reader learns it once.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

from analysis.selection import ordered_techniques  # noqa: E402
from experiments.measure.timing import NOISY_IQR_REL  # noqa: E402
from experiments.tracking.labels import ratio_text, significant  # noqa: E402

DPI = 130
_FIXED_COLOURS = {
    "pytorch": "#4d4d4d",
    "im2col+blocked": "#1f77b4", "im2col+vendor": "#17becf",
    "kn2row+blocked": "#ff7f0e", "kn2row+vendor": "#d62728",
    "scalar": "#2ca02c",
}
_SPARE_COLOURS = ["#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#7f7f7f"]
_MARKERS = {"pytorch": "s", "scalar": "^"}


def colour(technique: str) -> str:
    base = technique.split(" (")[0]  # "im2col+blocked (tile 16)" -> "im2col+blocked"
    if base in _FIXED_COLOURS:
        return _FIXED_COLOURS[base]
    return _SPARE_COLOURS[sum(map(ord, base)) % len(_SPARE_COLOURS)]


def marker(technique: str) -> str:
    base = technique.split(" (")[0]
    return _MARKERS.get(base, "D" if base.endswith("vendor") else "o")


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return path


def wrap_title(title: str, width: int = 64) -> str:
    """Long titles (they name the device and what ran) broken into lines that fit above the axes."""
    return "\n".join(textwrap.fill(line, width) for line in title.split("\n"))


def _style(ax, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(wrap_title(title), fontsize=11)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="major", alpha=0.3)


def latency_bars(table: pd.DataFrame, title: str, path: Path) -> Path:
    """End-to-end median per technique, p10-p90 whiskers, speedup over PyTorch printed."""
    labels = [_row_label(row) for _, row in table.iterrows()]
    median = table["median [ms]"].to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(7.5, 0.5 * len(table) + 1.4))
    y = np.arange(len(table))[::-1]
    errors = None
    if {"p10 [ms]", "p90 [ms]"} <= set(table.columns):
        low = np.clip(median - table["p10 [ms]"].to_numpy(dtype=float), 0, None)
        high = np.clip(table["p90 [ms]"].to_numpy(dtype=float) - median, 0, None)
        errors = np.nan_to_num(np.vstack([low, high]))
    ax.barh(y, median, xerr=errors, color=[colour(lbl) for lbl in labels], capsize=3,
            error_kw={"elinewidth": 1})
    ax.set_yticks(y, labels)
    # Labels start right of the p90 whisker, so they never cross it.
    label_x = median + (errors[1] if errors is not None else 0)
    for (_, row), yi, value, x in zip(table.iterrows(), y, median, label_x):
        speedup = row["speedup vs PyTorch [×]"]
        if np.isfinite(value) and np.isfinite(speedup):
            versus = "PyTorch" if row["technique"] == "pytorch" else ratio_text(speedup)
            if row.get("significant", "") == "not significant":
                versus += ", not significant"
            ax.text(x, yi, f"  {significant(value, 3)} ms ({versus})", va="center", fontsize=8)
    ax.set_xlim(0, np.nanmax(label_x) * 1.6)
    whiskers = ", whiskers p10–p90" if errors is not None else ""
    _style(ax, title, f"median model forward latency [ms] (lower is better{whiskers})", "")
    return _save(fig, path)


def _row_label(row) -> str:
    tile = row.get("tile", np.nan)
    return f"{row['technique']} (tile {int(tile)})" if pd.notna(tile) else row["technique"]


def layer_heatmap(matrix: pd.DataFrame, title: str, noise: pd.DataFrame | None,
                  significant_lead: pd.Series | None, path: Path) -> Path:
    """Layers x techniques, coloured by latency relative to the fastest technique on that layer; a noisy
    cell (IQR/median > 10%) carries †, a fastest within the noise of its runner-up reads 'tie'."""
    relative = matrix.div(matrix.min(axis=1), axis=0)
    fig, ax = plt.subplots(figsize=(1.3 * len(matrix.columns) + 3.0, max(3.2, 0.34 * len(matrix) + 1.8)))
    finite = relative.to_numpy(dtype=float)
    vmax = max(2.0, float(np.nanmax(finite))) if np.isfinite(finite).any() else 2.0
    image = ax.imshow(np.ma.masked_invalid(finite), aspect="auto", cmap="YlOrRd",
                      norm=LogNorm(vmin=1.0, vmax=vmax))
    ax.set_xticks(range(len(matrix.columns)), matrix.columns, rotation=30, ha="right")
    ax.set_yticks(range(len(matrix)), matrix.index)
    noisy = noise.gt(NOISY_IQR_REL).to_numpy() if noise is not None else np.zeros(finite.shape, bool)
    tie = significant_lead.eq(False).fillna(False).to_numpy() if significant_lead is not None \
        else np.zeros(len(matrix), bool)
    for (i, j), value in np.ndenumerate(finite):
        if np.isfinite(value):
            text = ("tie" if tie[i] else "fastest") if value == 1.0 else f"{value:.2f}×"
            text += "†" if noisy[i, j] else ""
            ax.text(j, i, text, ha="center", va="center", fontsize=7,
                    fontweight="bold" if value == 1.0 else "normal",
                    color="white" if value > vmax ** 0.7 else "black")
    bar = fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    ticks = [t for t in (1, 1.5, 2, 3, 5, 10, 20, 50, 100, 1000) if t <= vmax]
    bar.set_ticks(ticks, labels=[f"{t:g}×" for t in ticks])
    bar.minorticks_off()
    bar.set_label("latency ÷ fastest on layer")
    ax.set_title(wrap_title(title), fontsize=11)
    ax.set_xlabel("technique")
    ax.set_ylabel("conv layer (model order)")
    return _save(fig, path)


def tile_sweep(sweep: pd.DataFrame, references: dict[str, float], title: str, path: Path) -> Path:
    """Model latency against the blocked GEMM tile, one line per algorithm, best tile starred;
    techniques without a tile (PyTorch, vendor GEMM) as dashed reference lines."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for technique in sweep.columns:
        series = sweep[technique].dropna()
        ax.plot(series.index, series.to_numpy(), marker="o", color=colour(technique),
                label=technique)
        if len(series):
            best = series.idxmin()
            ax.plot([best], [series[best]], marker="*", markersize=15, color=colour(technique),
                    markeredgecolor="black", linestyle="none")
    for name, value in references.items():
        if np.isfinite(value):
            ax.axhline(value, linestyle="--", linewidth=1, color=colour(name),
                       label=f"{name} (no tile)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(sweep.index), [str(t) for t in sweep.index])
    ax.minorticks_off()
    ax.plot([], [], marker="*", markersize=12, color="white", markeredgecolor="black",
            linestyle="none", label="best tile")
    _style(ax, title, "blocked GEMM tile (threads per block side)",
           "median model latency [ms] (lower is better)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def energy_bars(table: pd.DataFrame, title: str, path: Path) -> Path:
    """Energy per inference and, where known, CO2 per inference, per technique."""
    panels = [c for c in ("energy per inference [J]", "CO2 per inference [mg CO2e]")
              if c in table and table[c].notna().any()]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 0.45 * len(table) + 1.6),
                             squeeze=False)
    labels = list(table["technique"])
    y = np.arange(len(table))[::-1]
    for ax, column in zip(axes[0], panels):
        values = table[column].to_numpy(dtype=float)
        ax.barh(y, values, color=[colour(lbl) for lbl in labels])
        ax.set_yticks(y, labels if ax is axes[0][0] else [""] * len(labels))
        for yi, value in zip(y, values):
            if np.isfinite(value):
                ax.text(value, yi, f" {value:.3g}", va="center", fontsize=8)
        ax.set_xlim(0, np.nanmax(values) * 1.3 if np.isfinite(values).any() else 1)
        _style(ax, "", column + " (lower is better)", "")
    fig.suptitle(wrap_title(title, 90), fontsize=11)
    fig.tight_layout()   # keeps the suptitle's lines clear of the axes' frames
    return _save(fig, path)


def roofline(points: pd.DataFrame, roofs: list, title: str, path: Path) -> Path:
    """Achieved GFLOP/s of each layer against its arithmetic intensity, under its roofs: the first is the
    device's (measured, datasheet or observed), a second one the envelope of points that rise above it."""
    intensity_col, achieved_col = "arithmetic intensity [FLOP/B]", "achieved [GFLOP/s]"
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for technique in ordered_techniques(points["technique"]):
        own = points[points["technique"] == technique]
        ax.scatter(own[intensity_col], own[achieved_col], s=22, alpha=0.8, color=colour(technique),
                   marker=marker(technique), label=technique, edgecolors="none")
    x_low = min(points[intensity_col].min() / 2, 0.05)
    x_high = max([points[intensity_col].max() * 2] + [roof.ridge_intensity * 4 for roof in roofs])
    y_low = min([points[achieved_col].min() / 3] + [x_low * roof.bandwidth_gbs for roof in roofs])
    y_high = max([points[achieved_col].max() * 3] + [roof.peak_gflops * 3 for roof in roofs])
    ax.set_xscale("log")
    ax.set_yscale("log")
    xs = np.logspace(np.log10(x_low), np.log10(x_high), 200)
    for roof, style in zip(roofs, ("-", "--")):
        ax.plot(xs, np.minimum(roof.peak_gflops, xs * roof.bandwidth_gbs), color="black", linewidth=1.5,
                linestyle=style, label=f"roof, {roof.source}: {roof.peak_gflops:,.0f} GFLOP/s, "
                                       f"{roof.bandwidth_gbs:,.0f} GB/s")
        ax.text(roof.ridge_intensity, roof.peak_gflops * 1.25, f"ridge {roof.ridge_intensity:.3g} FLOP/B",
                ha="center", fontsize=8)
    ax.set_xlim(x_low, x_high)
    ax.set_ylim(y_low, y_high)
    _style(ax, title, "arithmetic intensity [FLOP/byte]", "achieved performance [GFLOP/s]")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))  # outside: no point hidden
    return _save(fig, path)


def speedup_lines(table: pd.DataFrame, x: str, xlabel: str, title: str, reverse_x: bool,
                  path: Path) -> Path:
    """Speedup over PyTorch against a knob (density, bit width), one line per technique."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    y = "speedup vs PyTorch [×]"
    for technique, own in table.groupby("technique", sort=False):
        own = own.sort_values(x)
        ax.plot(own[x].astype(float), own[y].astype(float), marker=marker(technique),
                color=colour(technique), label=technique)
    ax.axhline(1.0, color="black", linestyle="--", linewidth=1, label="PyTorch (1×)")
    knob_values = sorted(table[x].dropna().astype(float).unique())
    if len(knob_values) <= 8:  # tick exactly the densities / bit widths that were run
        ax.set_xticks(knob_values, [f"{v:g}" for v in knob_values])
    if reverse_x:
        ax.invert_xaxis()
    _style(ax, title, xlabel, "speedup over PyTorch [×] (higher is better)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def fidelity_scatter(table: pd.DataFrame, variant: str, title: str, path: Path) -> Path:
    """Max relative error against speedup: what each speedup costs in accuracy."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    y = "max rel err"
    for technique, own in table.groupby("technique", sort=False):
        ax.scatter(own["speedup vs PyTorch [×]"], own[y], color=colour(technique),
                   marker=marker(technique), label=technique, s=30)
        for _, row in own.iterrows():
            value = row[variant]
            text = f"{variant} {value:g}" if isinstance(value, float) else str(value)
            ax.annotate(text, (row["speedup vs PyTorch [×]"], row[y]),
                        fontsize=7, xytext=(4, 3), textcoords="offset points")
    if (table[y] > 0).all():
        ax.set_yscale("log")
    _style(ax, title, "speedup over PyTorch [×]", "max relative error vs float64 reference")
    ax.legend(fontsize=8)
    return _save(fig, path)
