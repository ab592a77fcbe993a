"""Every launch's grid covers its work and no more: run on the emulator block by block
(EmulatorRuntime(probe_blocks=True)), no block may write nothing.

A grid too large costs only speed on a GPU (each kernel's bounds check hides it), so no correctness
test sees it; here a block that does no work fails the test, for every rung of the GEMM ladder at
every tile and every other kernel (im2col, shift-add, scalar, depthwise, SpMM, the fp16/int8 GEMMs
and conversions, the split-K reduction). The shapes are no multiple of any tile, so the last block
of each dimension is partial: it must still do some work, and there must be no block beyond it.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from experiments.conv import conv2d, ladder
from experiments.runtime.emulator import EmulatorRuntime, parse_kernels
from experiments.runtime.sources import HIP_DIR

from .conv_cases import random_conv

# (M, N, K, batch, groups): odd sizes, a grouped GEMM, a K long enough to split
GEMM_SHAPES = [(37, 41, 29, 2, 1), (20, 70, 131, 2, 2)]


def _probing() -> EmulatorRuntime:
    return EmulatorRuntime(warp_size=32, threads=1, probe_blocks=True)


def _no_idle_blocks(runtime: EmulatorRuntime) -> set[str]:
    """The kernels probed; fails naming every launch with blocks that wrote nothing."""
    wasted = [f"{p.kernel} grid {p.grid}: {len(p.idle)} of {p.blocks} blocks did no work (first {p.idle[:3]})"
              for p in runtime.probes if p.idle]
    assert not wasted, "\n".join(wasted)
    return {p.kernel for p in runtime.probes}


@pytest.mark.parametrize("threads_per_side", ladder.TILES)
def test_every_rung_launches_only_blocks_with_work(threads_per_side):
    rt = _probing()
    rng = np.random.default_rng(threads_per_side)
    for rung in ladder.RUNGS:
        for m, n, k, batch, groups in GEMM_SHAPES:
            a = rng.standard_normal((groups, m, k)).astype(np.float32)
            b = rng.standard_normal((batch * groups, k, n)).astype(np.float32)
            splits = {"splitk": 3, "fold": 2}.get(rung.name)   # forced: the reduction runs too
            ladder.gemm(rt, rung.name, threads_per_side, a, b, groups, splits=splits)
    probed = _no_idle_blocks(rt)
    assert probed == {r.function for r in ladder.RUNGS} | {"gemm_splitk_reduce"}


def test_every_other_kernel_launches_only_blocks_with_work():
    """The convolutions at every precision on a plain, a grouped and a depthwise layer, and the SpMM."""
    rt = _probing()
    rng = np.random.default_rng(7)
    layers = [(random_conv(rng, 2, 5, 7, 13, 11, 3, 3), 1),   # plain
              (random_conv(rng, 2, 6, 4, 9, 10, 3, 3), 2),    # grouped: scalar's smaller channel blocks
              (random_conv(rng, 2, 6, 6, 9, 10, 3, 3), 6)]    # depthwise
    for (x, weight, bias), groups in layers:
        weight = weight[:, : x.shape[1] // groups].contiguous()
        for algo in ("im2col", "kn2row", "scalar"):
            for dtype in ("fp32", "fp16", "int8"):
                conv2d(x, weight, bias, padding=1, groups=groups, algo=algo, gemm="blocked", tile=8, dtype=dtype,
                       backend=rt)
    (x, weight, bias), _ = layers[0]
    weight = weight * torch.from_numpy(rng.random(tuple(weight.shape)) < 0.3)   # a pruned filter: the CSR SpMM
    conv2d(x, weight, bias, padding=1, algo="im2col", gemm="sparse", backend=rt)
    probed = _no_idle_blocks(rt)
    every = {name for path in HIP_DIR.glob("*.hip") for name in parse_kernels(path.read_text())}
    ladder_kernels = {r.function for r in ladder.RUNGS} | {"gemm_splitk_reduce"}
    assert every - ladder_kernels - {"gemm_blocked"} <= probed, sorted(every - ladder_kernels - probed)


def test_a_grid_too_large_is_seen(monkeypatch):
    """The probe itself: a grid four times too wide leaves three blocks in four without work."""
    rt = _probing()
    a = np.ones((1, 8, 8), np.float32)
    b = np.ones((1, 8, 8), np.float32)
    fn = rt.load(ladder.RUNGS[0].source, ladder.RUNGS[0].shape(8).defines()).get_function("gemm_naive")
    c = np.empty((1, 8, 8), np.float32)
    strides = (np.int64(64), np.int64(64), np.int64(64))
    fn((4, 1, 1), (8, 8), (a, b, c, *(np.int32(v) for v in (8, 8, 8, 1)), *strides))
    (probe,) = rt.probes
    assert probe.blocks == 4 and probe.idle == ((1, 0, 0), (2, 0, 0), (3, 0, 0))
    assert (c == 8).all()
