"""fp32 means fp32: every timed function of the harness and of each bench runs with PyTorch's TF32
switches off, whatever they were before (cuDNN allows TF32 by default), and without a host-to-device
copy. A spy inside each timed function reads the switches during the call (they are switched on before
every measurement) and records any host array handed to torch (torch.from_numpy, a copy's first step)
inside a timed PyTorch baseline (our variants on the numpy backend wrap their results with it, no copy)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from experiments.measure.timing import Protocol

TINY = Protocol(warmup=1, min_samples=2, min_time_s=0.0, max_time_s=0.5)


def tf32_switches() -> tuple[bool, bool]:
    return torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32


@pytest.fixture
def timed_calls(monkeypatch):
    """Wraps ``measure`` where each module imported it; returns the switches seen inside each timed call."""
    from experiments.bench import layers, pruning, sparsity
    from experiments.harness import job
    from experiments.measure import timing
    from experiments.tuning import autotune
    seen: list[tuple[str, tuple[bool, bool]]] = []
    real_measure, real_from_numpy = timing.measure, torch.from_numpy
    timing_now: list[str] = []

    def from_numpy(array):
        if timing_now and "pytorch" in timing_now[0]:
            seen.append((timing_now[0], "host array handed to torch inside the timed call"))
        return real_from_numpy(array)

    monkeypatch.setattr(torch, "from_numpy", from_numpy)

    def spying_measure(fn, protocol, clock, label, **kwargs):
        def spy():
            seen.append((label, tf32_switches()))
            timing_now.append(label)
            try:
                return fn()
            finally:
                timing_now.pop()
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
        return real_measure(spy, TINY, clock, label, **kwargs)

    for module in (layers, pruning, sparsity, timing, autotune, job):
        if hasattr(module, "measure"):
            monkeypatch.setattr(module, "measure", spying_measure)
    yield seen
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = True, False   # torch's defaults


def assert_all_fp32(seen, expected_labels):
    labels = {label for label, _ in seen}
    assert expected_labels <= labels, labels
    assert all(switches == (False, False) for _, switches in seen), [s for s in seen if s[1] != (False, False)]


def first_layer(model: str, groups: bool = False):
    from experiments.bench.layers import distinct_conv_layers
    return next(g for _, g, _ in distinct_conv_layers(model, 1, 32) if (g.groups > 1) == groups)


def test_bench_layers(timed_calls):
    from experiments.bench.layers import Bench
    Bench("numpy").layer(first_layer("resnet18"))
    assert_all_fp32(timed_calls, {"pytorch", "im2col/vendor/fp32"})


def test_bench_sparsity(timed_calls):
    from experiments.bench.sparsity import SparsityBench
    SparsityBench("numpy", 16).layer(first_layer("resnet18"), [1.0], "conv1")
    assert_all_fp32(timed_calls, {"conv1/pytorch"})


def test_bench_grouped(timed_calls):
    from experiments.bench.grouped import GroupedBench
    GroupedBench("numpy", 16).layer(first_layer("mobilenet_v2", groups=True), "dw")
    assert_all_fp32(timed_calls, {"dw/pytorch"})


def test_bench_pruning(timed_calls):
    from experiments.bench.pruning import Bench
    x, w = torch.randn(1, 3, 16, 16), torch.randn(4, 3, 3, 3)
    Bench("numpy").time_ms(lambda: F.conv2d(x, w), "pytorch fp32")
    assert_all_fp32(timed_calls, {"pytorch fp32"})


def test_harness_job(timed_calls, convbench, tmp_path):
    assert convbench("algo=im2col", "backend=numpy", "model.input_size=32", "bench=smoke", "energy=off",
                     f"tracking.uri=sqlite:///{tmp_path}/mlflow.db") == 0
    assert_all_fp32(timed_calls, {"pytorch/model", "im2col/model"})


def test_clocks_time_first_calls_without_tf32():
    from experiments.measure.timing import CpuClock
    seen = []
    torch.backends.cudnn.allow_tf32 = True
    try:
        CpuClock().time(lambda: seen.append(tf32_switches()))
    finally:
        torch.backends.cudnn.allow_tf32 = True
    assert seen == [(False, False)]
    assert np.isfinite(CpuClock().time(lambda: None))
