"""run.py end to end on the numpy backend: a smoke sweep, a failing job, a single run, bad input.

Small input (resnet18 at 32x32, batch 1) and short protocols keep each test to seconds.
"""
import json
from pathlib import Path

import pytest

from experiments.conv.tolerance import RELATIVE_TOLERANCE
from experiments.tracking import contract, labels

SMALL = ["model=resnet18", "model.input_size=32", "backend=numpy", "gemm=vendor", "bench=smoke",
         "bench.model.warmup=2", "bench.layer.warmup=1", "bench.layer.min_samples=2"]


def _client(uri):
    from mlflow.tracking import MlflowClient
    return MlflowClient(tracking_uri=uri)


def _runs(uri, experiment="convbench"):
    client = _client(uri)
    found = client.get_experiment_by_name(experiment)
    return [] if found is None else client.search_runs([found.experiment_id])


def _split(runs):
    parents = [r for r in runs if r.data.tags.get(contract.T_RUN_KIND) == "parent"]
    children = [r for r in runs if r.data.tags.get(contract.T_RUN_KIND) == "job"]
    return parents, children


def _artifacts(client, run_id, path=None):
    found = []
    for item in client.list_artifacts(run_id, path):
        found += _artifacts(client, run_id, item.path) if item.is_dir else [item.path]
    return found


def test_smoke_sweep_logs_three_children_under_one_finished_parent(convbench, tmp_path, network_attempts, capsys):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    code = convbench("-m", "algo=im2col,kn2row,scalar", *SMALL, "energy=codecarbon", "bench.energy_s=0.3",
                     f"tracking.uri={uri}")
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "3 of 3 jobs ok" in out.out
    assert "job 2/3 resnet18/kn2row/vendor/fp32/dense (numpy reference on the CPU, not the HIP kernels)" in out.out
    parents, children = _split(_runs(uri))
    assert len(parents) == 1 and len(children) == 3
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.data.tags[contract.T_STATUS] == "ok"
    # the UI names: the parent by what was swept and what all jobs share, the children by what sets them apart
    assert parent.info.run_name == "algo=im2col,kn2row,scalar · resnet18 · numpy"
    assert sorted(child.info.run_name for child in children) == ["im2col", "kn2row", "scalar"]
    # the closing table: one row per technique, what ran said once above it
    table = out.out[out.out.index("What ran: numpy reference on the CPU, not the HIP kernels."):]
    header, rule, *rows = table.splitlines()[1:6]
    assert header.split()[:3] == ["job", "median", "[ms]"] and "speedup 95% CI" in header and "mg CO2e/image" in header
    assert sorted(row.split()[0] for row in rows) == ["im2col", "kn2row", "scalar"]
    by_name = {child.info.run_name: child for child in children}
    speedups = [by_name[row.split()[0]].data.metrics[contract.SPEEDUP_VS_BASELINE] for row in rows]
    assert speedups == sorted(speedups, reverse=True)                      # fastest relative to PyTorch first
    link = next(line for line in out.out.splitlines() if "viewStateShareKey=" in line).split()[-1]
    experiment = _client(uri).get_experiment_by_name("convbench")
    assert link.endswith(f"/#/experiments/{experiment.experiment_id}/runs?viewStateShareKey="
                         f"{parent.data.tags[contract.T_SWEEP_ID]}&workflowType=machine_learning")
    view = json.loads(experiment.tags[contract.SHARED_VIEW_TAG_PREFIX + parent.data.tags[contract.T_SWEEP_ID]])
    assert view["selectedColumns"][:3] == ["tags.`vs_pytorch`", "metrics.`latency_ms`", "metrics.`speedup_vs_baseline`"]
    assert experiment.tags[contract.EXPERIMENT_KIND_TAG] == contract.EXPERIMENT_KIND
    client = _client(uri)
    for child in children:
        tags, metrics = child.data.tags, child.data.metrics
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert tags[contract.T_VS_PYTORCH] == labels.ratio_text(metrics[contract.SPEEDUP_VS_BASELINE])
        assert tags[contract.T_SWEEP_ID] == parent.data.tags[contract.T_SWEEP_ID]
        assert child.info.status == "FINISHED" and tags[contract.T_STATUS] == "ok"
        assert set(contract.METRICS) <= set(metrics), set(contract.METRICS) - set(metrics)
        assert metrics[contract.MAX_REL_ERR] <= RELATIVE_TOLERANCE["fp32"]
        assert metrics[contract.SPEEDUP_VS_BASELINE] == pytest.approx(
            metrics[contract.BASELINE_LATENCY_MS] / metrics[contract.LATENCY_MS])
        assert tags[contract.T_ENERGY_MODE] == "estimated"
        # per inference, beside the window's totals: the window's emissions over its images (batch 1)
        images = metrics[contract.ENERGY_KWH] * 3.6e6 / metrics[contract.ENERGY_PER_INFERENCE_J]
        assert metrics[contract.CO2_PER_INFERENCE_MG] == pytest.approx(metrics[contract.EMISSIONS_KG] * 1e6 / images)
        assert metrics[contract.SPEEDUP_CI95_LOW] <= metrics[contract.SPEEDUP_VS_BASELINE] \
            <= metrics[contract.SPEEDUP_CI95_HIGH]
        assert tags[contract.T_BACKEND] == "numpy" and tags[contract.T_TIMING] == "measured"
        for tag in (contract.T_DEVICE, contract.T_RUNTIME, contract.T_GIT_SHA, contract.T_GIT_DIRTY,
                    contract.T_KERNEL_HASH, contract.T_VERSION_PREFIX + "torch"):
            assert tags.get(tag), tag
        params = child.data.params
        for name in (contract.P_MODEL, contract.P_BATCH, contract.P_INPUT_SIZE, contract.P_ALGO, contract.P_GEMM,
                     contract.P_TILE, contract.P_BACKEND, contract.P_QUANT, contract.P_PRUNE,
                     contract.P_PRUNE_AMOUNT, contract.P_BENCH, contract.P_CACHE_MODE):
            assert name in params, name
        artifacts = _artifacts(client, child.info.run_id)
        assert {contract.A_CONFIG, contract.A_LAYERS} <= set(artifacts)
        algo = params[contract.P_ALGO]
        assert f"{contract.A_SAMPLES_DIR}/{algo}/model.csv" in artifacts
        assert f"{contract.A_SAMPLES_DIR}/pytorch/model.csv" in artifacts
        layers = Path(client.download_artifacts(child.info.run_id, contract.A_LAYERS, str(tmp_path)))
        import pandas as pd
        frame = pd.read_csv(layers)
        assert list(frame.columns) == list(contract.LAYER_COLUMNS)
        assert len(frame) == 20                       # resnet18's conv layers
        assert (frame["max_rel_err"] <= RELATIVE_TOLERANCE["fp32"]).all()
        assert frame["latency_ms"].notna().all() and frame["baseline_latency_ms"].notna().all()
    assert network_attempts == []


