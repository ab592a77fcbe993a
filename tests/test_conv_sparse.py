"""Unstructured sparsity: CSR building, the spmm_csr kernel (emulator warp 32/64; GPU where one is),
the scipy/numpy reference, gemm='sparse' and 'auto_sparse' in conv2d and swap_conv2d."""
import copy

import numpy as np
import pytest
import torch

from experiments import conv2d, swap_conv2d
from experiments.conv import ConvbenchConv2d, ConvGeometry, Variant, layer_cost
from experiments.conv.kernel_launch import KernelLauncher
from experiments.conv.plan import ConvPlan
from experiments.conv.sparse import CsrFilter, _numpy_spmm, density_threshold
from experiments.conv.tolerance import RELATIVE_TOLERANCE, relative_error
from experiments.runtime import resolve
from tests.conv_cases import CASES, error_vs_reference, model_and_reference, random_conv
from tests.test_conv_kernels import RUNTIMES, runtime_named

TOL = RELATIVE_TOLERANCE["fp32"]


def _pruned(rng, shape, density):
    a = rng.standard_normal(shape).astype(np.float32)
    return a * (rng.random(shape) < density)


def test_csr_of_a_dense_and_of_a_grouped_filter():
    rng = np.random.default_rng(0)
    a = _pruned(rng, (7, 11), 0.3)
    a[2] = 0                                      # an empty row
    csr = CsrFilter.from_dense(a, np)
    dense = np.zeros(csr.shape, np.float32)
    for m in range(csr.shape[0]):
        cols = csr.col_idx[csr.row_ptr[m]:csr.row_ptr[m + 1]]
        assert np.all(np.diff(cols) > 0)          # sorted within a row
        dense[m, cols] = csr.values[csr.row_ptr[m]:csr.row_ptr[m + 1]]
    np.testing.assert_array_equal(dense, a)
    assert csr.nnz == np.count_nonzero(a) and csr.density == pytest.approx(np.count_nonzero(a) / a.size)
    assert csr.row_ptr.dtype == csr.col_idx.dtype == np.int32 and csr.values.dtype == np.float32

    stack = _pruned(rng, (3, 4, 5), 0.5)          # 3 groups of 4 x 5: block-diagonal 12 x 15
    grouped = CsrFilter.from_dense(stack, np)
    assert grouped.shape == (12, 15)
    b = rng.standard_normal((2, 15, 6)).astype(np.float32)
    expected = np.concatenate([stack[g] @ b[:, 5 * g:5 * g + 5] for g in range(3)], axis=1)
    np.testing.assert_allclose(grouped.matmul(b), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_numpy_spmm(grouped, b[0]), expected[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("m, n, k, batch, density", [
    (67, 45, 83, 2, 0.3), (1, 130, 7, 1, 1.0), (129, 3, 64, 3, 0.05), (9, 257, 300, 1, 0.0), (33, 129, 5, 2, 0.6)])
def test_spmm_kernel_any_shape_and_density(runtime, m, n, k, batch, density):
    rt = runtime_named(runtime)
    rng = np.random.default_rng(m * n + k)
    a, b = _pruned(rng, (m, k), density), rng.standard_normal((batch, k, n)).astype(np.float32)
    c = KernelLauncher(rt, Variant.of("im2col", "sparse")).gemm(CsrFilter.from_dense(a, rt.xp), rt.xp.asarray(b))
    c = c if isinstance(c, np.ndarray) else c.get()
    expected = np.matmul(a.astype(np.float64), b)
    assert c.shape == (batch, m, n)
    if density == 0.0:
        assert not c.any()
    else:
        assert relative_error(c, expected) < 1e-5


@pytest.mark.parametrize("backend", ["numpy", "emulator"])
@pytest.mark.parametrize("algo", ["im2col", "kn2row"])
@pytest.mark.parametrize("case", CASES[1:6] + CASES[8:], ids=lambda c: "x".join(map(str, c[:7])))
def test_sparse_conv_matches_float64_torch(backend, algo, case):
    n, c, f, h, w, kh, kw, stride, padding, dilation = case
    rng = np.random.default_rng(hash(case) % 2**32)
    x, weight, bias = random_conv(rng, n, c, f, h, w, kh, kw)
    weight = weight * torch.from_numpy(rng.random(weight.shape) < 0.3)
    kwargs = dict(stride=stride, padding=padding, dilation=dilation)
    y = conv2d(x, weight, bias, **kwargs, algo=algo, gemm="sparse", backend=backend)
    assert error_vs_reference(y, x, weight, bias, **kwargs) < TOL


@pytest.mark.parametrize("backend", ["numpy", "emulator"])
def test_auto_sparse_picks_the_spmm_below_the_threshold_only(backend):
    runtime = resolve(backend) if backend == "numpy" else runtime_named("emulator-warp32")
    threshold = density_threshold(runtime)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 16, 9, 9)).astype(np.float32)
    g = ConvGeometry.from_shapes(x.shape, (24, 16, 3, 3), padding=1)
    for density, expected in [(threshold / 2, "sparse"), (min(1.0, threshold * 3), "vendor")]:
        w = _pruned(rng, (24, 16, 3, 3), density)
        for algo in ("im2col", "kn2row"):
            plan = ConvPlan.build(w, None, 1, 1, 1, 1, Variant.of(algo, "auto_sparse"), runtime)
            y = plan(x)
            ran = Variant.of(algo, expected)
            assert plan.layer_variant == ran and plan.last_cost.variant == f"{algo}/{expected}/fp32"
            assert isinstance(plan.prepared_weight, CsrFilter) == (expected == "sparse")
            assert plan.last_cost == layer_cost(g, ran)
            reference = torch.nn.functional.conv2d(torch.from_numpy(x).double(), torch.from_numpy(w).double(),
                                                   padding=1).numpy()
            assert relative_error(y, reference) < TOL


def test_sparse_choices_are_validated():
    x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    with pytest.raises(ValueError, match="unknown GEMM back-end 'sparce' .*did you mean sparse.*"
                                         "valid: blocked, vendor, sparse, auto_sparse"):
        conv2d(x, w, gemm="sparce", backend="numpy")
    y = conv2d(x, w, algo="scalar", gemm="sparse", backend="numpy")   # scalar has no GEMM: runs as scalar
    assert error_vs_reference(y, x, w) < TOL


def test_pruned_resnet18_on_the_sparse_gemm():
    """Every layer pruned to 20% density (unstructured), whole model on scipy's CSR product."""
    model, x, _ = model_and_reference("resnet18")
    pruned = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in pruned.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.mul_(torch.rand(m.weight.shape, generator=gen) < 0.2)
        reference = copy.deepcopy(pruned).double()(x.double())
        swapped = swap_conv2d(copy.deepcopy(pruned), algo="im2col", gemm="sparse", backend="numpy")
        y = swapped(x)
    assert relative_error(y.numpy(), reference.numpy()) < TOL
    plans = [m.plan for m in swapped.modules() if isinstance(m, ConvbenchConv2d)]
    assert all(isinstance(p.prepared_weight, CsrFilter) and 0.15 < p.density < 0.25 for p in plans)
