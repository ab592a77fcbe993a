"""Grouped and depthwise convolutions: accounting, the numpy reference, the hip/ kernels (emulator,
warp 32 and 64; GPU where one is) and whole grouped/depthwise models, against float64 PyTorch."""
import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from experiments import conv2d, swap_conv2d
from experiments.conv import ConvbenchConv2d, ConvGeometry, Variant, layer_cost
from experiments.conv.plan import ConvPlan
from experiments.conv.tolerance import RELATIVE_TOLERANCE, relative_error
from experiments.runtime import resolve
from tests.conv_cases import error_vs_reference, model_and_reference
from tests.test_conv_kernels import RUNTIMES, runtime_named

TOL = RELATIVE_TOLERANCE["fp32"]

# (n, c, f, h, w, kh, kw, stride, padding, dilation, groups): sizes not multiples of any tile;
# groups from 2 to C; depthwise with channel multipliers 1, 2 and 3.
GROUPED = [
    (2, 6, 10, 11, 9, 3, 3, 1, 1, 1, 2),                 # 3 -> 5 channels per group
    (1, 12, 8, 10, 10, 1, 1, 1, 0, 1, 4),                # grouped pointwise (no workspace)
    (2, 8, 24, 9, 7, 3, 3, 2, 1, 1, 4),                  # 2 -> 6: scalar's COB=8 variant
    (1, 64, 64, 6, 5, 3, 3, 1, 1, 1, 32),                # resnext-like: 2 -> 2 per group, COB=4
    (1, 40, 80, 7, 7, 3, 2, (2, 1), (1, 0), (1, 2), 2),  # 20 -> 40: several GEMM tiles per group
]
DEPTHWISE = [
    (2, 8, 8, 13, 10, 3, 3, 1, 1, 1, 8),                 # mobilenet: 3x3, stride 1
    (1, 7, 7, 12, 9, 3, 3, 2, 1, 1, 7),                  # stride 2
    (2, 4, 12, 9, 11, 5, 3, (1, 2), (2, 1), (2, 1), 4),  # multiplier 3, rectangular, dilated
    (1, 5, 10, 7, 7, 7, 7, 1, 3, 1, 5),                  # multiplier 2, 7x7: blocks span channels
    (1, 300, 300, 5, 5, 5, 5, 1, 0, 1, 300),             # 1x1 output planes, 5x5: filters read from global
]


