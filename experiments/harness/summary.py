"""What a sweep prints at its end: a comparison table of its jobs, and a link to the same in the MLflow UI.

    job   what ran   median [ms]   vs PyTorch, same job   speedup 95% CI   max rel err   J/image   mg CO2e/image

Rows are ordered by the speedup each job measured side by side with PyTorch (the same-job ratio, not
medians from different jobs), fastest first. The link opens the experiment's runs table as a shared
view (the UI's own "share view" mechanism: an experiment tag holding the view state) filtered to this
sweep's jobs, with the key metrics as columns, so nothing has to be picked by hand.
"""
from __future__ import annotations

import json
import math

from experiments.tracking import contract as c
from experiments.tracking import labels
from experiments.tracking import mlflow_log as mlf

UI_ADDRESS = "http://127.0.0.1:5000"   # `make ui` and `make server` listen here by default

COLUMNS = ("job", "what ran", "median [ms]", "vs PyTorch, same job", "speedup 95% CI", "max rel err", "J/image",
           "mg CO2e/image")


def _number(metrics: dict, name: str) -> float:
    value = metrics.get(name)
    return float(value) if value is not None else math.nan


def _speedup_cells(metrics: dict) -> tuple[str, str]:
    """'1.6× slower' and its interval '[0.44, 0.9]' ('not significant' when it contains 1)."""
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


def rows(results: list[dict]) -> list[tuple[str, ...]]:
    """One row per successful job, fastest relative to PyTorch first."""
    ok = [r for r in results if r.get("status") == "ok" and r.get("metrics")]
    ok.sort(key=lambda r: -_number(r["metrics"], c.SPEEDUP_VS_BASELINE) if not math.isnan(
        _number(r["metrics"], c.SPEEDUP_VS_BASELINE)) else math.inf)
    table = []
    for r in ok:
        m = r["metrics"]
        table.append((r.get("run_name") or r.get("name", "?"), r.get("what_ran", ""),
                      labels.significant(_number(m, c.LATENCY_MS)), *_speedup_cells(m),
                      _general(_number(m, c.MAX_REL_ERR), ".2g"), _general(_number(m, c.ENERGY_PER_INFERENCE_J), ".3g"),
                      _general(_number(m, c.CO2_PER_INFERENCE_MG), ".3g")))
    return table


def comparison_table(results: list[dict]) -> str:
    """The table as aligned text; '' when no job succeeded."""
    body = rows(results)
    if not body:
        return ""
    # one 'what ran' for all: said once above the table instead of in every row
    ran = {row[1] for row in body}
    columns = list(COLUMNS)
    if len(ran) == 1:
        body = [row[:1] + row[2:] for row in body]
        columns.pop(1)
    widths = [max(len(col), *(len(row[i]) for row in body)) for i, col in enumerate(columns)]
    def line(cells):
        return "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(cells, widths)))
    head = f"What ran: {ran.pop()}." if len(ran) == 1 else "What ran: see each row."
    notes = ("vs PyTorch: PyTorch's median timed in the same job / this job's median; its 95% bootstrap interval "
             "from the raw samples of both. Energy and CO2 per image: each job's energy window / the images it ran.")
    return "\n".join([head, line(columns), line(["-" * w for w in widths]), *map(line, body), notes])


def view_state(sweep_id: str) -> dict:
    """The runs table of one sweep's jobs, key metrics as columns, fastest first (MLflow UI view state)."""
    columns = [f"metrics.`{name}`" for name in c.UI_METRICS]
    return {"searchFilter": f"tags.{c.T_SWEEP_ID} = '{sweep_id}' AND tags.{c.T_RUN_KIND} = 'job'",
            "orderByKey": f"metrics.`{c.SPEEDUP_VS_BASELINE}`", "orderByAsc": False,
            # the table would sort them by name; columnOrder keeps ours (latency and speedup first)
            "selectedColumns": columns, "columnOrder": columns,
            # narrow enough for all of them beside the run names on a 1920-pixel screen
            "columnWidths": {column: 115 for column in columns}}


def share_view(tracking_uri: str, experiment: str, sweep_id: str) -> str:
    """Store the sweep's view in its experiment; the address that opens it (after `make ui` for a local store)."""
    client = mlf.client(tracking_uri)
    experiment_id = mlf.experiment_id(tracking_uri, experiment)
    # an experiment made by an older harness opens in MLflow 3's GenAI view otherwise
    client.set_experiment_tag(experiment_id, c.EXPERIMENT_KIND_TAG, c.EXPERIMENT_KIND)
    client.set_experiment_tag(experiment_id, c.SHARED_VIEW_TAG_PREFIX + sweep_id, json.dumps(view_state(sweep_id)))
    uri = mlf.resolve_uri(tracking_uri)
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else UI_ADDRESS
    return f"{base}/#/experiments/{experiment_id}/runs?viewStateShareKey={sweep_id}"
