"""What a sweep prints at its end: a comparison table of its jobs, and a link to the same in the MLflow UI.

    job   what ran   median [ms]   vs PyTorch, same job   speedup 95% CI   max rel err   J/image   mg CO2e/image

Rows are ordered by the speedup each job measured side by side with PyTorch (the same-job ratio, not
medians from different jobs), fastest first. Emulated jobs are in a correctness table of their own, in
the sweep's order (their times are no performance). Under the tables: PyTorch's baseline drift across
the jobs (experiments/tracking/drift.py) and the jobs that found the machine busy. The link opens the experiment's runs table as a shared
view (the UI's own "share view" mechanism: an experiment tag holding the view state) filtered to this
sweep's jobs, with the key metrics as columns, so nothing has to be picked by hand.
"""
from __future__ import annotations

import json
import math

from experiments.tracking import contract as c
from experiments.tracking import drift, labels
from experiments.tracking import mlflow_log as mlf
from experiments.tracking.credentials import split_password

from experiments.measure.energy import MIN_IMAGES, THIN

UI_ADDRESS = "http://127.0.0.1:5000"   # `make ui` and `make server` listen here by default
UI_WORKFLOW = "machine_learning"       # MLflow 3's model-training mode of the UI (not its GenAI mode)

COLUMNS = ("job", "what ran", "median [ms]", "vs PyTorch, same job", "speedup 95% CI", "max rel err", "J/image",
           "mg CO2e/image")
CORRECTNESS_COLUMNS = ("job", "what ran", "max rel err")
EMULATED_WHY = ("Emulated jobs: correctness only. The HIP kernels ran on the CPU through the emulator, whose "
                "times say nothing of a GPU: no speedup, energy or rank for them.")


def _number(metrics: dict, name: str) -> float:
    value = metrics.get(name)
    return float(value) if value is not None else math.nan


def _speedup_cells(metrics: dict) -> tuple[str, str]:
    """'1.6× slower' and its interval '1.2–2.3× slower' (', not significant' when it contains 1)."""
    speedup = _number(metrics, c.SPEEDUP_VS_BASELINE)
    if math.isnan(speedup):
        return "—", "—"
    low, high = _number(metrics, c.SPEEDUP_CI95_LOW), _number(metrics, c.SPEEDUP_CI95_HIGH)
    if math.isnan(low):    # PyTorch itself: the reference
        return ("reference", "") if speedup == 1 else (labels.ratio_text(speedup), "—")
    interval = labels.interval_text(low, high) + (", not significant" if low <= 1 <= high else "")
    return labels.ratio_text(speedup), interval


def _general(value: float, fmt: str) -> str:
    return "—" if math.isnan(value) else format(value, fmt)


def _energy_cells(result: dict) -> tuple[str, str]:
    """J and mg CO2e per image; a thin window's figures are marked (energy.py: too few images to compare)."""
    m = result["metrics"]
    joules, co2 = _general(_number(m, c.ENERGY_PER_INFERENCE_J), ".3g"), _general(_number(m, c.CO2_PER_INFERENCE_MG), ".3g")
    if (result.get("tags") or {}).get(c.T_ENERGY_WINDOW) == THIN:
        return f"{joules} (thin)", f"{co2} (thin)"
    return joules, co2


def _finished(results: list[dict]) -> list[dict]:
    return [r for r in results if r.get("status") == "ok" and r.get("metrics")]


def _name(result: dict) -> str:
    return result.get("run_name") or result.get("name", "?")


def rows(results: list[dict]) -> list[tuple[str, ...]]:
    """One row per successful measured job, fastest relative to PyTorch first (emulated jobs: none)."""
    ok = [r for r in _finished(results) if not r.get("emulated")]
    ok.sort(key=lambda r: -_number(r["metrics"], c.SPEEDUP_VS_BASELINE) if not math.isnan(
        _number(r["metrics"], c.SPEEDUP_VS_BASELINE)) else math.inf)
    return [(_name(r), r.get("what_ran", ""), labels.significant(_number(r["metrics"], c.LATENCY_MS)),
             *_speedup_cells(r["metrics"]), _general(_number(r["metrics"], c.MAX_REL_ERR), ".2g"), *_energy_cells(r))
            for r in ok]


def correctness_rows(results: list[dict]) -> list[tuple[str, ...]]:
    """One row per successful emulated job, in the sweep's order: what it checked, nothing it timed."""
    return [(_name(r), r.get("what_ran", ""), _general(_number(r["metrics"], c.MAX_REL_ERR), ".2g"))
            for r in _finished(results) if r.get("emulated")]


