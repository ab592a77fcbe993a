"""Reduced-precision jobs (fp16/int8): the exactness gate decides ok/failed, the precision cost against the
fp32 model is measured and logged (and fails a job only above quant.max_cost); calibration, quant.skip,
and the weights a job ran with."""
import csv
import io

import numpy as np
import pytest
import torch
from torch import nn

from experiments.compress.quantization import QuantOptions, calibrate, skipped_layers
from experiments.harness.models import build_model
from experiments.tracking import contract

SMALL = ["backend=numpy", "gemm=vendor", "bench=smoke", "energy=off", "bench.model.warmup=1",
         "bench.model.min_samples=2", "bench.layer.warmup=1", "bench.layer.min_samples=1",
         "accuracy.eval_images=4"]
MOBILENET = ["model=mobilenet_v2", "model.input_size=32", "algo=im2col"]
DIGITS = ["model=digits_cnn", "algo=im2col"]


def _jobs(uri):
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("convbench").experiment_id])
    return client, {r.data.tags[contract.T_JOB_NAME]: r for r in runs if r.data.tags.get(contract.T_RUN_KIND) == "job"}


def _layers_csv(client, run) -> list[dict]:
    path = client.download_artifacts(run.info.run_id, contract.A_LAYERS)
    with open(path) as f:
        return list(csv.DictReader(f))


