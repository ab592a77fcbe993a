"""The exactness gate of fp16/int8 layers (experiments/conv/exactness.py): right kernels pass on every
backend and algorithm, a kernel with one tap wrong fails (on the emulator and on the numpy path), and a
single accumulator off by one integer fails int8."""
import copy
import numpy as np
import pytest
import torch
from torch import nn

from experiments import swap_conv2d
from experiments.conv import exactness
from experiments.runtime import emulator
from experiments.runtime.emulator import EmulatorRuntime
from experiments.runtime.sources import HIP_DIR


def _layers():
    """Shapes no tile divides: strided, depthwise dilated, pointwise, grouped 'same' reflect (asymmetric)."""
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(5, 7, 3, padding=1, stride=2), nn.Conv2d(7, 7, 3, padding=2, dilation=2, groups=7),
                         nn.Conv2d(7, 6, 1), nn.Conv2d(6, 4, (3, 2), padding="same", groups=2,
                                                       padding_mode="reflect")).eval()


def _verdicts(model, backend, algo, gemm, dtype, x):
    """Each layer of ``model`` swapped to (algo, gemm, dtype), gated on the input the fp32 model gives it."""
    ours = swap_conv2d(copy.deepcopy(model), algo, gemm, 16, backend=backend, dtype=dtype)
    verdicts, h = [], x
    with torch.no_grad():
        for layer, fp32 in zip(ours, model):
            verdicts.append(exactness.check_layer(layer, h, layer(h)))
            h = fp32(h)
    return verdicts


X = torch.randn(2, 5, 11, 13, generator=torch.Generator().manual_seed(5))


@pytest.fixture(scope="module")
def emulator_runtime():
    return EmulatorRuntime(warp_size=32)


@pytest.mark.parametrize("dtype", ["int8", "fp16"])
@pytest.mark.parametrize("algo", ["im2col", "kn2row", "scalar"])
def test_right_kernels_pass_numpy(algo, dtype):
    verdicts = _verdicts(_layers(), "numpy", algo, "vendor", dtype, X)
    assert all(v.ok for v in verdicts), [v.describe() for v in verdicts if not v.ok]
    if dtype == "int8":   # GEMM layers are known to the bit; the depthwise layer runs float32 on rounded values
        taps = "bit-exact planes, float32 shift-add" if algo == "kn2row" else "bit-exact"
        assert [v.method for v in verdicts] == [taps, "float32 bound", "bit-exact", taps]


@pytest.mark.parametrize("dtype", ["int8", "fp16"])
@pytest.mark.parametrize("algo, gemm", [("im2col", "blocked"), ("kn2row", "blocked"), ("scalar", "blocked"),
                                        ("im2col", "vendor")])
def test_right_kernels_pass_emulator(emulator_runtime, algo, gemm, dtype):
    verdicts = _verdicts(_layers(), emulator_runtime, algo, gemm, dtype, X)
    assert all(v.ok for v in verdicts), [v.describe() for v in verdicts if not v.ok]


def test_calibrated_scale_is_the_one_checked():
    """With a calibrated input scale the reference quantizes with it, not with the input's own range."""
    model = _layers()[:1]
    ours = swap_conv2d(copy.deepcopy(model), "im2col", "vendor", backend="numpy", dtype="int8",
                       act_scales={"0": 0.01})
    with torch.no_grad():
        y = ours[0](X)
    assert exactness.check_layer(ours[0], X, y).ok
    other = swap_conv2d(copy.deepcopy(model), "im2col", "vendor", backend="numpy", dtype="int8")
    with torch.no_grad():
        assert not exactness.check_layer(ours[0], X, other[0](X)).ok


def test_one_integer_off_fails_int8_and_one_term_off_fails_fp16():
    model = _layers()[:1]
    for dtype in ("int8", "fp16"):
        ours = swap_conv2d(copy.deepcopy(model), "im2col", "vendor", backend="numpy", dtype=dtype)
        with torch.no_grad():
            y = ours[0](X).clone()
        assert exactness.check_layer(ours[0], X, y).ok
        bias = float(model[0].bias.detach()[4])
        if dtype == "int8":   # one product of int8 values more: the smallest wrong accumulator
            scale = float(np.float32(exactness.lowp.activation_scale(X.numpy()))
                          * exactness.lowp.quantize_weight(model[0].weight.detach().numpy())[1][4])
            y[1, 4, 2, 3] += scale
        else:                 # 1e-3 relative: far under the old 1e-2 fp16 tolerance, far over float32 rounding
            y[1, 4, 2, 3] += 1e-3 * abs(float(y[1, 4, 2, 3]) - bias) + 1e-6
        verdict = exactness.check_layer(ours[0], X, y)
        assert verdict.wrong == 1 and "[1, 4, 2, 3]" in verdict.detail, verdict.describe()