def _conv(case, seed=0):
    n, c, f, h, w, kh, kw, stride, padding, dilation, groups = case
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.standard_normal((n, c, h, w), dtype=np.float32))
    weight = torch.from_numpy(rng.standard_normal((f, c // groups, kh, kw), dtype=np.float32))
    bias = torch.from_numpy(rng.standard_normal(f, dtype=np.float32))
    return x, weight, bias, dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


def _id(case):
    return "x".join(map(str, case[:7])) + f"-g{case[-1]}"


def test_accounting_of_grouped_and_depthwise_layers():
    g = ConvGeometry.from_shapes((2, 128, 28, 28), (128, 4, 3, 3), padding=1, groups=32)
    im2col, kn2row, scalar = (layer_cost(g, Variant.of(a, "blocked", 16)) for a in ("im2col", "kn2row", "scalar"))
    assert im2col.flops == 2 * 2 * 128 * 28 * 28 * 4 * 9
    assert (im2col.gemm_m, im2col.gemm_n, im2col.gemm_k, im2col.gemm_groups) == (4, 2 * 28 * 28, 36, 32)
    assert (kn2row.gemm_m, kn2row.gemm_n, kn2row.gemm_k, kn2row.gemm_groups) == (36, 2 * 28 * 28, 4, 32)
    for cost in (im2col, kn2row):
        assert cost.flops == 2 * cost.gemm_m * cost.gemm_n * cost.gemm_k * cost.gemm_groups
    assert im2col.workspace_bytes == 4 * 2 * 128 * 9 * 28 * 28     # every group's columns
    assert kn2row.workspace_bytes == 4 * 2 * 128 * 9 * 28 * 28     # every group's partial planes
    assert (im2col.variant, kn2row.variant, scalar.variant) == ("im2col/blocked-t16/fp32", "kn2row/blocked-t16/fp32", "scalar/fp32")
    assert scalar.min_bytes == 4 * (2 * 128 * 28 * 28 + 128 * 4 * 9 + 2 * 128 * 28 * 28)

    dw = ConvGeometry.from_shapes((1, 96, 56, 56), (96, 1, 3, 3), stride=2, padding=1, groups=96)
    assert dw.is_depthwise and not g.is_depthwise
    for algo in ("im2col", "kn2row", "scalar"):
        cost = layer_cost(dw, Variant.of(algo, "vendor"))
        assert cost.gemm_m == 0 and cost.workspace_bytes == 0 and cost.gemm_groups == 0
        assert cost.flops == 2 * 96 * 28 * 28 * 9
    assert layer_cost(dw, Variant("pytorch")).variant == "pytorch/fp32"


@pytest.mark.parametrize("algo", ["im2col", "kn2row", "scalar"])
@pytest.mark.parametrize("case", [GROUPED[0], GROUPED[1], DEPTHWISE[2]], ids=_id)
def test_workspace_and_kernel_recorded_by_the_plan(algo, case):
    x, weight, _, kwargs = _conv(case)
    plan = ConvPlan.build(weight.numpy(), None, kwargs["stride"], kwargs["padding"], kwargs["dilation"],
                          kwargs["groups"], Variant.of(algo, "vendor"), resolve("numpy"))
    plan(x.numpy())
    g = ConvGeometry.from_shapes(x.shape, weight.shape, kwargs["stride"], kwargs["padding"], kwargs["dilation"],
                                 kwargs["groups"])
    ran = Variant("depthwise") if g.is_depthwise else Variant.of(algo, "vendor")
    assert plan.layer_variant == ran and plan.last_cost == layer_cost(g, ran)


@pytest.mark.parametrize("algo", ["im2col", "kn2row", "scalar"])
@pytest.mark.parametrize("case", GROUPED + DEPTHWISE, ids=_id)
def test_numpy_matches_float64_torch(algo, case):
    x, weight, bias, kwargs = _conv(case)
    y = conv2d(x, weight, bias, **kwargs, algo=algo, gemm="vendor", backend="numpy")
    assert error_vs_reference(y, x, weight, bias, **kwargs) < TOL


KERNEL_VARIANTS = [("im2col", "blocked", 8), ("im2col", "vendor", 16), ("kn2row", "blocked", 32),
                   ("kn2row", "vendor", 16), ("scalar", "blocked", 16)]


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("algo, gemm, tile", KERNEL_VARIANTS, ids=lambda v: str(v))
@pytest.mark.parametrize("case", GROUPED, ids=_id)
def test_grouped_kernels_match_float64_torch(runtime, algo, gemm, tile, case):
    x, weight, bias, kwargs = _conv(case, seed=1)
    y = conv2d(x, weight, bias, **kwargs, algo=algo, gemm=gemm, tile=tile, backend=runtime_named(runtime))
    assert error_vs_reference(y, x, weight, bias, **kwargs) < TOL


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("case", DEPTHWISE, ids=_id)
def test_depthwise_kernel_matches_float64_torch(runtime, case):
    x, weight, bias, kwargs = _conv(case, seed=2)
    rt = runtime_named(runtime)
    ys = [conv2d(x, weight, bias, **kwargs, algo=algo, gemm="blocked", backend=rt) for algo in ("im2col", "scalar")]
    assert error_vs_reference(ys[0], x, weight, bias, **kwargs) < TOL
    np.testing.assert_array_equal(ys[0].numpy(), ys[1].numpy())   # the same kernel for every algorithm


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 2), c_per_group=st.integers(1, 4), f_per_group=st.integers(1, 5), groups=st.integers(2, 6),
    h=st.integers(1, 12), w=st.integers(1, 12), kh=st.integers(1, 5), kw=st.integers(1, 5),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    algo=st.sampled_from(["im2col", "kn2row", "scalar"]),
    gemm=st.sampled_from([("blocked", 8), ("blocked", 16), ("vendor", 16), ("sparse", 16)]),
    density=st.sampled_from([1.0, 0.5, 0.1]), seed=st.integers(0, 2**32 - 1),
)
def test_property_grouped_depthwise_sparse(n, c_per_group, f_per_group, groups, h, w, kh, kw, stride, padding,
                                           dilation, algo, gemm, density, seed):
    """Any valid grouped (c_per_group > 1) or depthwise (c_per_group == 1) layer, dense or pruned."""
    h_o = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    w_o = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    if h_o < 1 or w_o < 1:
        return
    case = (n, c_per_group * groups, f_per_group * groups, h, w, kh, kw, stride, padding, dilation, groups)
    x, weight, bias, kwargs = _conv(case, seed)
    weight = weight * torch.from_numpy(np.random.default_rng(seed).random(weight.shape) < density)
    y = conv2d(x, weight, bias, **kwargs, algo=algo, gemm=gemm[0], tile=gemm[1], backend="emulator")
    assert error_vs_reference(y, x, weight, bias, **kwargs) < TOL


def _check_every_layer(model: nn.Module, swapped: nn.Module, x: torch.Tensor) -> int:
    """Each swapped conv layer against its float64 original on the input it saw; returns how many were grouped."""
    inputs, grouped = {}, 0
    hooks = [m.register_forward_pre_hook(lambda m, a, name=name: inputs.__setitem__(name, a[0]))
             for name, m in model.named_modules() if type(m) is nn.Conv2d]
    with torch.no_grad():
        model(x)
        for h in hooks:
            h.remove()
        for name, x_in in inputs.items():
            conv, ours = model.get_submodule(name), swapped.get_submodule(name)
            assert isinstance(ours, ConvbenchConv2d), name
            reference = copy.deepcopy(conv).double()(x_in.double())
            assert relative_error(ours(x_in).numpy(), reference.numpy()) < TOL, name
            grouped += conv.groups > 1
    return grouped


GROUPED_MODELS = ["mobilenet_v2", "shufflenet_v2_x1_0", "resnext50_32x4d"]


@pytest.mark.parametrize("algo", ["im2col", "kn2row", "scalar"])
@pytest.mark.parametrize("model_name", GROUPED_MODELS)
def test_grouped_models_agree_with_pytorch_on_numpy(model_name, algo):
    model, x, reference = model_and_reference(model_name)
    swapped = swap_conv2d(copy.deepcopy(model), algo=algo, gemm="vendor", backend="numpy")
    assert not any(type(m) is nn.Conv2d for m in swapped.modules())
    with torch.no_grad():
        y = swapped(x)
    assert relative_error(y.numpy(), reference.numpy()) < TOL
    if algo == "im2col":   # the model output alone can hide a layer (shufflenet's is dominated by the head)
        assert _check_every_layer(model, swapped, x) == {"mobilenet_v2": 17, "shufflenet_v2_x1_0": 19,
                                                         "resnext50_32x4d": 16}[model_name]


def test_mobilenet_v2_on_the_kernels():
    """The whole depthwise-separable model through the emulator: depthwise kernel + blocked GEMM."""
    model, x, reference = model_and_reference("mobilenet_v2")
    swapped = swap_conv2d(copy.deepcopy(model), algo="im2col", gemm="blocked", tile=16, backend="emulator")
    with torch.no_grad():
        y = swapped(x)
    assert relative_error(y.numpy(), reference.numpy()) < TOL
    kernels = {m.cost.variant for m in swapped.modules() if isinstance(m, ConvbenchConv2d)}
    assert kernels == {"depthwise/fp32", "im2col/blocked-t16/fp32"}
