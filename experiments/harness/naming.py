"""Run names a reader takes in at a glance in the MLflow UI.

A sweep's parent is named by what was swept and what every job shares
("algo=im2col,kn2row,scalar · resnet18 · numpy"); each child only by what sets it apart from its
siblings ("im2col"), since the parent says the rest. A job alone keeps its full name
(JobSpec.name, e.g. resnet18/im2col/vendor/fp32/dense).
"""
from __future__ import annotations

from experiments.tracking.contract import NAME_SEPARATOR


def fields(spec) -> dict[str, str]:
    """The parts of a job's identity a name can show, in reading order."""
    prune = "dense" if spec.prune == "none" else f"{spec.prune}{spec.prune_amount:g}"
    return {"model": spec.model, "algo": spec.algo, "gemm": spec.variant.gemm_label, "quant": spec.quant,
            "prune": prune, "input": "x".join(map(str, spec.input_size)), "batch": f"b{spec.batch_size}",
            "backend": spec.runtime.name}


def swept(job_overrides: list[list[str]]) -> list[str]:
    """'key=v1,v2' for every override whose value differs between jobs, in command-line order."""
    values: dict[str, list[str]] = {}
    for overrides in job_overrides:
        for override in overrides:
            key, _, value = override.partition("=")
            seen = values.setdefault(key, [])
            if value not in seen:
                seen.append(value)
    return [f"{key}={','.join(found)}" for key, found in values.items() if len(found) > 1]


def _varying(jobs: list[dict[str, str]]) -> list[str]:
    # an empty part (no GEMM for scalar and pytorch) sets no job apart
    keys = list(jobs[0]) if jobs else []
    return [k for k in keys if len({job[k] for job in jobs if job[k]}) > 1]


def child_names(jobs: list[dict[str, str]]) -> list[str]:
    """One name per job (its fields()): the parts that differ between the jobs of the sweep."""
    varying = _varying(jobs)
    names = ["/".join(job[k] for k in varying if job[k]) or job["algo"] for job in jobs]
    # jobs that differ only where no name looks (seed, protocol...): their number tells them apart
    return [f"{name} #{num + 1}" if names.count(name) > 1 else name for num, name in enumerate(names)]


def parent_name(jobs: list[dict[str, str]], job_overrides: list[list[str]]) -> str:
    """What was swept, then the model and backend when every job shares them ('' when unknown)."""
    varying = _varying(jobs)
    shared = [jobs[0][k] for k in ("model", "backend") if jobs and k not in varying]
    return NAME_SEPARATOR.join(swept(job_overrides) + shared)
