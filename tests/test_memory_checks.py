"""Sizes checked against memory before anything is allocated: a job's estimated peak (refused with both
numbers and the largest batch that fits) and one layer's workspace (conv2d and swap_conv2d, naming the
layer and the algorithms that fit). Free memory is set by the test: the refusals do not depend on the
machine."""
from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir

from experiments import swap_conv2d
from experiments.conv import Variant, conv2d, memory
from experiments.harness import memory as job_memory
from experiments.harness.config import job_spec
from experiments.harness.errors import ConfigError
from experiments.harness.models import build_model

from .servers import REPO

GiB = 2**30


@pytest.fixture
def free_gib(monkeypatch):
    def set_free(gib: float):
        monkeypatch.setattr(memory, "host_free_bytes", lambda: int(gib * GiB))
    return set_free


def test_kn2row_on_a_vit_patch_embedding_is_refused_before_its_workspace(free_gib):
    """vit_b_16's 16x16 stride-16 patch embedding: kn2row's partial planes are 768*256*224*224 floats."""
    free_gib(8)
    x, w = torch.randn(1, 3, 224, 224), torch.randn(768, 3, 16, 16)
    with pytest.raises(memory.WorkspaceTooLargeError) as error:
        conv2d(x, w, stride=16, algo="kn2row", gemm="vendor", backend="numpy")
    message = str(error.value)
    assert "algo=kn2row needs 36.8 GiB" in message and "has 8 GiB free" in message
    assert "algorithms that fit: im2col, scalar" in message
    y = conv2d(x, w, stride=16, algo="im2col", gemm="vendor", backend="numpy")   # fits: runs and is right
    torch.testing.assert_close(y, torch.nn.functional.conv2d(x, w, stride=16), rtol=1e-4, atol=1e-3)


def test_swap_conv2d_names_the_layer(free_gib):
    free_gib(8)
    model = swap_conv2d(build_model("vit_b_16", None, 0), "kn2row", "vendor", backend="numpy")
    with pytest.raises(memory.WorkspaceTooLargeError, match=r"^conv_proj: algo=kn2row needs 36.8 GiB .* "
                                                            r"algorithms that fit: im2col, scalar"):
        model(torch.randn(1, 3, 224, 224))


def _spec(overrides):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["bench=smoke", "energy=off", "backend=numpy", *overrides])
    spec = job_spec(cfg)
    job_memory.check_job(spec)     # what run.py and the sweep check do after job_spec
    return spec


def test_a_batch_beyond_free_memory_is_refused_with_both_numbers(free_gib):
    free_gib(4)
    with pytest.raises(ConfigError) as error:
        _spec(["model=resnet18", "model.batch_size=512"])
    message = str(error.value)
    assert message.startswith("model.batch_size=512: resnet18/im2col/vendor/fp32/dense at 224x224 needs about")
    assert "but the host has 4 GiB free; the largest batch that fits is about" in message
    fits = int(message.rsplit(" ", 1)[1])
    assert 1 <= fits < 512
    _spec(["model=resnet18", f"model.batch_size={fits}"])             # what it offers is accepted


def test_the_estimate_grows_with_the_batch_and_the_algorithms_workspace():
    im2col, scalar = Variant.of("im2col", "vendor"), Variant.of("scalar")
    one = job_memory.estimate("resnet18", 1, (224, 224), (im2col,))
    eight = job_memory.estimate("resnet18", 8, (224, 224), (im2col,))
    scalar = job_memory.estimate("resnet18", 8, (224, 224), (scalar,))
    assert one.weights_bytes == eight.weights_bytes == 5 * 4 * 11_689_512    # resnet18's parameters, 5 copies
    assert eight.activation_bytes == 8 * one.activation_bytes
    # im2col's largest workspace: conv1, 3*7*7 x 112*112 columns per image, and its output
    assert eight.workspace_bytes == 8 * 4 * (3 * 49 * 112 * 112 + 64 * 112 * 112)
    assert eight.workspace_layer == "conv1" and scalar.workspace_bytes < eight.workspace_bytes


