"""Pruning (experiments/compress): the structure matches the requested amount, pruned models still run
end to end (also on our kernels), MAC counting, the digits model, and pruned/quantized run.py jobs."""
import copy

import pytest
import torch
from torch import nn

from experiments import swap_conv2d
from experiments.compress import PruneSpec, count, prune_model, residual_blocks
from experiments.compress.prune import conv_layers
from experiments.conv.tolerance import RELATIVE_TOLERANCE, relative_error
from experiments.harness.models import build_model
from experiments.tracking import contract


@pytest.fixture(scope="module")
def resnet18():
    return build_model("resnet18", None, 0)


@pytest.fixture(scope="module")
def example():
    return torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _pruned(model, example, *args, **kwargs):
    model = copy.deepcopy(model)
    return model, prune_model(model, PruneSpec(*args, **kwargs), example)


def _runs_and_matches_ours(model, example):
    """The pruned model runs, and our im2col (numpy) computes what PyTorch computes with it."""
    with torch.no_grad():
        y = model(example)
        ours = swap_conv2d(copy.deepcopy(model), "im2col", "vendor", backend="numpy")(example)
    assert y.shape == (1, 1000) and relative_error(ours.numpy(), y.numpy()) < RELATIVE_TOLERANCE["fp32"]


@pytest.mark.parametrize("scope", ["layer", pytest.param("global", marks=pytest.mark.slow)])
def test_unstructured_zeroes_the_amount(resnet18, example, scope):
    model, report = _pruned(resnet18, example, "unstructured", 0.6, scope=scope)
    convs = conv_layers(model)
    zeros = [float((c.weight == 0).float().mean()) for _, c in convs]
    if scope == "layer":
        assert all(abs(z - 0.6) < 0.01 for z in zeros)
    assert report.achieved == pytest.approx(0.6, abs=1e-3)
    assert not any(hasattr(c, "weight_orig") for _, c in convs)               # made permanent
    assert report.after.macs == report.before.macs                          # same shapes
    assert report.mac_ratio > 1.5                                           # what MAC-counting tools report
    _runs_and_matches_ours(model, example)


def test_filter_zeroes_whole_kernels(resnet18, example):
    model, report = _pruned(resnet18, example, "filter", 0.5, importance="l2", steps=2)
    for _, conv in conv_layers(model):
        kernels = conv.weight.detach().abs().sum(dim=(2, 3))
        nonzero_taps = (conv.weight.detach() != 0).sum(dim=(2, 3))
        taps = conv.weight.shape[2] * conv.weight.shape[3]
        assert ((nonzero_taps == 0) | (nonzero_taps == taps)).all()        # a kernel goes whole or not at all
        assert abs(float((kernels == 0).float().mean()) - 0.5) < 0.02
    assert report.achieved == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize("kind", ["output_channel", "input_channel"])
def test_channel_pruning_shrinks_every_layer(resnet18, example, kind):
    model, report = _pruned(resnet18, example, kind, 0.5)
    for (name, before), (_, after) in zip(conv_layers(resnet18), conv_layers(model)):
        assert after.out_channels == int(before.out_channels * 0.5), name
        if name != "conv1":                                                 # the image's 3 channels stay
            assert after.in_channels == int(before.in_channels * 0.5), name
    assert model.fc.out_features == 1000 and model.fc.in_features == 256
    assert report.achieved == pytest.approx(0.5)
    assert 3.0 < report.dense_mac_ratio == pytest.approx(report.mac_ratio)  # both sides of most GEMMs halve
    _runs_and_matches_ours(model, example)


def test_layer_pruning_removes_identity_blocks(resnet18, example):
    blocks = residual_blocks(resnet18)
    assert len(blocks) == 8 and sum(ok for *_, ok in blocks) == 5          # 3 have a downsample shortcut
    model, report = _pruned(resnet18, example, "layer", 0.25)
    assert len(report.removed) == 2 and report.achieved == 0.25
    assert all(isinstance(model.get_submodule(name), nn.Identity) for name in report.removed)
    _runs_and_matches_ours(model, example)
    model, report = _pruned(resnet18, example, "layer", 0.9)                 # capped at the removable blocks
    assert len(report.removed) == 5 and "only 5 of 8" in report.note


@pytest.mark.slow
def test_global_channel_pruning_and_mobilenet(example):
    model = build_model("mobilenet_v2", None, 0)
    pruned, report = _pruned(model, example, "output_channel", 0.5, scope="global", steps=2)
    assert 0.4 < report.achieved < 0.6 and report.after.macs < report.before.macs
    with torch.no_grad():
        assert pruned(example).shape == (1, 1000)


@pytest.mark.parametrize("kind", ["output_channel", "input_channel"])
def test_shufflenet_prunes_inside_its_branches(example, kind):
    """Channel shuffle defeats Torch-Pruning's graph: each block's second branch is pruned on its own, its
    output (what the shuffle interleaves) kept; our kernels still compute what PyTorch does."""
    from experiments.compress.prune import shuffle_branches
    model = build_model("shufflenet_v2_x1_0", None, 0)
    pruned, report = _pruned(model, example, kind, 0.5)
    widths = [[m.out_channels for m in b.modules() if isinstance(m, nn.Conv2d)] for b in shuffle_branches(model)]
    after = [[m.out_channels for m in b.modules() if isinstance(m, nn.Conv2d)] for b in shuffle_branches(pruned)]
    assert len(widths) == 16
    for (first, depthwise, last), (first2, depthwise2, last2) in zip(widths, after):
        assert first2 == depthwise2 == first // 2 and last2 == last
    assert 0.2 < report.achieved < 0.5 and "channel shuffle" in report.note and report.mac_ratio > 1.2
    _runs_and_matches_ours(pruned, example)