def test_mobilenet_int8_and_fp16_pass_the_gate_and_log_their_cost(convbench, tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert convbench("-m", *MOBILENET, "quant=fp32,fp16,int8", "quant.skip=[first]", f"tracking.uri={uri}",
                     *SMALL) == 0
    out = capsys.readouterr().out
    assert "exactness gate passed (" in out and "int8 cost vs fp32: model rel err" in out and "(random weights)" in out
    client, jobs = _jobs(uri)
    assert set(jobs) == {f"mobilenet_v2/im2col/vendor/{q}/dense" for q in ("fp32", "fp16", "int8")}
    assert contract.PRECISION_REL_ERR not in jobs["mobilenet_v2/im2col/vendor/fp32/dense"].data.metrics
    for name, run in jobs.items():
        if "/fp32/" in name:
            continue
        m, tags = run.data.metrics, run.data.tags
        assert tags[contract.T_STATUS] == "ok", tags.get(contract.T_ERROR)
        for key in (contract.PRECISION_REL_ERR, contract.PRECISION_TOP1_AGREEMENT, contract.PRECISION_WORST_LAYER_REL_ERR):
            assert key in m, (name, key)
        assert m[contract.FP32_LAYERS] == 1 and tags[contract.T_FP32_LAYERS] == "features.0.0"
        assert tags[contract.T_WEIGHTS] == "random" and tags[contract.T_PRECISION_WORST_LAYER].startswith("features.")
        rows = {row["layer"]: row for row in _layers_csv(client, run)}
        assert len(rows) == 52 and rows["features.0.0"]["variant"] == "im2col/vendor/fp32"
        assert rows["features.0.0"]["gate"] == "fp32 tolerance"
        dtype = name.split("/")[3]
        costs = {layer: float(row["precision_rel_err"]) for layer, row in rows.items() if row["variant"].endswith(dtype)}
        assert len(costs) == 51 and max(costs.values()) == pytest.approx(m[contract.PRECISION_WORST_LAYER_REL_ERR])
    int8 = {row["layer"]: row for row in _layers_csv(client, jobs["mobilenet_v2/im2col/vendor/int8/dense"])}
    assert int8["features.1.conv.1"]["gate"] == "bit-exact"                 # a pointwise GEMM layer
    assert int8["features.1.conv.0.0"]["gate"] == "float32 bound"           # depthwise: float32 kernel
    assert 0 < jobs["mobilenet_v2/im2col/vendor/int8/dense"].data.metrics[contract.PRECISION_REL_ERR] < 1
    _report_shows_the_cost_per_precision(uri, jobs)


def test_max_cost_turns_the_cost_into_a_failure(convbench, tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert convbench("-m", *DIGITS, "quant=int8", "quant.max_cost=1e-6", f"tracking.uri={uri}", *SMALL) == 1
    _, jobs = _jobs(uri)
    run = jobs["digits_cnn/im2col/vendor/int8/dense"]
    assert run.data.tags[contract.T_STATUS] == "failed"
    assert "exceeds quant.max_cost=1e-06" in run.data.tags[contract.T_ERROR]
    assert contract.PRECISION_REL_ERR in run.data.metrics          # what was measured is kept


def test_a_wrong_kernel_fails_the_job(convbench, tmp_path, one_tap_off_numpy):
    """One tap of one channel read from the next offset on the numpy path: the int8 job fails the gate."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert convbench("-m", *DIGITS, "quant=int8", f"tracking.uri={uri}", *SMALL) == 1
    _, jobs = _jobs(uri)
    error = jobs["digits_cnn/im2col/vendor/int8/dense"].data.tags[contract.T_ERROR]
    assert "im2col/vendor/int8 fails the exactness gate" in error and "stem.0: " in error and "bit-exact" in error, error


def test_unknown_skip_selector_fails_the_job_naming_the_valid_ones(convbench, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert convbench("-m", *DIGITS, "quant=int8", "quant.skip=[stem.1]", f"tracking.uri={uri}", *SMALL) == 1
    _, jobs = _jobs(uri)
    error = jobs["digits_cnn/im2col/vendor/int8/dense"].data.tags[contract.T_ERROR]
    assert "'stem.1' selects no conv layer" in error and "first, last, depthwise" in error


def test_named_weights_are_loaded_and_labelled(convbench, tmp_path, monkeypatch, capsys):
    """model.weights=DEFAULT from the hub cache (a checkpoint placed there; nothing downloads)."""
    from experiments.torchvision_compat import torchvision
    weights = torchvision.models.get_model_weights("mobilenet_v2").DEFAULT
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    state = build_model("mobilenet_v2", None, 1).state_dict()
    torch.save(state, checkpoints / weights.url.rsplit("/", 1)[1])
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert convbench("-m", *MOBILENET, "quant=int8", "model.weights=DEFAULT", f"tracking.uri={uri}", *SMALL) == 0
    assert f"({weights} weights)" in capsys.readouterr().out
    _, jobs = _jobs(uri)
    assert jobs["mobilenet_v2/im2col/vendor/int8/dense"].data.tags[contract.T_WEIGHTS] == str(weights)


def test_cost_measures():
    """Model cost: relative error of the logits and top-1 agreement against the fp32 model; worst layer."""
    from experiments.compress import precision_cost
    from experiments.compress.fidelity import EvaluationData
    fp32 = nn.Linear(3, 4, bias=False)
    with torch.no_grad():
        fp32.weight.copy_(torch.eye(4, 3))
    images = torch.tensor([[3.0, 1, 0], [0, 2, 1], [1, 0, 5], [0, 4, 1]])
    ours = images @ torch.eye(4, 3).T
    ours[0, 1] = 3.5        # image 0: class 1 beats class 0 (3); logits off by 2.5 against a peak of 5
    cost = precision_cost.measure(ours, fp32, EvaluationData(images, None, "test"), torch.device("cpu"),
                                  {"a": 0.01, "b": 0.2}, "int8", ("c",), "random")
    assert cost.top1_agreement == 0.75 and cost.model_rel_err == pytest.approx(2.5 / 5)
    assert cost.worst_layer == ("b", 0.2) and cost.exceeds(None) is None and cost.exceeds(0.8) is None
    assert "exceeds quant.max_cost=0.4; worst layer b 0.2" in cost.exceeds(0.4)
    assert "1 layers kept fp32 (random weights)" in cost.describe()


def test_fp32_layers_stay_fp32():
    from experiments import swap_conv2d
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 2, 1)).eval()
    ours = swap_conv2d(model, "im2col", "vendor", backend="numpy", dtype="int8", fp32_layers=("1",))
    assert [ours[0].variant.dtype, ours[1].variant.dtype] == ["int8", "fp32"]


def test_skip_selectors():
    model = build_model("mobilenet_v2", None, 0)
    convs = [name for name, m in model.named_modules() if type(m) is nn.Conv2d]
    depthwise = skipped_layers(model, ["depthwise"])
    assert len(depthwise) == 17 and all(model.get_submodule(n).groups > 1 for n in depthwise)
    assert skipped_layers(model, ["first", "last"]) == (convs[0], convs[-1])
    assert skipped_layers(model, ["features.1.*", "first"]) == ("features.0.0", "features.1.conv.0.0",
                                                                 "features.1.conv.1")
    with pytest.raises(ValueError, match="'classifier' selects no conv layer"):
        skipped_layers(model, ["classifier"])


def test_percentile_calibration_clips_outliers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 2, 1)).eval()
    batch = torch.randn(4, 3, 16, 16)
    batch[0, 0, 0, 0] = 100.0                      # one outlier
    peak = calibrate(model, batch)
    assert peak["0"] == pytest.approx(100.0 / 127)
    tight = calibrate(model, batch, QuantOptions(calibration="percentile", percentile=99.0))
    expected = np.percentile(batch.abs().numpy(), 99.0) / 127
    assert tight["0"] == pytest.approx(expected, rel=1e-6) and tight["0"] < peak["0"] / 20
    assert tight["1"] < peak["1"]


def test_quant_options_are_checked():
    with pytest.raises(ValueError, match="quant.calibration='entropy'"):
        QuantOptions(calibration="entropy")
    with pytest.raises(ValueError, match="quant.percentile=101"):
        QuantOptions(percentile=101)
    assert "percentile 99.9" in QuantOptions("percentile", 99.9, ("depthwise",)).describe()


def _report_shows_the_cost_per_precision(uri, jobs):
    from analysis import tables
    from analysis.load import jobs_frame
    from analysis.store import Store
    store = Store(uri)
    table = tables.quantization(jobs_frame(store.runs([e.experiment_id for e in store.experiments()])))
    rows = table.set_index("precision")
    assert set(rows.index) == {"fp32", "fp16", "int8"}
    for precision in ("fp16", "int8"):
        assert rows.loc[precision, "cost: rel err vs fp32"] > 0 and 0 <= rows.loc[precision, "top-1 vs fp32"] <= 1
        assert rows.loc[precision, "weights"] == "random" and rows.loc[precision, "kept fp32"] == "features.0.0"
        m, tags = jobs[f"mobilenet_v2/im2col/vendor/{precision}/dense"].data.metrics, \
            jobs[f"mobilenet_v2/im2col/vendor/{precision}/dense"].data.tags
        assert rows.loc[precision, "cost: rel err vs fp32"] == pytest.approx(m[contract.PRECISION_REL_ERR])
        assert rows.loc[precision, "top-1 vs fp32"] == pytest.approx(m[contract.PRECISION_TOP1_AGREEMENT])
        assert rows.loc[precision, "worst layer rel err"] == pytest.approx(m[contract.PRECISION_WORST_LAYER_REL_ERR])
        assert rows.loc[precision, "worst layer"] == tags[contract.T_PRECISION_WORST_LAYER]
    assert rows.loc["fp32", "weights"] == "random" and np.isnan(rows.loc["fp32", "cost: rel err vs fp32"])
