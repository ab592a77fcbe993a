"""docs/design.md, "Adding a convolution algorithm", done for a tiny algorithm: the walkthrough stays true.

The algorithm ``taps`` (one einsum per filter tap, no workspace) is registered in exactly the places
the walkthrough names, and then runs through conv2d, swap_conv2d, the accounting and the harness
config like the built-in ones.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from experiments import conv2d, swap_conv2d
from experiments.conv import ConvGeometry, Variant, kernel_launch, layer_cost, reference, variant
from experiments.conv.tolerance import RELATIVE_TOLERANCE, relative_error

DESIGN = Path(__file__).resolve().parents[1] / "docs" / "design.md"


def taps_reference(x, w, g: ConvGeometry):
    """y = sum over taps (kh, kw) of W[:, :, kh, kw] times the input planes that tap reads (groups = 1)."""
    (ph, pw), (sh, sw), (dh, dw) = g.padding, g.stride, g.dilation
    padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    y = np.zeros(g.output_shape, np.float32)
    for kh in range(g.kernel_h):
        for kw in range(g.kernel_w):
            planes = padded[:, :, kh * dh: kh * dh + sh * (g.out_h - 1) + 1: sh,
                            kw * dw: kw * dw + sw * (g.out_w - 1) + 1: sw]
            y += np.einsum("fc,nchw->nfhw", w[:, :, kh, kw], planes)
    return y, 0


def taps_kernels(launcher, x, w, g: ConvGeometry):
    """On the kernel runtimes the scalar kernel computes the same sum."""
    return launcher.scalar(x, w, g), 0


@pytest.fixture
def taps(monkeypatch):
    monkeypatch.setattr(variant, "ALGORITHMS", (*variant.ALGORITHMS, "taps"))   # 1. name
    monkeypatch.setitem(reference.SPECIFICATIONS, "taps", taps_reference)            # 2. specification
    monkeypatch.setitem(kernel_launch.LAUNCHES, "taps", taps_kernels)          # 3. kernels
    return "taps"                                                                # 4. GEMM-free: no accounting


def test_the_walkthrough_names_these_places():
    text = DESIGN.read_text()
    walkthrough = text[text.index("## Adding a convolution algorithm"):]
    for place in ("experiments/conv/variant.py", "experiments/conv/reference.py",
                  "experiments/conv/kernel_launch.py", "experiments/conv/accounting.py", "conf/algo/"):
        assert place in walkthrough, place


@pytest.mark.parametrize("backend", ["numpy", "emulator"])
def test_a_registered_algorithm_runs_like_the_built_in_ones(taps, backend):
    rng = np.random.default_rng(3)
    x = torch.from_numpy(rng.standard_normal((2, 5, 11, 9), dtype=np.float32))
    w = torch.from_numpy(rng.standard_normal((7, 5, 3, 3), dtype=np.float32))
    expected = F.conv2d(x.double(), w.double(), stride=2, padding=1).numpy()
    y = conv2d(x, w, stride=2, padding=1, algo=taps, backend=backend)
    assert relative_error(y.numpy(), expected) < RELATIVE_TOLERANCE["fp32"]

    model = torch.nn.Sequential(torch.nn.Conv2d(5, 7, 3, padding=1)).eval()
    with torch.no_grad():
        reference_out = model.double()(x.double()).numpy()
        swapped = swap_conv2d(model.float(), taps, backend=backend)
        out = swapped(x)
    assert relative_error(out.numpy(), reference_out) < RELATIVE_TOLERANCE["fp32"]
    layer = swapped[0]
    assert layer.variant == Variant(taps) and layer.cost.variant == "taps/fp32" and layer.cost.gemm_m == 0


def test_a_registered_algorithm_is_a_config_choice(taps):
    from hydra import compose, initialize_config_dir

    from experiments.harness.config import job_spec
    with initialize_config_dir(config_dir=str(DESIGN.parents[1] / "conf"), version_base="1.3"):
        spec = job_spec(compose("config", overrides=["algo.name=taps", "gemm=blocked", "backend=numpy"]))
    assert spec.variant == Variant("taps") and spec.name == "resnet18/taps/fp32/dense"
    assert layer_cost(ConvGeometry.from_shapes((1, 3, 8, 8), (4, 3, 3, 3), padding=1), spec.variant).flops > 0
