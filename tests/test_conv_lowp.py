"""fp16 and int8 convolutions (experiments/conv/lowp.py): the kernels through the emulator (warp 32 and
64) and the GPU where one is, the numpy path, through the exactness gate (experiments/conv/exactness.py:
int8 bit-exact against an int64 reference, fp16 within the float32 accumulation bound) and against the
float64 convolution of the float32 operands (the precision's rough budget)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from experiments import conv2d, swap_conv2d
from experiments.compress.quantization import calibrate
from experiments.conv import lowp
from experiments.conv import exactness
from experiments.conv.geometry import as_pair
from experiments.conv.tolerance import RELATIVE_TOLERANCE, relative_error
from experiments.runtime import gpu_available, resolve
from experiments.runtime.emulator import EmulatorRuntime

RUNTIMES = [
    pytest.param("emulator-warp32", id="emulator-warp32"),
    pytest.param("emulator-warp64", id="emulator-warp64"),
    pytest.param("gpu", id="gpu", marks=[pytest.mark.gpu,
                                         pytest.mark.skipif(not gpu_available(), reason="no GPU visible to CuPy")]),
]
_EMULATORS: dict[int, EmulatorRuntime] = {}


def runtime_named(name: str):
    if name == "gpu":
        return resolve("gpu")
    warp = int(name.removeprefix("emulator-warp"))
    return _EMULATORS.setdefault(warp, EmulatorRuntime(warp_size=warp))


def check(y, x, w, b, dtype, act_scale=None, algo="im2col", stride=1, padding=0, dilation=1, groups=1):
    """The exactness gate (int8 bit-exact against int64, fp16 within the float32 accumulation bound), and the
    distance from the float64 convolution of the float32 operands within the precision's rough budget."""
    spec = exactness.LayerSpec("layer", w, b, as_pair(stride, "stride"), padding, as_pair(dilation, "dilation"), groups, "zeros", dtype,
                               algo, act_scale)
    verdict = exactness.check(spec, x, y)
    assert verdict.ok, verdict.describe()
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    full = relative_error(y.numpy(), F.conv2d(x.double(), w.double(), None if b is None else b.double(),
                                              **kwargs).numpy())
    assert full < RELATIVE_TOLERANCE[dtype], f"{dtype} vs float64 of float32 operands: {full:.3g}"


# (n, c, f, h, w, k, stride, padding, dilation, groups): no size a multiple of any tile
CASES = [(2, 5, 7, 9, 11, 3, 1, 1, 1, 1), (1, 6, 10, 13, 7, 3, 2, 2, 1, 2), (1, 3, 5, 6, 6, 1, 1, 0, 1, 1),
         (1, 4, 4, 8, 9, 3, 1, 2, 2, 4)]
ALGO_GEMMS = [("im2col", "blocked", 8), ("im2col", "blocked", 32), ("im2col", "vendor", 16),
              ("kn2row", "blocked", 16), ("kn2row", "vendor", 16), ("scalar", "blocked", 16)]


def _case(case, seed=0):
    n, c, f, h, w, k, *_ , groups = case
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, c, h, w, generator=g), torch.randn(f, c // groups, k, k, generator=g),
            torch.randn(f, generator=g))


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("dtype", ["fp16", "int8"])
@pytest.mark.parametrize("algo, gemm, tile", ALGO_GEMMS, ids=lambda v: str(v))
def test_kernels_pass_the_exactness_gate(runtime, dtype, algo, gemm, tile):
    rt = runtime_named(runtime)
    for case in CASES:
        x, w, b = _case(case)
        kwargs = dict(stride=case[6], padding=case[7], dilation=case[8], groups=case[9])
        y = conv2d(x, w, b, **kwargs, algo=algo, gemm=gemm, tile=tile, backend=rt, dtype=dtype)
        assert y.dtype == torch.float32 and y.shape == F.conv2d(x, w, b, **kwargs).shape
        check(y, x, w, b, dtype, algo=algo, **kwargs)


@pytest.mark.parametrize("dtype", ["fp16", "int8"])
@pytest.mark.parametrize("algo", ["im2col", "kn2row", "scalar"])
def test_numpy_path_passes_the_exactness_gate(dtype, algo):
    for case in CASES:
        x, w, b = _case(case, seed=1)
        kwargs = dict(stride=case[6], padding=case[7], dilation=case[8], groups=case[9])
        check(conv2d(x, w, b, **kwargs, algo=algo, gemm="vendor", backend="numpy", dtype=dtype), x, w, b, dtype,
              algo=algo, **kwargs)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 2), c=st.integers(1, 9), f=st.integers(1, 9), h=st.integers(1, 10), w=st.integers(1, 10),
       k=st.sampled_from([1, 2, 3]), stride=st.integers(1, 2), padding=st.integers(0, 2),
       algo=st.sampled_from(["im2col", "kn2row", "scalar"]), dtype=st.sampled_from(["fp16", "int8"]),
       scale=st.sampled_from([1e-3, 1.0, 1e3]), seed=st.integers(0, 2**16))