def test_a_failing_job_leaves_the_others_complete_and_the_parent_closed(convbench, tmp_path, monkeypatch, capsys):
    from experiments.harness.job import Job

    real_check = Job._check

    def check(self):
        if self.spec.algo == "kn2row":
            raise RuntimeError("injected kernel failure")
        return real_check(self)

    monkeypatch.setattr(Job, "_check", check)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    code = convbench("-m", "algo=im2col,kn2row,pytorch", *SMALL, "energy=off", f"tracking.uri={uri}")
    err = capsys.readouterr().err
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert "2 of 3 jobs ok" in last and "resnet18/kn2row/vendor/fp32/dense: RuntimeError: injected kernel failure" in last
    parents, children = _split(_runs(uri))
    assert len(parents) == 1 and parents[0].info.status == "FAILED"
    assert parents[0].data.tags[contract.T_STATUS] == "failed"
    by_algo = {r.data.params[contract.P_ALGO]: r for r in children}
    assert set(by_algo) == {"im2col", "kn2row", "pytorch"}
    failed = by_algo["kn2row"]
    assert failed.info.status == "FAILED" and failed.data.tags[contract.T_STATUS] == "failed"
    assert failed.data.tags[contract.T_ERROR] == "RuntimeError: injected kernel failure"
    assert "traceback.txt" in [a.path for a in _client(uri).list_artifacts(failed.info.run_id)]
    for algo in ("im2col", "pytorch"):
        run = by_algo[algo]
        assert run.info.status == "FINISHED" and contract.LATENCY_MS in run.data.metrics
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
    pytorch = by_algo["pytorch"].data.metrics
    assert pytorch[contract.SPEEDUP_VS_BASELINE] == 1.0


def test_tolerance_exceeded_is_a_failed_run_with_its_errors(convbench, tmp_path, monkeypatch):
    import experiments.harness.job as job

    real = job._rel_err
    monkeypatch.setattr(job, "_rel_err", lambda y, ref: 10 * real(y, ref) + 1e-3)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert convbench(*SMALL, "energy=off", "algo=scalar", f"tracking.uri={uri}") == 1
    (run,) = _runs(uri)
    assert run.info.status == "FAILED"
    assert "exceeds the fp32 tolerance" in run.data.tags[contract.T_ERROR]
    assert run.data.metrics[contract.MAX_REL_ERR] > RELATIVE_TOLERANCE["fp32"]
    assert contract.LATENCY_MS not in run.data.metrics     # never a fast run
    assert "mlflow.parentRunId" not in run.data.tags