def _aligned(columns: list[str], body: list[tuple[str, ...]]) -> list[str]:
    # one 'what ran' for all: said once above the table instead of in every row
    ran = {row[1] for row in body}
    columns = list(columns)
    if len(ran) == 1:
        body = [row[:1] + row[2:] for row in body]
        columns.pop(1)
    widths = [max(len(col), *(len(row[i]) for row in body)) for i, col in enumerate(columns)]

    def line(cells):
        return "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(cells, widths)))
    head = f"What ran: {ran.pop()}." if len(ran) == 1 else "What ran: see each row."
    return [head, line(columns), line(["-" * w for w in widths]), *map(line, body)]


def drifts(results: list[dict]) -> list[drift.Drift]:
    """PyTorch's medians of the measured jobs of each scenario, where they drifted (experiments/tracking/drift.py)."""
    by_scenario: dict[str, dict[str, float]] = {}
    for r in _finished(results):
        if not r.get("emulated"):
            by_scenario.setdefault(r.get("scenario", ""), {})[_name(r)] = _number(r["metrics"], c.BASELINE_LATENCY_MS)
    found = [drift.baseline_drift(medians, scenario if len(by_scenario) > 1 else "")
             for scenario, medians in sorted(by_scenario.items())]
    return [d for d in found if d is not None]


def busy_jobs(results: list[dict]) -> list[str]:
    """The jobs that found the machine busy (experiments/harness/machine_load.py)."""
    return [_name(r) for r in results if (r.get("tags") or {}).get(c.T_QUIET) == "no"]


def comparison_table(results: list[dict]) -> str:
    """The table as aligned text, the emulated jobs' correctness table and what to beware of; '' when no job
    succeeded."""
    body, checked = rows(results), correctness_rows(results)
    lines = []
    if body:
        lines += _aligned(list(COLUMNS), body)
        lines.append("vs PyTorch: PyTorch's median timed in the same job / this job's median; its 95% bootstrap "
                     f"interval from the raw samples of both ({drift.WITHIN_JOB_ONLY}). Energy and CO2 per image: "
                     f"each job's energy window / the images it ran; (thin): fewer than {MIN_IMAGES} images, not "
                     f"comparable.")
    if checked:
        lines += [EMULATED_WHY, *_aligned(list(CORRECTNESS_COLUMNS), checked)]
    lines += [f"WARNING: {d.text()}" for d in drifts(results)]
    busy = busy_jobs(results)
    if busy:
        lines.append(f"WARNING: the machine was not quiet during {len(busy)} job(s): {', '.join(busy)} (each job's "
                     f"line and its run's {c.T_BUSY_PROCESSES} tag say what was busy).")
    return "\n".join(lines)


def view_state(sweep_id: str) -> dict:
    """The runs table of one sweep's jobs, fastest first (MLflow UI view state): the speedup in words ('2.35×
    slower', the vs_pytorch tag; MLflow prints metrics with all their digits) beside the key metrics."""
    columns = [f"tags.`{c.T_VS_PYTORCH}`", *(f"metrics.`{name}`" for name in c.UI_METRICS)]
    return {"searchFilter": f"tags.{c.T_SWEEP_ID} = '{sweep_id}' AND tags.{c.T_RUN_KIND} = 'job'",
            "orderByKey": f"metrics.`{c.SPEEDUP_VS_BASELINE}`", "orderByAsc": False,
            # the table would sort them by name; columnOrder keeps ours (latency and speedup first)
            "selectedColumns": columns, "columnOrder": columns,
            # narrow enough for all of them beside the run names on a 1920-pixel screen
            "columnWidths": {column: 115 for column in columns} | {columns[0]: 130}}


def share_view(tracking_uri: str, experiment: str, sweep_id: str) -> str:
    """Store the sweep's view in its experiment; the address that opens it (after `make ui` for a local store)."""
    client = mlf.client(tracking_uri)
    experiment_id = mlf.experiment_id(tracking_uri, experiment)
    # an experiment made by an older harness opens in MLflow 3's GenAI view otherwise
    client.set_experiment_tag(experiment_id, c.EXPERIMENT_KIND_TAG, c.EXPERIMENT_KIND)
    client.set_experiment_tag(experiment_id, c.SHARED_VIEW_TAG_PREFIX + sweep_id, json.dumps(view_state(sweep_id)))
    uri = split_password(mlf.resolve_uri(tracking_uri))[0]     # the browser asks for the password
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else UI_ADDRESS
    # workflowType: the UI's own query parameter for its mode (machine_learning: "Model training"; the UI
    # otherwise opens in its GenAI mode, whatever the experiment's kind)
    return f"{base}/#/experiments/{experiment_id}/runs?viewStateShareKey={sweep_id}&workflowType={UI_WORKFLOW}"
