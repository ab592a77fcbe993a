"""The MLflow UI as a reader opens it: the link a sweep prints, rendered by headless Chromium.

It guards what a reader sees, so it runs in the default suite (.ci/run installs Debian's `chromium`; it
skips without it). The browser only reaches 127.0.0.1: every other host name resolves to nothing.
"""
import re
import shutil
import subprocess

import pytest

from experiments.tracking import contract, labels
from tests.servers import make_ui

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SMALL = ["model=resnet18", "model.input_size=32", "backend=numpy", "gemm=vendor", "bench=smoke",
         "bench.model.warmup=2", "bench.layer.warmup=1", "bench.layer.min_samples=2", "energy=codecarbon",
         "bench.energy_s=0.3"]


def rendered_dom(url: str, tmp_path) -> str:
    """The page's DOM after its scripts ran (virtual time lets the single-page app fetch and render)."""
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
         "--disable-background-networking", "--disable-sync", "--disable-component-update",
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", f"--user-data-dir={tmp_path / 'chromium'}",
         "--window-size=1920,1080", "--virtual-time-budget=30000", "--dump-dom", url],
        capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def rows(dom: str) -> dict[str, str]:
    """The HTML of each row of the runs table by run id (a row is split over the pinned and scrolled parts)."""
    marks = list(re.finditer(r'role="row" row-index="\d+" row-id="([0-9a-f]{32})"', dom))
    found: dict[str, str] = {}
    for mark, after in zip(marks, marks[1:] + [None]):
        found[mark.group(1)] = found.get(mark.group(1), "") + dom[mark.end():after.start() if after else None]
    return found


def shown_name(row: str) -> str:
    return re.search(r'href="#/experiments/\d+/runs/[0-9a-f]{32}"><span[^>]*>(.*?)</span>', row).group(1)


def shown_tag(row: str, name: str) -> str:
    return re.search(rf'col-id="tags.`{name}`"[^>]*>(?:<[^>]*>)*?([^<>]+)<', row).group(1)


def shown_metric(row: str, name: str) -> str:
    return re.search(rf'col-id="metrics.`{name}`"[^>]*><div[^>]*><span[^>]*class="ag-cell-value">(.*?)</span>',
                     row).group(1)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_the_sweeps_link_opens_its_jobs_with_latency_and_speedup(convbench, tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert convbench("-m", "algo=im2col,kn2row,scalar", *SMALL, f"tracking.uri={uri}") == 0
    out = capsys.readouterr().out
    link = next(line for line in out.splitlines() if "viewStateShareKey=" in line).split()[-1]
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("convbench")
    jobs = {run.info.run_id: (run.info.run_name, run.data.metrics)
            for run in client.search_runs([experiment.experiment_id])
            if run.data.tags.get(contract.T_RUN_KIND) == "job"}
    with make_ui(tmp_path, uri) as ui:
        dom = rendered_dom(link.replace("http://127.0.0.1:5000", ui), tmp_path)
    (tmp_path / "ui.html").write_text(dom)   # for a reader of a failure
    # the link's workflowType=machine_learning: the model-training mode (its sidebar has the model registry,
    # the runs page is "Runs"), not the GenAI mode ("Training runs" beside traces, judges, prompts)
    assert "Model registry" in dom and "Training runs" not in dom and "Judges" not in dom
    shown = rows(dom)
    assert set(shown) == set(jobs), "the view lists exactly the sweep's jobs"
    for run_id, row in shown.items():
        name = shown_name(row)
        if name != "pytorch":   # the speedup in words, as the terminal printed it
            assert shown_tag(row, contract.T_VS_PYTORCH) == labels.ratio_text(jobs[run_id][1][
                contract.SPEEDUP_VS_BASELINE]), name
        assert name == jobs[run_id][0] and len(name) <= 24      # short enough for the name column (190 px)
        metrics = jobs[run_id][1]
        for metric in (contract.LATENCY_MS, contract.SPEEDUP_VS_BASELINE):
            assert float(shown_metric(row, metric)) == pytest.approx(metrics[metric], rel=1e-3), (name, metric)
    assert sorted(name for name, _ in jobs.values()) == ["im2col", "kn2row", "scalar"]
    for name in contract.UI_METRICS:   # every key metric is a column on a 1920-pixel screen, none picked by hand
        assert f'col-id="metrics.`{name}`"' in dom, name
