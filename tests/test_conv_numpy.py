"""The numpy backend (readable reference algorithms, BLAS GEMM) against float64 PyTorch."""
import numpy as np
import pytest
import torch

from experiments import conv2d
from experiments.conv.tolerance import RELATIVE_TOLERANCE
from tests.conv_cases import CASES, error_vs_reference, random_conv

TOL = RELATIVE_TOLERANCE["fp32"]


@pytest.mark.parametrize("algo", ["im2col", "kn2row", "scalar"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[:7])))
def test_matches_float64_torch(algo, case):
    n, c, f, h, w, kh, kw, stride, padding, dilation = case
    rng = np.random.default_rng(hash(case) % 2**32)
    x, weight, bias = random_conv(rng, n, c, f, h, w, kh, kw)
    kwargs = dict(stride=stride, padding=padding, dilation=dilation)
    y = conv2d(x, weight, bias, **kwargs, algo=algo, gemm="vendor", backend="numpy")
    assert y.shape == (n, f) + tuple(reference_shape(x, weight, kwargs))
    assert error_vs_reference(y, x, weight, bias, **kwargs) < TOL


def reference_shape(x, weight, kwargs):
    return torch.nn.functional.conv2d(x, weight, **kwargs).shape[2:]


@pytest.mark.parametrize("algo", ["im2col", "kn2row", "scalar"])
def test_non_contiguous_inputs(algo):
    rng = np.random.default_rng(1)
    x, weight, bias = random_conv(rng, 2, 3, 5, 20, 18, 3, 3)
    views = {
        "channels_last": x.to(memory_format=torch.channels_last),
        "strided": x[:, :, ::2, 1:],
        "transposed": x.transpose(2, 3),
    }
    for name, view in views.items():
        y = conv2d(view, weight, bias, padding=1, algo=algo, gemm="vendor", backend="numpy")
        assert error_vs_reference(y, view, weight, bias, padding=1) < TOL, name


def test_returns_the_kind_it_was_given():
    rng = np.random.default_rng(2)
    x, weight, bias = random_conv(rng, 1, 3, 4, 8, 8, 3, 3)
    as_numpy = conv2d(x.numpy(), weight.numpy(), bias.numpy(), algo="im2col", gemm="vendor", backend="numpy")
    as_torch = conv2d(x, weight, bias, algo="im2col", gemm="vendor", backend="numpy")
    assert isinstance(as_numpy, np.ndarray) and isinstance(as_torch, torch.Tensor)
    np.testing.assert_array_equal(as_numpy, as_torch.numpy())


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_string_padding(padding):
    rng = np.random.default_rng(3)
    x, weight, bias = random_conv(rng, 1, 2, 3, 9, 10, 4, 3)  # even kernel: 'same' pads unevenly
    y = conv2d(x, weight, bias, padding=padding, dilation=(1, 2), algo="kn2row", gemm="vendor", backend="numpy")
    assert error_vs_reference(y, x, weight, bias, padding=padding, dilation=(1, 2)) < TOL
