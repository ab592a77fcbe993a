"""Every rung of the GEMM ladder (hip/gemm_<n>_*.hip), at every tile, on the emulator at warp 32 and 64
(and the GPU where one is), against float64 PyTorch on shapes that are no multiple of any tile."""

import numpy as np
import pytest
import torch

from experiments import conv2d
from experiments.conv import ladder
from experiments.conv.kernel_launch import KernelLauncher
from experiments.conv.tolerance import relative_error
from experiments.conv.variant import Variant
from experiments.runtime import gpu_available, resolve
from experiments.runtime.emulator import EmulatorRuntime
from tests.conv_cases import error_vs_reference, random_conv

RUNTIMES = [
    pytest.param("emulator-warp32", id="emulator-warp32"),
    pytest.param("emulator-warp64", id="emulator-warp64"),
    pytest.param("gpu", id="gpu", marks=[pytest.mark.gpu,
                                         pytest.mark.skipif(not gpu_available(), reason="no GPU visible to CuPy")]),
]
# (M, N, K, batch, groups): ragged edges everywhere; (70, 52, 36) has K and N multiples of 4 (the
# 128-bit paths) but M, N no multiple of a block tile; (5, 49, 200) is a late conv layer's shape
# (long K, N = 7 x 7) that split-K splits; (33, 50, 20, 4, 2) is grouped (A[b % 2]).
SHAPES = [(67, 45, 83, 2, 1), (70, 52, 36, 3, 1), (5, 49, 200, 2, 1), (33, 50, 20, 4, 2)]


def runtime_named(name: str, **kwargs):
    if name == "gpu":
        return resolve("gpu")
    return EmulatorRuntime(warp_size=int(name.removeprefix("emulator-warp")), **kwargs)


def reference(a: np.ndarray, b: np.ndarray, groups: int) -> np.ndarray:
    a64, b64 = torch.from_numpy(a).double(), torch.from_numpy(b).double()
    return torch.stack([a64[i % groups] @ b64[i] for i in range(b.shape[0])]).numpy()


def host(array) -> np.ndarray:
    return array if isinstance(array, np.ndarray) else array.get()


def operands(seed: int, m: int, n: int, k: int, batch: int, groups: int):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((groups, m, k)).astype(np.float32),
            rng.standard_normal((batch, k, n)).astype(np.float32))


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("tile", ladder.TILES)
@pytest.mark.parametrize("rung", ladder.RUNG_NAMES)
def test_every_rung_matches_float64(runtime, rung, tile):
    rt = runtime_named(runtime)
    for i, (m, n, k, batch, groups) in enumerate(SHAPES):
        a, b = operands(i, m, n, k, batch, groups)
        c = ladder.gemm(rt, rung, tile, rt.xp.asarray(a[0] if groups == 1 else a), rt.xp.asarray(b), groups)
        assert relative_error(host(c), reference(a, b, groups)) < 1e-5, (rung, tile, m, n, k, batch, groups)


@pytest.mark.parametrize("rung", ["splitk", "fold"])
@pytest.mark.parametrize("splits", [2, 3, 7])
def test_split_k_any_split_count(rung, splits):
    """Forced split counts, a K that is no multiple of a split's range: the reduction sums every plane once."""
    rt = EmulatorRuntime(warp_size=32)
    for m in (21, 20):   # 3 x 20 x 30 outputs: the reduction's float4 path; 3 x 21 x 30: its scalar one
        a, b = operands(splits, m, 30, 101, 3, 1)
        c = ladder.gemm(rt, rung, 16, a[0], b, 1, splits=splits)
        assert relative_error(c, reference(a, b, 1)) < 1e-5, m


def test_split_count_fills_the_gpu_and_keeps_splits_long():
    assert ladder.split_count(blocks=4, k=4608, sms=132) == ladder.MAX_SPLITS   # resnet18 layer4 at batch 1
    assert ladder.split_count(blocks=1000, k=4608, sms=132) == 1                # enough blocks already
    assert ladder.split_count(blocks=4, k=100, sms=132) == 1                    # K too short to split
    assert ladder.split_count(blocks=33, k=4608, sms=132) == 8


@pytest.mark.parametrize("rung", ["vec4", "warptile", "fold"])
def test_misaligned_operands_take_the_scalar_path(rung):
    """Views starting one float past a 16-byte boundary (K and N multiples of 4): the kernels must not
    issue 128-bit loads there. Unchecked launches keep the arrays where they are (a checked launch
    copies them into aligned guard buffers)."""
    rt = EmulatorRuntime(warp_size=32, checked=False)
    a, b = operands(9, 40, 36, 44, 2, 1)
    a_buf, b_buf, c_buf = (np.empty(x.size + 1, np.float32) for x in (a, b, np.empty((2, 40, 36))))
    a_view, b_view = a_buf[1:].reshape(a.shape), b_buf[1:].reshape(b.shape)
    a_view[...], b_view[...] = a, b
    assert a_view.ctypes.data % 16 and b_view.ctypes.data % 16
    c = ladder.gemm(rt, rung, 16, a_view[0], b_view, 1)
    assert relative_error(c, reference(a, b, 1)) < 1e-5
    del c_buf


