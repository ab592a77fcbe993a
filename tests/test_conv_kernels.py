"""The hip/ kernels, through the emulator (always) and the GPU (where one is), against float64 PyTorch."""
import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments import conv2d, swap_conv2d
from experiments.conv import Variant
from experiments.conv.kernel_launch import KernelLauncher
from experiments.conv.tolerance import RELATIVE_TOLERANCE, relative_error
from experiments.runtime import gpu_available, resolve
from experiments.runtime.emulator import EmulatorRuntime
from tests.conv_cases import CASES, error_vs_reference, model_and_reference, random_conv

TOL = RELATIVE_TOLERANCE["fp32"]

RUNTIMES = [
    pytest.param("emulator-warp32", id="emulator-warp32"),
    pytest.param("emulator-warp64", id="emulator-warp64"),
    pytest.param("gpu", id="gpu", marks=[pytest.mark.gpu,
                                         pytest.mark.skipif(not gpu_available(), reason="no GPU visible to CuPy")]),
]


def runtime_named(name: str):
    if name == "gpu":
        return resolve("gpu")
    return EmulatorRuntime(warp_size=int(name.removeprefix("emulator-warp")))


# GEMM back-ends of the kernel runtimes: the blocked kernel at each tile, and the vendor GEMM.
GEMMS = [("blocked", 8), ("blocked", 16), ("blocked", 32), ("vendor", 16)]
# scalar has no GEMM: one GEMM choice covers it.
ALGO_GEMMS = [(algo, *gemm) for algo in ("im2col", "kn2row") for gemm in GEMMS] + [("scalar", *GEMMS[0])]


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("tile", [8, 16, 32])
@pytest.mark.parametrize("m, n, k, batch", [(67, 45, 83, 2), (1, 130, 7, 1), (129, 3, 64, 3)])
def test_blocked_gemm_any_shape(runtime, tile, m, n, k, batch):
    rt = runtime_named(runtime)
    rng = np.random.default_rng(m * n * k)
    a, b = rng.standard_normal((m, k)), rng.standard_normal((batch, k, n))
    c = KernelLauncher(rt, Variant.of("im2col", "blocked", tile)).gemm(rt.xp.asarray(a, dtype=np.float32), rt.xp.asarray(b, dtype=np.float32))
    c = c if isinstance(c, np.ndarray) else c.get()
    assert relative_error(c, np.matmul(a, b)) < 1e-5


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("algo, gemm, tile", ALGO_GEMMS, ids=lambda v: str(v))
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[:7])))
def test_matches_float64_torch(runtime, algo, gemm, tile, case):
    n, c, f, h, w, kh, kw, stride, padding, dilation = case
    rng = np.random.default_rng(hash(case) % 2**32)
    x, weight, bias = random_conv(rng, n, c, f, h, w, kh, kw)
    kwargs = dict(stride=stride, padding=padding, dilation=dilation)
    y = conv2d(x, weight, bias, **kwargs, algo=algo, gemm=gemm, tile=tile, backend=runtime_named(runtime))
    assert error_vs_reference(y, x, weight, bias, **kwargs) < TOL


@pytest.mark.parametrize("algo", ["im2col", "kn2row", "scalar"])
def test_non_contiguous_inputs(algo):
    rng = np.random.default_rng(5)
    x, weight, bias = random_conv(rng, 2, 3, 5, 20, 18, 3, 3)
    for view in (x.to(memory_format=torch.channels_last), x[:, :, ::2, 1:], x.transpose(2, 3)):
        y = conv2d(view, weight, bias, padding=1, algo=algo, gemm="blocked", tile=8, backend="emulator")
        assert error_vs_reference(y, view, weight, bias, padding=1) < TOL


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 2), c=st.integers(1, 9), f=st.integers(1, 20),
    h=st.integers(1, 16), w=st.integers(1, 16), kh=st.integers(1, 7), kw=st.integers(1, 7),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    padding=st.tuples(st.integers(0, 3), st.integers(0, 3)),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    algo=st.sampled_from(["im2col", "kn2row", "scalar"]), gemm=st.sampled_from(GEMMS),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_any_valid_shape(n, c, f, h, w, kh, kw, stride, padding, dilation, algo, gemm, seed):
    h_o = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    w_o = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    if h_o < 1 or w_o < 1:
        return  # no output: torch rejects it too
    x, weight, bias = random_conv(np.random.default_rng(seed), n, c, f, h, w, kh, kw)
    kwargs = dict(stride=stride, padding=padding, dilation=dilation)
    y = conv2d(x, weight, bias, **kwargs, algo=algo, gemm=gemm[0], tile=gemm[1], backend="emulator")
    assert error_vs_reference(y, x, weight, bias, **kwargs) < TOL


@pytest.mark.parametrize("algo, gemm, tile", [("im2col", "blocked", 16), ("kn2row", "blocked", 32), ("scalar", "blocked", 8)])
@pytest.mark.parametrize("model_name", ["resnet18", "vgg16"])
def test_whole_model_on_the_kernels(model_name, algo, gemm, tile):
    """swap_conv2d on the emulator: every conv layer of the model runs the hip/ kernels."""
    model, x, reference = model_and_reference(model_name)
    with torch.no_grad():
        y = swap_conv2d(copy.deepcopy(model), algo=algo, gemm=gemm, tile=tile, backend="emulator")(x)
    assert relative_error(y.numpy(), reference.numpy()) < TOL
