"""How long will a sweep take? Said before it starts: its jobs x the per-job time measured on this backend.

The per-job time is the median wall time (MLflow start to end) of the successful jobs this store holds for
the same model and backend, in any experiment; with none for the model, those of the backend. A sweep
without such history says so rather than guess.
"""
from __future__ import annotations

import statistics

from experiments.tracking import contract
from experiments.tracking import mlflow_log as mlf

LONG_S = 600.0       # a sweep expected to take longer than this is announced as long
HISTORY = 200        # the newest jobs looked at


def per_job_seconds(uri: str, backend: str, model: str) -> tuple[float, int, str] | None:
    """(median seconds per job, jobs it is the median of, of what) from the store's finished jobs; None without."""
    client = mlf.client(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return None
    base = f"tags.{contract.T_RUN_KIND} = 'job' AND tags.{contract.T_STATUS} = 'ok' AND tags.{contract.T_BACKEND} = '{backend}'"
    for where, what in ((f"{base} AND params.`model.name` = '{model}'", f"{model} on {backend}"), (base, backend)):
        runs = client.search_runs(experiments, where, max_results=HISTORY, order_by=["attributes.start_time DESC"])
        seconds = [(r.info.end_time - r.info.start_time) / 1e3 for r in runs if r.info.end_time]
        if seconds:
            return statistics.median(seconds), len(seconds), what
    return None


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min" if seconds >= 90 \
        else f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"


def announcement(uri: str, jobs: list[dict]) -> str:
    """One line: the expected duration of the jobs to run (plan entries with 'fields' and 'duplicate_of')."""
    to_run = [job for job in jobs if job.get("duplicate_of") is None]
    if not to_run:
        return ""
    parts, total, unknown = [], 0.0, 0
    by_kind: dict[tuple[str, str], int] = {}
    for job in to_run:
        key = (job["fields"]["backend"], job["fields"]["model"])
        by_kind[key] = by_kind.get(key, 0) + 1
    for (backend, model), count in sorted(by_kind.items()):
        found = per_job_seconds(uri, backend, model)
        if found is None:
            unknown += count
            continue
        seconds, n, what = found
        total += count * seconds
        parts.append(f"{count} x {_duration(seconds)} (median of {n} earlier jobs of {what})")
    if not parts:
        return f"estimate: no earlier job on this backend in the store to estimate {len(to_run)} jobs from"
    text = f"estimate: {' + '.join(parts)} = about {_duration(total)}"
    if unknown:
        text += f", and {unknown} jobs with no history"
    return text + (" -- a LONG sweep" if total > LONG_S else "")