def test_specs_are_checked():
    for bad in [dict(kind="magnitude"), dict(kind="filter", amount=1.0), dict(kind="filter", amount=0.0),
                dict(kind="filter", amount=0.5, importance="l3"), dict(kind="filter", amount=0.5, steps=0),
                dict(kind="filter", amount=0.5, scope="model")]:
        with pytest.raises(ValueError, match="prune."):
            PruneSpec(**bad)
    with pytest.raises(ValueError, match="residual blocks"):
        prune_model(nn.Sequential(nn.Conv2d(3, 4, 3)), PruneSpec("layer", 0.5), torch.randn(1, 3, 8, 8))


def test_mac_count():
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 5 * 5, 3))
    with torch.no_grad():
        model[0].weight[0] = 0
    counted = count(model, torch.randn(2, 2, 5, 5))
    assert counted.macs == 25 * 4 * 2 * 9 + 100 * 3                          # per image
    assert counted.nonzero_macs == 25 * 3 * 2 * 9 + 100 * 3
    assert counted.params == 4 * 2 * 9 + 4 + 100 * 3 + 3


def test_digits_model_is_trained_and_cached():
    from experiments.compress.digits import cache_path, digits_model, digits_split
    model = digits_model(0)
    assert cache_path(0).is_file()
    x, y = digits_split("test")
    assert x.shape == (360, 1, 8, 8) and y.shape == (360,)
    with torch.no_grad():
        assert float((model(x).argmax(1) == y).float().mean()) > 0.95
    assert len(residual_blocks(model)) == 2


SMALL = ["backend=numpy", "gemm=vendor", "bench=smoke", "energy=off", "bench.model.warmup=1",
         "bench.model.min_samples=2", "bench.layer.warmup=1", "bench.layer.min_samples=2"]


def test_pruned_and_quantized_jobs_log_the_accuracy_cost(convbench, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    code = convbench("-m", "model=digits_cnn", "prune=none,output_channel", "prune.amount=0.5", "quant=fp32,int8",
                     "algo=im2col", f"tracking.uri={uri}", *SMALL)
    assert code == 0
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("convbench").experiment_id])
    jobs = {r.info.run_name: r for r in runs if r.data.tags.get(contract.T_RUN_KIND) == "job"}
    assert set(jobs) == {"fp32/dense", "fp32/output_channel0.5",
                         "int8/dense", "int8/output_channel0.5"}
    dense = jobs["fp32/dense"].data.metrics
    assert contract.DENSE_LATENCY_MS not in dense                            # nothing compressed: no extra timing
    for name in ("fp32/output_channel0.5", "int8/output_channel0.5",
                 "int8/dense"):
        run = jobs[name]
        m = run.data.metrics
        assert run.data.tags[contract.T_STATUS] == "ok", run.data.tags.get(contract.T_ERROR)
        for key in (contract.DENSE_LATENCY_MS, contract.DENSE_BASELINE_LATENCY_MS, contract.SPEEDUP_VS_DENSE,
                    contract.MAC_RATIO, contract.TOP1_AGREEMENT, contract.FIDELITY_REL_ERR, contract.ACCURACY_TOP1,
                    contract.DENSE_ACCURACY_TOP1):
            assert key in m, (name, key)
        assert m[contract.SPEEDUP_VS_DENSE] == pytest.approx(m[contract.DENSE_LATENCY_MS] / m[contract.LATENCY_MS])
        assert m[contract.DENSE_ACCURACY_TOP1] > 0.95 and m[contract.EVAL_IMAGES] == 360
        assert run.data.tags[contract.T_BASELINE] == "pytorch fp32"
        assert run.data.params[contract.P_PRUNE_AMOUNT] == "0.5"
    int8 = jobs["int8/dense"].data.metrics
    assert int8[contract.TOP1_AGREEMENT] > 0.9 and int8[contract.MAC_RATIO] == 1.0
    assert 1e-4 < int8[contract.PRECISION_REL_ERR] < 0.1 and int8[contract.PRECISION_TOP1_AGREEMENT] > 0.9
    pruned = jobs["fp32/output_channel0.5"].data.metrics
    assert pruned[contract.PRUNED_FRACTION] == pytest.approx(0.5) and pruned[contract.MAC_RATIO] > 3
    assert pruned[contract.MAX_REL_ERR] < RELATIVE_TOLERANCE["fp32"]         # our kernels on the pruned model


def test_compression_configs_are_checked(convbench, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert convbench("prune=output_channel", "prune.finetune_epochs=1", f"tracking.uri={uri}", *SMALL) == 2
    assert convbench("prune=output_channel", "prune.amount=1.5", f"tracking.uri={uri}", *SMALL) == 2
    assert convbench("quant=int8", "gemm=sparse", f"tracking.uri={uri}", *SMALL[:1], *SMALL[2:]) == 2
    assert convbench("model=digits_cnn", "model.input_size=16", f"tracking.uri={uri}", *SMALL) == 2


@pytest.mark.slow
def test_bench_pruning_end_to_end(tmp_path):
    from experiments.bench import pruning
    out = tmp_path / "bench.md"
    assert pruning.main(["--backend", "numpy", "--input-size", "32", "--amounts", "0.5", "--out", str(out)]) == 0
    text = out.read_text()
    assert "MAC ratio" in text and "output_channel 0.5" in text and "int8" in text and "digits_cnn" in text