def test_vit_kn2row_job_names_the_algorithms_that_fit(free_gib):
    free_gib(16)
    with pytest.raises(ConfigError, match=r"^algo=kn2row: vit_b_16/kn2row/vendor/fp32/dense .* "
                                          r"algorithms that fit at this batch: pytorch, im2col, scalar"):
        _spec(["model=resnet18", "model.name=vit_b_16", "algo=kn2row"])


@pytest.fixture
def stand_in_gpu(monkeypatch):
    """backend='gpu' on the stand-in CuPy (tests/fake_cupy.py): its pool counts what really is allocated."""
    from tests import fake_cupy
    with fake_cupy.gpu_runtime(monkeypatch, sms=110, memory=8 * GiB) as gpu_runtime:
        yield gpu_runtime


def test_on_a_gpu_the_device_memory_counts_with_cupys_free_pool(stand_in_gpu):
    """What a GPU job may still allocate: the device's free memory and the blocks CuPy's pool holds unused."""
    xp = stand_in_gpu.xp
    block = xp.empty((256, 1024, 1024), dtype=xp.float32)   # 1 GiB, then back to the pool unused
    del block
    pool = xp.get_default_memory_pool()
    assert pool.free_bytes() == GiB and xp.cuda.runtime.memGetInfo()[0] == 7 * GiB
    free, where = memory.free_bytes(stand_in_gpu)
    assert free == 8 * GiB and where == "the GPU (NVIDIA H100 80GB HBM3 (stand-in))"
    g = memory.ConvGeometry(1, 3, 768, 224, 224, 16, 16, (16, 16), (0, 0))
    with pytest.raises(memory.WorkspaceTooLargeError, match=r"has 8 GiB free; algorithms that fit: im2col, scalar"):
        memory.check_workspace(g, Variant.of("kn2row", "vendor"), stand_in_gpu, "conv_proj")


# (algo, gemm, rung, dtype, batch, C, F, H, kernel): split-K rungs on small grids (long K), int8's accumulator pairs
ALLOCATING = [
    ("im2col", "blocked", "blocked", "fp32", 2, 5, 7, 11, 3),
    ("kn2row", "blocked", "blocked", "fp32", 2, 5, 7, 11, 3),
    ("im2col", "blocked", "splitk", "fp32", 1, 64, 8, 6, 3),
    ("kn2row", "blocked", "splitk", "fp32", 1, 300, 4, 5, 3),
    ("im2col", "blocked", "fold", "fp32", 3, 64, 8, 6, 3),
    ("kn2row", "blocked", "blocked", "int8", 2, 5, 20, 11, 3),
    ("im2col", "blocked", "blocked", "int8", 2, 5, 20, 11, 3),
    ("kn2row", "blocked", "blocked", "fp16", 2, 5, 20, 11, 3),
    ("scalar", None, None, "int8", 2, 5, 20, 11, 3),
    ("kn2row", "blocked", "blocked", "int8", 2, 5, 20, 11, 1),
]


@pytest.mark.parametrize("algo, gemm, rung, dtype, batch, c, f, h, k", ALLOCATING)
def test_the_estimate_is_what_a_call_allocates(stand_in_gpu, algo, gemm, rung, dtype, batch, c, f, h, k):
    """memory.peak_bytes against the stand-in pool's high-water mark over one call of the plan (the input and
    the prepared filter already on the device): split-K's partial sums and int8 kn2row's int32/float32 pair
    included. (vendor int8's torch._int_mm operands live in torch's allocator: not in this pool.)"""
    import numpy as np

    from experiments.conv.plan import ConvPlan
    xp, rng = stand_in_gpu.xp, np.random.default_rng(batch * c + f)
    x = xp.asarray(rng.standard_normal((batch, c, h, h)).astype(np.float32))
    w = xp.asarray(rng.standard_normal((f, c, k, k)).astype(np.float32))
    variant = Variant.of(algo, gemm, 8 if gemm == "blocked" else None, dtype=dtype, rung=rung)
    plan = ConvPlan.build(w, None, 1, k // 2, 1, 1, variant, stand_in_gpu)
    pool = xp.get_default_memory_pool()
    before = pool.used_bytes()
    pool.reset_peak()
    plan(x)
    measured = pool.peak_used - before
    estimate = memory.peak_bytes(plan.geometry(x.shape), variant, sms=110)
    assert estimate == measured
