"""Raw timing samples (the `samples/` artifact of a job) -> intervals and noise flags for the report.

A job writes one CSV per measured target, `samples/<implementation>/<target>.csv` with one time per
call in seconds: `pytorch/model` and `<algo>/model` for the whole forward, `pytorch/<layer>` and
`<algo>/<layer>` per conv layer. Speedups are ratios of medians from these, so their 95% intervals
come from the same samples (experiments/measure/bootstrap.py: the interval the job logged, too).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from experiments.measure.bootstrap import Interval, ratio_of_medians

MODEL_TARGET = "model"
PYTORCH = "pytorch"


def read_samples(folder: Path) -> dict[str, np.ndarray]:
    """{'im2col/layer1.0.conv1': seconds, ...} for every CSV under the folder (summary.csv aside)."""
    found = {}
    for path in sorted(folder.rglob("*.csv")):
        if path.name == "summary.csv":
            continue
        target = path.relative_to(folder).with_suffix("").as_posix()
        found[target] = pd.read_csv(path)["seconds"].to_numpy(dtype=np.float64)
    return found


def speedup_interval(samples: dict[str, np.ndarray], algo: str, target: str = MODEL_TARGET) -> Interval | None:
    """95% interval of PyTorch's median over ours for one target of one job; None without both sample sets
    (and for PyTorch's own job, whose 'speedup' is 1 by definition)."""
    if algo == PYTORCH:
        return None
    ours, theirs = samples.get(f"{algo}/{target}"), samples.get(f"{PYTORCH}/{target}")
    if ours is None or theirs is None:
        return None
    return ratio_of_medians(theirs, ours)


def iqr_rel(values: np.ndarray | None) -> float:
    """IQR / median of a sample set (NaN without samples): the protocol's noise measure."""
    if values is None or len(values) == 0:
        return np.nan
    q25, q50, q75 = np.percentile(values, [25, 50, 75])
    return float((q75 - q25) / q50) if q50 > 0 else np.nan
