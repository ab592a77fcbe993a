"""The job memory estimate (experiments/harness/memory.py), per job kind, against what the job really holds:
the job runs (digits_cnn, numpy backend) and the arrays it allocated are measured: each conv layer's
workspace (as its plan measured it) and output, every captured conv input, the largest activation of the
real forward, and the models' parameters."""
from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir

from experiments.conv import memory as conv_memory
from experiments.harness import memory as job_memory
from experiments.harness.config import job_spec
from experiments.harness.errors import ConfigError
from experiments.harness.job import Job

from .servers import REPO

BASE = ["model=digits_cnn", "backend=numpy", "gemm=vendor", "bench=smoke", "energy=off", "model.batch_size=3"]


def _spec(tmp_path, overrides):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[*BASE, f"tracking.uri=sqlite:///{tmp_path}/m.db", *overrides])
    return job_spec(cfg)


def _bytes(t) -> int:
    return t.numel() * t.element_size()


def _largest_activation(model, x) -> int:
    largest = [_bytes(x)]
    hooks = [m.register_forward_hook(lambda m, a, out: largest.append(_bytes(out)))
             for m in model.modules() if not list(m.children())]
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return max(largest)


@pytest.mark.parametrize("overrides", [["algo=im2col"], ["algo=kn2row"], ["algo=scalar"], ["algo=pytorch"],
                                       ["algo=im2col", "quant=int8"],
                                       ["algo=kn2row", "prune=unstructured", "prune.amount=0.5"]],
                         ids=lambda o: "+".join(o))
def test_the_estimate_of_each_job_kind_matches_what_the_job_allocates(tmp_path, overrides):
    spec = _spec(tmp_path, overrides)
    found = job_memory.estimate(spec.model, spec.batch_size, tuple(spec.input_size), job_memory.job_variants(spec),
                                spec.compressed)
    job = Job(spec)
    job.run()

    # workspace: the largest of (workspace + output) over the layers, as each layer's plan measured it
    peaks = {}
    for layer in job.outcome.layers:
        with torch.inference_mode():
            out = job.ours.get_submodule(layer.name)(job.inputs[layer.name])
        peaks[layer.name] = layer.cost.workspace_bytes + _bytes(out)
    worst = max(peaks, key=peaks.get)
    if spec.quant == "fp32":   # fp16/int8 calls: test_memory_checks counts them in a stand-in GPU's pool
        assert (found.workspace_bytes, found.workspace_layer) == (peaks[worst], worst)

    # activations: every captured conv input, and 6 x the largest activation of the real forward
    inputs = sum(_bytes(x) for x in job.inputs.values())
    assert found.activation_bytes == inputs + 6 * _largest_activation(job.model, job.x)

    # weights: 5 copies of the fp32 model, 6 when the dense model stays beside a pruned or quantized one
    dense = job.dense if job.dense is not None else job.model
    parameters = sum(_bytes(p) for p in dense.parameters())
    assert found.weights_bytes == (6 if spec.compressed else 5) * parameters


def test_a_compressed_job_is_refused_on_its_own_larger_estimate(tmp_path, monkeypatch):
    """Free memory between the dense job's peak and the quantized job's: only the quantized one is refused."""
    dense, int8 = _spec(tmp_path, ["algo=im2col"]), _spec(tmp_path, ["algo=im2col", "quant=int8"])
    peak = {s.compressed: job_memory.estimate(s.model, s.batch_size, tuple(s.input_size), job_memory.job_variants(s),
                                              s.compressed).peak_bytes for s in (dense, int8)}
    assert peak[True] > peak[False]
    monkeypatch.setattr(conv_memory, "host_free_bytes", lambda: (peak[True] + peak[False]) // 2)
    job_memory.check_job(dense)
    with pytest.raises(ConfigError, match="needs about"):
        job_memory.check_job(int8)
