"""Device memory between GPU jobs and layers, on a simulated device: a stand-in CuPy pool and torch's
caching-allocator calls monkeypatched (nothing here needs a GPU)."""
from __future__ import annotations

import sys
import types

import pytest
import torch

from experiments.runtime import device_memory

GPU = types.SimpleNamespace(is_gpu=True)
CPU = types.SimpleNamespace(is_gpu=False)


@pytest.fixture
def allocators(monkeypatch):
    calls: list[str] = []
    pool = types.SimpleNamespace(total_bytes=lambda: 3 << 30, free_all_blocks=lambda: calls.append("cupy pool"))
    pinned = types.SimpleNamespace(free_all_blocks=lambda: calls.append("cupy pinned"))
    cupy = types.ModuleType("cupy")
    cupy.get_default_memory_pool = lambda: pool
    cupy.get_default_pinned_memory_pool = lambda: pinned
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append("torch cache"))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda: calls.append("torch peak reset"))
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda: 1 << 30)
    return calls


def test_a_gpu_job_starts_empty_and_reports_both_allocators(allocators):
    device_memory.start(GPU)
    assert allocators == ["cupy pool", "cupy pinned", "torch cache", "torch peak reset"]
    assert device_memory.peak_bytes(GPU) == 4 << 30
    allocators.clear()
    device_memory.release(GPU)
    assert allocators == ["cupy pool", "cupy pinned", "torch cache"]


def test_nothing_to_do_off_a_gpu(allocators):
    device_memory.start(CPU)
    device_memory.release(CPU)
    assert allocators == [] and device_memory.peak_bytes(CPU) is None


def test_each_job_of_a_sweep_logs_its_peak_and_frees_the_pool(monkeypatch, convbench, tmp_path):
    from mlflow.tracking import MlflowClient

    from experiments.harness import runner
    from experiments.tracking import contract
    events: list[str] = []
    monkeypatch.setattr(runner.device_memory, "start", lambda runtime: events.append("start"))
    monkeypatch.setattr(runner.device_memory, "release", lambda runtime: events.append("release"))
    monkeypatch.setattr(runner.device_memory, "peak_bytes", lambda runtime: 123456789)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert convbench("-m", "algo=im2col,kn2row", "backend=numpy", "model.input_size=32", "bench=smoke",
                     "energy=off", f"tracking.uri={uri}") == 0
    assert events == ["start", "release"] * 2
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("convbench").experiment_id])
    jobs = [r for r in runs if r.data.tags.get(contract.T_RUN_KIND) == "job"]
    assert [r.data.metrics[contract.PEAK_DEVICE_MEMORY_BYTES] for r in jobs] == [123456789] * 2


def test_bench_layers_frees_the_pool_after_each_layer(monkeypatch):
    from experiments.bench import layers
    released: list[int] = []
    monkeypatch.setattr(layers.device_memory, "release", lambda runtime: released.append(1))
    table = list(layers.layer_rows(layers.Bench("numpy", layers.QUICK_PROTOCOL), ["squeezenet1_1"], 1, 32))
    assert len(released) == len(table) > 1
