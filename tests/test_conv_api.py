"""Accounting, validation and the torch-model integration of the engine (numpy backend)."""
import copy

import numpy as np
import pytest
import torch
from torch import nn

from experiments import conv2d, swap_conv2d
from experiments.conv import ConvbenchConv2d, ConvGeometry, Variant, layer_cost
from experiments.conv.plan import ConvPlan
from experiments.conv.tolerance import RELATIVE_TOLERANCE, relative_error
from experiments.runtime import gpu_available, resolve
from experiments.torchvision_compat import torchvision
from tests.conv_cases import model_and_reference


@pytest.mark.parametrize("algo", ["im2col", "kn2row", "scalar"])
@pytest.mark.parametrize("shape", [
    ((2, 3, 13, 11), (7, 3, 3, 3), 1, 1, 1),
    ((1, 4, 10, 9), (5, 4, 5, 3), 2, (2, 1), (1, 2)),
    ((2, 6, 7, 7), (3, 6, 1, 1), 1, 0, 1),  # pointwise: no workspace for any algorithm
])
def test_workspace_actually_allocated_matches_accounting(algo, shape):
    x_shape, w_shape, stride, padding, dilation = shape
    rng = np.random.default_rng(0)
    plan = ConvPlan.build(rng.standard_normal(w_shape).astype(np.float32), None, stride, padding, dilation, 1,
                          Variant.of(algo, "vendor"), resolve("numpy"))
    plan(rng.standard_normal(x_shape).astype(np.float32))
    g = ConvGeometry.from_shapes(x_shape, w_shape, stride, padding, dilation)
    assert plan.last_cost == layer_cost(g, Variant.of(algo, "vendor"))


def test_accounting_of_a_3x3_layer():
    g = ConvGeometry.from_shapes((2, 64, 28, 28), (128, 64, 3, 3), padding=1)
    im2col, kn2row, scalar = (layer_cost(g, Variant.of(a, "vendor")) for a in ("im2col", "kn2row", "scalar"))
    assert im2col.flops == 2 * 2 * 128 * 28 * 28 * 64 * 9 == 2 * im2col.gemm_m * im2col.gemm_n * im2col.gemm_k
    assert (im2col.gemm_m, im2col.gemm_n, im2col.gemm_k) == (128, 2 * 28 * 28, 576)
    assert (kn2row.gemm_m, kn2row.gemm_n, kn2row.gemm_k) == (128 * 9, 2 * 28 * 28, 64)
    assert im2col.workspace_bytes == 4 * 9 * 2 * 64 * 28 * 28     # input inflated k*k times
    assert kn2row.workspace_bytes == 4 * 9 * 2 * 128 * 28 * 28    # output inflated k*k times
    assert scalar.workspace_bytes == 0
    assert scalar.min_bytes == 4 * (2 * 64 * 28 * 28 + 128 * 64 * 9 + 2 * 128 * 28 * 28)
    assert scalar.arithmetic_intensity > im2col.arithmetic_intensity > kn2row.arithmetic_intensity


@pytest.mark.parametrize("kwargs, message", [
    (dict(algo="imcol"), "unknown algorithm 'imcol' (did you mean im2col?); valid: im2col, kn2row, scalar"),
    (dict(gemm="cublas"), "unknown GEMM back-end 'cublas'"),
    (dict(gemm="blocked", tile=12, backend="emulator"), "tile=12 is not supported by the blocked GEMM; valid: 8, 16, 32"),
    (dict(gemm="blocked", backend="numpy"), "gemm='blocked' is a hip/ kernel and backend 'numpy' runs no kernels"),
    (dict(backend="tpu"), "unknown backend 'tpu'; valid: auto, gpu, emulator, numpy"),
])
def test_bad_choices_name_the_value_and_what_is_valid(kwargs, message):
    x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    with pytest.raises(ValueError) as err:
        conv2d(x, w, **{"gemm": "vendor", "backend": "numpy", **kwargs})
    assert message in str(err.value)


@pytest.mark.skipif(gpu_available(), reason="a GPU is present")
def test_gpu_backend_without_a_gpu_is_a_clear_error():
    with pytest.raises(RuntimeError, match="backend='gpu' needs a CUDA or ROCm device.*use backend='numpy'"):
        conv2d(torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3), backend="gpu")


def test_grouped_and_depthwise_layers_are_swapped_too():
    x, w = torch.randn(1, 4, 5, 5), torch.randn(6, 2, 3, 3)
    y = conv2d(x, w, groups=2, gemm="vendor", backend="numpy")
    assert relative_error(y.numpy(), torch.nn.functional.conv2d(x, w, groups=2).numpy()) < 1e-5
    model = torchvision.models.mobilenet_v2()
    swap_conv2d(model, algo="im2col", gemm="vendor", backend="numpy")
    assert not any(type(m) is nn.Conv2d for m in model.modules())
    depthwise = model.get_submodule("features.1.conv.0.0")
    assert isinstance(depthwise, ConvbenchConv2d) and depthwise.groups == 32 and depthwise.plan.depthwise
    with pytest.raises(ValueError, match=r"weight of shape \(4, 1, 3, 3\) with groups=2 expects 2 input channels"):
        conv2d(torch.randn(1, 3, 5, 5), torch.randn(4, 1, 3, 3), groups=2, gemm="vendor", backend="numpy")


@pytest.mark.parametrize("algo", ["im2col", "kn2row", "scalar"])
@pytest.mark.parametrize("model_name", ["resnet18", "vgg16"])
def test_swapped_model_agrees_with_the_original(model_name, algo):
    model, x, reference = model_and_reference(model_name)
    with torch.no_grad():
        swapped = swap_conv2d(copy.deepcopy(model), algo=algo, gemm="vendor", backend="numpy")
        y = swapped(x)
    convs = [m for m in swapped.modules() if isinstance(m, ConvbenchConv2d)]
    assert len(convs) == (20 if model_name == "resnet18" else 13)
    assert not any(type(m) is nn.Conv2d for m in swapped.modules())
    assert relative_error(y.numpy(), reference.numpy()) < RELATIVE_TOLERANCE["fp32"]
    first = convs[0]
    assert first.geometry.in_h == x.shape[2] and first.cost.flops > 0


def test_swapped_layer_keeps_padding_modes():
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 4, (3, 4), padding="same", padding_mode="reflect").eval()
    model = nn.Sequential(conv)
    x = torch.randn(1, 3, 9, 10)
    with torch.no_grad():
        expected = conv(x)
        y = swap_conv2d(model, algo="scalar", backend="numpy")(x)
    assert relative_error(y.numpy(), expected.numpy()) < 1e-5