@pytest.mark.parametrize("rung", ["naive", "fold"])
@pytest.mark.parametrize("algo", ["im2col", "kn2row"])
def test_convolutions_on_a_rung(algo, rung):
    """conv2d with rung=...: batch 3 and a grouped layer, against float64 PyTorch."""
    rng = np.random.default_rng(13)
    for groups in (1, 2):
        x, weight, bias = random_conv(rng, 3, 4, 6, 11, 9, 3, 3)
        weight = weight[:, : 4 // groups].contiguous()
        kwargs = dict(stride=1, padding=1, dilation=1, groups=groups)
        y = conv2d(x, weight, bias, **kwargs, algo=algo, gemm="blocked", tile=8, rung=rung,
                   backend=EmulatorRuntime(warp_size=32))
        assert error_vs_reference(y, x, weight, bias, **kwargs) < 1e-4


def test_launcher_runs_the_named_rung(monkeypatch):
    """The launcher's rung reaches the ladder (a silently ignored gemm.rung would run blocked)."""
    ran = []
    real = ladder.gemm
    monkeypatch.setattr(ladder, "gemm", lambda rt, rung, *args, **kw: ran.append(rung) or real(rt, rung, *args, **kw))
    rt = EmulatorRuntime(warp_size=32)
    a, b = operands(1, 9, 10, 11, 1, 1)
    KernelLauncher(rt, Variant.of("im2col", "blocked", 8, rung="dbuf")).gemm(a[0], b)
    assert ran == ["dbuf"]


def test_unknown_rung_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown GEMM rung 'fastest'.*naive, blocked, vec4"):
        ladder.rung("fastest")


def test_split_k_fills_the_device_it_runs_on(monkeypatch):
    """On a GPU the SM count comes from the device (the stand-in CuPy here, tests/fake_cupy.py); off a GPU,
    an H100's. (tests/test_runtime_gpu.py: the same on ROCm, where Device.attributes fails.)"""
    from experiments import runtime
    from tests import fake_cupy
    monkeypatch.setattr(ladder, "_MULTIPROCESSORS", {})   # the stand-in's count must not outlive the test
    fake_cupy.install(monkeypatch, sms=110)
    runtime._runtime.cache_clear()
    try:
        assert ladder.multiprocessors(runtime.resolve("gpu")) == 110
    finally:
        runtime._runtime.cache_clear()
    assert ladder.multiprocessors(EmulatorRuntime(warp_size=32)) == ladder.DEFAULT_SMS


def test_fold_needs_whole_images():
    rt = EmulatorRuntime(warp_size=32)
    a, b = operands(3, 4, 5, 6, 3, 2)
    with pytest.raises(ValueError, match="3 matrices of B are not whole images of 2 groups"):
        ladder.gemm(rt, "fold", 8, a, b, 2)


def test_low_precision_refuses_a_float32_rung():
    """fp16/int8 have rung 1 only: another rung is an error, not silently ignored."""
    rng = np.random.default_rng(2)
    x, weight, bias = random_conv(rng, 1, 4, 6, 8, 8, 3, 3)
    with pytest.raises(ValueError, match="gemm rung 'fold' is a float32 rung.*dtype='fp16' runs rung 'blocked'"):
        conv2d(x, weight, bias, padding=1, algo="im2col", gemm="blocked", rung="fold", dtype="fp16",
               backend=EmulatorRuntime(warp_size=32))


def test_the_deprecated_gemm_kernel_keyword_still_names_the_rung(monkeypatch):
    """conv2d(gemm_kernel=...) (the keyword's former name) runs that rung, with a FutureWarning."""
    ran = []
    real = ladder.gemm
    monkeypatch.setattr(ladder, "gemm", lambda rt, rung, *args, **kw: ran.append(rung) or real(rt, rung, *args, **kw))
    rng = np.random.default_rng(4)
    x, weight, bias = random_conv(rng, 1, 4, 6, 8, 8, 3, 3)
    with pytest.warns(FutureWarning, match="gemm_kernel= is deprecated.*rung="):
        conv2d(x, weight, bias, padding=1, algo="im2col", gemm="blocked", tile=8, gemm_kernel="dbuf",
               backend=EmulatorRuntime(warp_size=32))
    assert ran == ["dbuf"]
    with pytest.raises(ValueError, match="rung='fold' and the deprecated gemm_kernel='dbuf' disagree"):
        conv2d(x, weight, bias, algo="im2col", gemm="blocked", rung="fold", gemm_kernel="dbuf",
               backend=EmulatorRuntime(warp_size=32))
