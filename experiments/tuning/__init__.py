"""algo=auto: per-layer choice of the fastest candidate, and the tuning database that remembers it.

    autotune.py   candidates, successive-halving measurement of one layer, the whole model
    database.py   the SQLite file that concurrent jobs share (key: device, runtime, kernel
                  source hash, layer shape, dtype, batch, candidate set)

``python -m experiments.tuning [--db PATH]`` lists a database's entries.
"""
from .autotune import (LayerChoice, TuningOutcome, TuningSpec, build_tuned_model, candidates_for,
                       tune_layer, tune_model, tuning_spec)
from .database import TuningDatabase, TuningEntry, TuningKey

__all__ = ["LayerChoice", "TuningDatabase", "TuningEntry", "TuningKey", "TuningOutcome", "TuningSpec",
           "build_tuned_model", "candidates_for", "tune_layer", "tune_model", "tuning_spec"]