def test_property_numpy_any_shape_and_scale(n, c, f, h, w, k, stride, padding, algo, dtype, scale, seed):
    if h + 2 * padding < k or w + 2 * padding < k:
        return
    g = torch.Generator().manual_seed(seed)
    x, wt = torch.randn(n, c, h, w, generator=g) * scale, torch.randn(f, c, k, k, generator=g)
    y = conv2d(x, wt, None, stride, padding, algo=algo, gemm="vendor", backend="numpy", dtype=dtype)
    spec = exactness.LayerSpec("layer", wt, None, (stride, stride), padding, (1, 1), 1, "zeros", dtype, algo, None)
    verdict = exactness.check(spec, x, y)
    assert verdict.ok, verdict.describe()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(c=st.integers(1, 7), f=st.integers(1, 40), h=st.integers(2, 9), k=st.sampled_from([1, 3]),
       algo=st.sampled_from(["im2col", "kn2row", "scalar"]), tile=st.sampled_from([8, 16, 32]),
       dtype=st.sampled_from(["fp16", "int8"]), seed=st.integers(0, 2**16))
def test_property_emulator_kernels(c, f, h, k, algo, tile, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    x, w = torch.randn(1, c, h, h + 1, generator=g), torch.randn(f, c, k, k, generator=g)
    y = conv2d(x, w, None, 1, k // 2, algo=algo, gemm="blocked", tile=tile, backend=runtime_named("emulator-warp32"),
               dtype=dtype)
    spec = exactness.LayerSpec("layer", w, None, (1, 1), k // 2, (1, 1), 1, "zeros", dtype, algo, None)
    verdict = exactness.check(spec, x, y)
    assert verdict.ok, verdict.describe()


def test_quantization_semantics():
    x = np.array([-2.0, -1.0, 0.0, 0.5, 1.0, 3.0], np.float32)
    assert lowp.activation_scale(x) == pytest.approx(3.0 / 127)
    q = lowp.quantize(x, 3.0 / 127)
    assert q.dtype == np.int8 and q.tolist() == [-85, -42, 0, 21, 42, 127]
    assert lowp.quantize(np.array([10.0], np.float32), 3.0 / 127).tolist() == [127]          # clamped
    assert lowp.quantize(np.array([0.5, 1.5, 2.5], np.float32), 1.0).tolist() == [0, 2, 2]    # half to even
    w = np.zeros((3, 2, 1, 1), np.float32)
    w[0] = 2.0
    w[1, 0] = -0.5
    q, scales = lowp.quantize_weight(w)
    assert scales.tolist() == pytest.approx([2 / 127, 0.5 / 127, 1.0])   # per output channel; zero channel -> 1
    assert q[:, 0, 0, 0].tolist() == [127, -127, 0]


def test_calibrated_scales_and_swap():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 1)).eval()
    calibration, x = torch.randn(4, 3, 9, 9), torch.randn(2, 3, 9, 9)
    scales = calibrate(model, calibration)
    assert set(scales) == {"0", "2"} and scales["0"] == pytest.approx(float(calibration.abs().max()) / 127)
    ours = swap_conv2d(model, "im2col", "vendor", backend="numpy", dtype="int8", act_scales=scales)
    assert ours[0].plan.prepared_weight.act_scale == pytest.approx(scales["0"])
    assert "variant=im2col/vendor/int8" in repr(ours)
    with torch.no_grad():
        y = ours[0](x)
    check(y, x, model[0].weight.detach(), model[0].bias.detach(), "int8", scales["0"], padding=1)
    assert exactness.check_layer(ours[0], x, y).ok   # the module path: the layer's own parameters and scale
    assert ours[0].cost.min_bytes < ours[0].cost.flops   # 1-byte operands in the accounting
    assert ours[0].cost.variant.endswith("/int8")


def test_choices_are_checked():
    x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    with pytest.raises(ValueError, match="unknown dtype"):
        conv2d(x, w, backend="numpy", gemm="vendor", dtype="int4")
    with pytest.raises(ValueError, match="float32 only"):
        conv2d(x, w, backend="numpy", gemm="sparse", dtype="int8")