def test_single_run_prints_a_summary_and_the_ui_command(convbench, tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert convbench(*SMALL, "energy=off", "algo=im2col", f"tracking.uri={uri}") == 0
    out = capsys.readouterr().out
    for word in ("latency", "PyTorch", "speedup", "max_rel_err", f"Open the UI: make ui TRACKING_URI={uri}",
                 "numpy reference on the CPU, not the HIP kernels"):
        assert word in out
    (run,) = _runs(uri)
    assert run.info.status == "FINISHED" and run.data.tags[contract.T_RUN_KIND] == "job"
    harness = json.loads(Path(_client(uri).download_artifacts(run.info.run_id, "harness.json", str(tmp_path)))
                         .read_text())
    assert harness["fixed_cost_s"] > 0


def test_grouped_and_depthwise_conv_model_runs_as_a_job(convbench, tmp_path, capsys):
    """shufflenet_v2_x1_0 (depthwise 3x3 + pointwise) on our algorithms, beside a groups=1 model."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    code = convbench("-m", "model=squeezenet1_1,shufflenet_v2_x1_0", "algo=im2col", "model.input_size=64",
                     "backend=numpy", "bench=smoke", "bench.model.warmup=1", "bench.layer.warmup=1",
                     "bench.layer.min_samples=1", "bench.model.min_samples=2", "energy=off",
                     f"tracking.uri={uri}")
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "2 of 2 jobs ok" in out.out
    parents, children = _split(_runs(uri))
    assert {r.data.params[contract.P_MODEL]: r.info.status for r in children} == {
        "squeezenet1_1": "FINISHED", "shufflenet_v2_x1_0": "FINISHED"}
    for child in children:
        assert child.data.metrics[contract.MAX_REL_ERR] <= RELATIVE_TOLERANCE["fp32"]
    assert parents[0].info.status == "FINISHED"
    (shufflenet,) = [r for r in children if r.data.params[contract.P_MODEL] == "shufflenet_v2_x1_0"]
    import pandas as pd
    frame = pd.read_csv(_client(uri).download_artifacts(shufflenet.info.run_id, contract.A_LAYERS, str(tmp_path)))
    depthwise = frame["groups"] > 1
    assert depthwise.sum() == 19 and (frame[depthwise]["variant"] == "depthwise/fp32").all()
    assert (frame[~depthwise]["variant"] == "im2col/vendor/fp32").all() and (frame[depthwise]["gemm_groups"] == 0).all()
    assert (frame["max_rel_err"] <= RELATIVE_TOLERANCE["fp32"]).all()


def test_bad_input_stops_a_sweep_before_any_work(convbench, tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    code = convbench("-m", "model.name=resnet18,resnt50", "gemm=blocked", "gemm.tile=12,16", *SMALL[2:3],
                     "energy=off", f"tracking.uri={uri}")
    err = capsys.readouterr().err
    assert code == 2
    assert "nothing was run" in err
    assert "did you mean resnet50" in err.lower()
    assert "gemm.tile=12" in err and "valid: 8, 16, 32" in err
    assert "backend 'numpy' runs no kernels" in err          # blocked GEMM on numpy, tile 16
    assert _runs(uri) == []


def test_duplicate_jobs_of_a_sweep_are_skipped(convbench, tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    code = convbench("-m", "algo=pytorch,scalar", "gemm=vendor,blocked", *SMALL[:2], *SMALL[4:], "backend=numpy",
                     "energy=off", f"tracking.uri={uri}")
    out = capsys.readouterr().out
    assert code == 0
    assert "2 of 2 jobs ok (2 duplicates skipped)" in out
    _, children = _split(_runs(uri))
    assert sorted(r.data.params[contract.P_ALGO] for r in children) == ["pytorch", "scalar"]


def test_a_job_whose_task_raises_does_not_stop_the_sweep(convbench, tmp_path, monkeypatch, capsys):
    from experiments.harness import runner

    real = runner._run_logged

    def run_logged(cfg, *args):
        if cfg.algo.name == "scalar":
            raise KeyError("bug in the harness")
        return real(cfg, *args)

    monkeypatch.setattr(runner, "_run_logged", run_logged)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    code = convbench("-m", "algo=scalar,pytorch", *SMALL, "energy=off", f"tracking.uri={uri}")
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 1 and "1 of 2 jobs ok" in last and "harness error: KeyError" in last
    parents, children = _split(_runs(uri))
    assert parents[0].info.status == "FAILED"
    assert [r.data.params[contract.P_ALGO] for r in children] == ["pytorch"]
    assert children[0].info.status == "FINISHED"


def test_a_sweep_stopped_by_an_exception_closes_its_parent(convbench, tmp_path, monkeypatch):
    """A crash of the sweep itself (here: the task function, outside the job's own error handling)."""
    import run

    def crashed(cfg):
        raise MemoryError("in the launcher")

    monkeypatch.setattr(run.runner, "run_job", crashed)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert convbench("-m", "algo=scalar,pytorch", *SMALL, "energy=off", f"tracking.uri={uri}") == 1   # Hydra's exit
    (parent,) = _runs(uri)
    assert parent.info.status == "FAILED" and parent.data.tags[contract.T_STATUS] == "failed"
