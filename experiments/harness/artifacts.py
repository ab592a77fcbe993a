"""A job's artifacts: the resolved config, layers.csv, raw timing samples, the tuning snapshot."""
from __future__ import annotations

import csv
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from experiments.tracking import contract as c
from experiments.tracking.credentials import mask

from .config import JobSpec
from .job import JobOutcome
from .results import layer_rows
from experiments.measure.timing import Measurement


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
    (directory / c.A_CONFIG).write_text(mask(OmegaConf.to_yaml(cfg, resolve=True)))
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
        # a consistent copy, whoever writes meanwhile
        with TuningDatabase(outcome.tuning.db_path, read_only=True) as db:
            db.snapshot(directory / c.A_TUNING_DB)
    if trace:
        (directory / c.A_TRACEBACK).write_text(trace)
