"""What a sweep shows a reader: run names in the MLflow UI, its closing table and its shared view."""
import math

from experiments.harness import naming, summary
from experiments.tracking import contract as c


def job(algo, gemm="vendor", model="resnet18", quant="fp32", prune="dense", backend="numpy"):
    return {"model": model, "algo": algo, "gemm": "" if algo in ("scalar", "pytorch") else gemm, "quant": quant,
            "prune": prune, "input": "224x224", "batch": "b1", "backend": backend}


def test_children_are_named_by_what_sets_them_apart_and_the_parent_by_what_was_swept():
    jobs = [job("im2col"), job("kn2row"), job("scalar")]
    overrides = [["algo=im2col"], ["algo=kn2row"], ["algo=scalar"]]
    assert naming.child_names(jobs) == ["im2col", "kn2row", "scalar"]   # scalar's missing GEMM sets none apart
    assert naming.parent_name(jobs, overrides) == "algo=im2col,kn2row,scalar · resnet18 · numpy"


def test_two_swept_axes_name_both_and_a_swept_model_leaves_the_parent():
    jobs = [job(a, model=m) for m in ("resnet18", "vgg16") for a in ("im2col", "kn2row")]
    overrides = [[f"model={m}", f"algo={a}"] for m in ("resnet18", "vgg16") for a in ("im2col", "kn2row")]
    assert naming.child_names(jobs) == ["resnet18/im2col", "resnet18/kn2row", "vgg16/im2col", "vgg16/kn2row"]
    assert naming.parent_name(jobs, overrides) == "model=resnet18,vgg16 · algo=im2col,kn2row · numpy"


def test_jobs_that_differ_where_no_name_looks_are_numbered():
    assert naming.child_names([job("im2col"), job("im2col")]) == ["im2col #1", "im2col #2"]


def result(name, latency, speedup, low=None, high=None, status="ok", **extra):
    metrics = {c.LATENCY_MS: latency, c.SPEEDUP_VS_BASELINE: speedup, c.MAX_REL_ERR: 3e-7,
               c.ENERGY_PER_INFERENCE_J: 2.0, c.CO2_PER_INFERENCE_MG: 0.2, **extra}
    if low is not None:
        metrics.update({c.SPEEDUP_CI95_LOW: low, c.SPEEDUP_CI95_HIGH: high})
    return {"name": name, "run_name": name, "status": status, "metrics": metrics,
            "what_ran": "numpy reference on the CPU, not the HIP kernels"}


def test_closing_table_orders_by_the_same_job_speedup_and_reads_slower_below_one():
    text = summary.comparison_table([
        result("scalar", 3772.0, 0.116, 0.09, 0.2), result("im2col", 853.1, 0.262, 0.22, 0.32),
        result("kn2row", 40.0, 1.24, 0.98, 1.95), result("broken", math.nan, math.nan, status="failed")])
    lines = text.splitlines()
    assert lines[0] == "What ran: numpy reference on the CPU, not the HIP kernels."
    rows = lines[3:6]
    assert [row.split()[0] for row in rows] == ["kn2row", "im2col", "scalar"]
    assert "1.24× faster" in rows[0] and "1.02× slower to 1.95× faster, not significant" in rows[0]
    assert "3.82× slower" in rows[1] and "3.12–4.55× slower" in rows[1] and "not significant" not in rows[1]
    assert "3772" in rows[2] and "e+" not in text
    assert "broken" not in text


def test_the_shared_view_filters_the_sweeps_jobs_and_shows_the_key_metrics_in_order():
    view = summary.view_state("S1")
    assert view["searchFilter"] == "tags.sweep_id = 'S1' AND tags.run_kind = 'job'"
    assert view["selectedColumns"] == view["columnOrder"] == [f"tags.`{c.T_VS_PYTORCH}`",
                                                              *(f"metrics.`{m}`" for m in c.UI_METRICS)]
    assert c.LATENCY_MS in c.UI_METRICS and c.CO2_PER_INFERENCE_MG in c.UI_METRICS
