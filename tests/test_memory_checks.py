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


def test_on_a_gpu_the_device_memory_counts_with_cupys_free_pool():
    """What a GPU job may still allocate: the device's free memory and the blocks CuPy's pool holds unused
    (a stand-in for CuPy: no GPU here)."""
    class Pool:
        def free_bytes(self):
            return 2 * GiB

    class Cupy:
        class cuda:
            class runtime:
                @staticmethod
                def memGetInfo():
                    return 6 * GiB, 80 * GiB

        @staticmethod
        def get_default_memory_pool():
            return Pool()

    class Gpu:
        is_gpu, xp = True, Cupy

        def device_name(self):
            return "NVIDIA H100"

    free, where = memory.free_bytes(Gpu())
    assert free == 8 * GiB and where == "the GPU (NVIDIA H100)"
    g = memory.ConvGeometry(1, 3, 768, 224, 224, 16, 16, (16, 16), (0, 0))
    with pytest.raises(memory.WorkspaceTooLargeError, match=r"has 8 GiB free; algorithms that fit: im2col, scalar"):
        memory.check_workspace(g, Variant.of("kn2row", "vendor"), Gpu(), "conv_proj")
