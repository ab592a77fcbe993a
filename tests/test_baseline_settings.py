"""The PyTorch baseline's settings are explicit and logged: cuDNN's autotuning (bench.cudnn_benchmark, set
for every job, tag cudnn_benchmark), and the GPU's fp16 baseline in channels_last (tag baseline)."""
import pytest
import torch
from mlflow.tracking import MlflowClient

from experiments.tracking import contract


def job_runs(uri):
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("convbench").experiment_id])
    return [r for r in runs if r.data.tags.get(contract.T_RUN_KIND) == "job"]


@pytest.mark.parametrize("setting", [True, False])
def test_cudnn_benchmark_is_set_for_every_timed_call_and_logged(convbench, monkeypatch, tmp_path, setting):
    from experiments.harness import job
    seen = []
    real = job.measure

    def spying(fn, protocol, clock, label, **kwargs):
        seen.append(torch.backends.cudnn.benchmark)
        return real(fn, protocol, clock, label, **kwargs)
    monkeypatch.setattr(job, "measure", spying)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", not setting)   # what an earlier job left
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert convbench("algo=pytorch", "backend=numpy", "model=digits_cnn", "bench=smoke", "energy=off",
                     f"bench.cudnn_benchmark={str(setting).lower()}", f"tracking.uri={uri}") == 0
    assert seen and set(seen) == {setting}
    (run,) = job_runs(uri)
    assert run.data.params["bench.cudnn_benchmark"] == str(setting)
    assert run.data.tags[contract.T_CUDNN_BENCHMARK] == "unused (no cuDNN)"   # numpy backend: PyTorch on the CPU


def test_cudnn_benchmark_tag_on_a_gpu_says_on_or_off(monkeypatch):
    from types import SimpleNamespace

    from experiments.harness.job import cudnn_benchmark_tag
    monkeypatch.setattr(torch.backends.cudnn, "is_available", lambda: True)
    gpu = SimpleNamespace(is_gpu=True)
    assert cudnn_benchmark_tag(SimpleNamespace(runtime=gpu, cudnn_benchmark=True)) == "on"
    assert cudnn_benchmark_tag(SimpleNamespace(runtime=gpu, cudnn_benchmark=False)) == "off"


def test_a_cudnn_benchmark_that_is_not_a_boolean_is_refused(convbench, tmp_path, capsys):
    assert convbench("backend=numpy", "bench.cudnn_benchmark=sometimes", f"tracking.uri=sqlite:///{tmp_path}/m.db") != 0
    assert "bench.cudnn_benchmark='sometimes' is not supported; valid: true, false" in capsys.readouterr().err


def test_half_baseline_is_fp16_channels_last_with_its_input_cast_in_one_copy():
    from experiments.compress.pipeline import HALF_BASELINE_LABEL, half_baseline
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 5, 3))
    half = half_baseline(model)
    conv = half.module[0]
    assert conv.weight.dtype == torch.float16 and conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert model[0].weight.dtype == torch.float32   # the fp32 model stays as it was
    x = torch.randn(2, 3, 9, 7)
    seen = []
    conv.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    y = half(x)
    assert seen[0].dtype == torch.float16 and seen[0].is_contiguous(memory_format=torch.channels_last)
    assert y.dtype == torch.float32
    assert torch.allclose(y, model(x), rtol=0, atol=2e-2 * model(x).abs().max().item())
    assert "channels_last" in HALF_BASELINE_LABEL