@pytest.mark.parametrize("dtype", ["int8", "fp16"])
@pytest.mark.parametrize("algo", ["im2col", "kn2row", "scalar"])
def test_one_tap_off_fails_numpy(one_tap_off_numpy, algo, dtype):
    verdicts = _verdicts(_layers(), "numpy", algo, "vendor", dtype, X)
    failed = [v for v in verdicts if not v.ok]
    # the 1x1 layer has no tap (0, 1) to confuse; kn2row shifts output planes, so its wrong channel is an output
    assert {v.layer for v in failed} == {"0", "1", "3"}, [v.describe() for v in verdicts]
    assert all(v.wrong < v.outputs for v in failed)


@pytest.fixture
def one_tap_off_emulator(monkeypatch, tmp_path):
    """im2col_lowp.hip with unfolded row 0 (channel 0, tap (0, 0)) read from tap (0, 1), compiled by the emulator:
    a copy beside a copy of the body it includes (hip/im2col.h, shared with the float32 im2col), which is wrong."""
    body = (HIP_DIR / "im2col.h").read_text()
    right = "iw = ow[j] * SW - PW + kw * DW;"
    assert right in body
    (tmp_path / "im2col.h").write_text(body.replace(right, right.replace("kw * DW", "(kw + (r == 0)) * DW")))
    wrong = tmp_path / "im2col_lowp.hip"
    wrong.write_text((HIP_DIR / "im2col_lowp.hip").read_text())   # #include "im2col.h" finds the copy first
    real = emulator.source_path
    monkeypatch.setattr(emulator, "source_path", lambda name: wrong if name == "im2col_lowp.hip" else real(name))
    return EmulatorRuntime(warp_size=32)


@pytest.mark.parametrize("dtype", ["int8", "fp16"])
def test_one_tap_off_fails_emulator(one_tap_off_emulator, dtype):
    verdicts = _verdicts(_layers(), one_tap_off_emulator, "im2col", "blocked", dtype, X)
    failed = {v.layer: v for v in verdicts if not v.ok}
    # layers 0 and 3 unfold their input (1 runs the depthwise kernel, 2 is 1x1: no unfolding)
    assert set(failed) == {"0", "3"}, [v.describe() for v in verdicts]
    if dtype == "int8":
        assert failed["0"].method == "bit-exact" and "int64 reference" in failed["0"].describe()


def test_fp16_overflow_must_match_the_reference():
    """Inputs past half's range: the kernel's infinities and NaN are right where the reference has them."""
    model = _layers()[:1]
    x = X.clone()
    x[0, 0, 4, 4] = 1e6                      # inf in half
    ours = swap_conv2d(copy.deepcopy(model), "im2col", "vendor", backend="numpy", dtype="fp16")
    with torch.no_grad():
        y = ours[0](x)
    assert not torch.isfinite(y).all() and exactness.check_layer(ours[0], x, y).ok
    y[0, 0, 0, 0] = float("nan")
    assert not exactness.check_layer(ours[0], x, y).ok


def test_gamma_and_bad_dtype():
    assert exactness.gamma(1) == pytest.approx(2.0 ** -24)
    assert exactness.gamma(1000) > 1000 * 2.0 ** -24
    ours = swap_conv2d(_layers()[:1], "im2col", "vendor", backend="numpy")
    with pytest.raises(ValueError, match="fp16 and int8"):
        exactness.check_layer(ours[0], X, ours[0](X))


def test_reference_is_integer_arithmetic():
    """integer_conv is int64 end to end and equals a direct sum of products."""
    g = torch.Generator().manual_seed(1)
    qx = torch.randint(-127, 128, (1, 4, 6, 5), generator=g, dtype=torch.int8)
    qw = torch.randint(-127, 128, (6, 2, 3, 2), generator=g, dtype=torch.int8)
    acc = exactness.integer_conv(qx, qw, (1, 2), (2, 1), 2)
    assert acc.dtype == torch.int64 and acc.shape == (1, 6, 2, 2)
    f, oh, ow = 4, 1, 1     # group 1: channels 2, 3
    direct = sum(int(qx[0, 2 + c, oh + 2 * i, 2 * ow + j]) * int(qw[f, c, i, j])
                 for c in range(2) for i in range(3) for j in range(2))
    assert int(acc[0, f, oh, ow]) == direct
