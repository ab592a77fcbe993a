"""The GEMM ladder: the rungs of hip/gemm_<n>_*.hip, from naive to fast, and how each is launched.

Every rung computes the same thing, C[b] = A[b % groups] @ B[b] in float32 for any M, N, K, and
takes the same parallelism parameter ``tile`` (the side of the thread block, TILE x TILE threads,
what the course sweeps as ``gemm.tile``); ``gemm.rung`` names the rung. Each kernel file's
header says what its rung changes and what that should buy; ``make kernel-report`` shows what the
compiler made of it.

    rung  name        file                      thread block   block tile (TILE = 8 / 16 / 32)
    0     naive       gemm_0_naive.hip          TILE x TILE    8 / 16 / 32
    1     blocked     gemm_1_blocked.hip        TILE x TILE    32 / 64 / 128
    2     vec4        gemm_2_vec4.hip           TILE*TILE      64 / 128 / 128
    3     dbuf        gemm_3_dbuf.hip           TILE*TILE      64 / 128 / 128
    4     warptile    gemm_4_warptile.hip       TILE*TILE      64 / 128 / 128
    5     splitk      gemm_5_splitk.hip         TILE*TILE      64 / 128 / 128, K split over blocks
    6     fold        gemm_6_fold.hip           TILE*TILE      64 / 128 / 128, images folded into N
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TILES = (8, 16, 32)
MAX_GRID_Y = 65535   # CUDA and HIP limits on gridDim.y and .z (x: 2**31 - 1)
MAX_GRID_Z = 65535
SLICE_K = 8          # BK of rungs 2-6 (hip/gemm_ladder.h): a split's K range is a multiple of it
MIN_SPLIT_SLICES = 8  # each split walks at least 8 slices (64 of K): shorter ones cost more than they save
MAX_SPLITS = 16
REDUCE_THREADS = 256
DEFAULT_SMS = 132    # the H100 SXM: the grid size split-K aims at where the runtime has no SM count


@dataclass(frozen=True)
class Rung:
    number: int
    name: str
    function: str         # the kernel (GPU function) in the file
    summary: str          # what the rung changes (docs/library.md's ladder table)

    @property
    def source(self) -> str:
        return f"gemm_{self.number}_{self.name}.hip"


RUNGS = (
    Rung(0, "naive", "gemm_naive", "one thread per element of C, operands straight from global memory"),
    Rung(1, "blocked", "gemm_blocked", "shared-memory tiles, 4x4 register micro-tile, 32-bit loads"),
    Rung(2, "vec4", "gemm_vec4", "8x8 micro-tile (4x4 at TILE=32), 128-bit global and shared loads"),
    Rung(3, "dbuf", "gemm_dbuf", "double buffering through registers: next slice's loads in flight"),
    Rung(4, "warptile", "gemm_warptile", "warp tiling: a warp's lanes 4x8 over a 32x64 tile"),
    Rung(5, "splitk", "gemm_splitk", "split-K for small-M/N, long-K GEMMs, deterministic reduction"),
    Rung(6, "fold", "gemm_fold", "images sharing a filter folded into N (batch > 1)"),
)
RUNG_NAMES = tuple(r.name for r in RUNGS)
BY_NAME = {r.name: r for r in RUNGS}
DEFAULT_RUNG = "blocked"


def rung(name: str) -> Rung:
    if name not in BY_NAME:
        raise ValueError(f"unknown GEMM rung {name!r}; valid (gemm.rung, the rungs of the ladder, naive to "
                         f"fast): {', '.join(RUNG_NAMES)}")
    return BY_NAME[name]


def block_tile(name: str, tile: int) -> int:
    """The side of the square of C one thread block computes."""
    number = rung(name).number
    if number == 0:
        return tile
    if number == 1:
        return tile * 4
    return tile * (4 if tile >= 32 else 8)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def split_count(blocks: int, k: int, sms: int) -> int:
    """Splits of K for a grid of ``blocks`` output tiles: enough to give every SM two blocks, each
    split at least MIN_SPLIT_SLICES slices long, at most MAX_SPLITS."""
    wanted = _ceil_div(2 * sms, blocks)
    return max(1, min(wanted, k // (SLICE_K * MIN_SPLIT_SLICES), MAX_SPLITS))


def multiprocessors(runtime) -> int:
    """The device's SMs (CUs on AMD), which split-K fills; DEFAULT_SMS off a GPU, so that the emulator
    splits as an H100 would."""
    if not runtime.is_gpu:
        return DEFAULT_SMS
    device = runtime.xp.cuda.Device().id
    if device not in _MULTIPROCESSORS:   # .attributes queries every attribute of the device: once
        _MULTIPROCESSORS[device] = int(runtime.xp.cuda.Device(device).attributes["MultiProcessorCount"])
    return _MULTIPROCESSORS[device]


_MULTIPROCESSORS: dict[int, int] = {}


def gemm(runtime, name: str, tile: int, a, b, groups: int, splits: int | None = None):
    """Rung ``name`` at ``tile``: a (groups x M x K) times b (batch x K x N), image b with a[b % groups].

    ``splits`` (rungs 5 and 6) overrides the split-K heuristic (tests force it). Returns batch x M x N.
    """
    rung_ = rung(name)
    if tile not in TILES:
        raise ValueError(f"tile={tile!r} is not a GEMM tile; valid: {', '.join(map(str, TILES))}")
    xp = runtime.xp
    batch, k, n = b.shape
    m = a.shape[-2]
    c = xp.empty((batch, m, n), dtype=xp.float32)
    side = block_tile(name, tile)
    tiles_m, tiles_n = _ceil_div(m, side), _ceil_div(n, side)
    if tiles_m > MAX_GRID_Y:
        raise ValueError(f"{rung_.function}: M={m} needs {tiles_m} row tiles, more than the grid's y limit {MAX_GRID_Y}")
    strides = (np.int64(m * k), np.int64(k * n), np.int64(m * n))
    kernel = runtime.load(rung_.source, {"TILE": tile}).get_function(rung_.function)
    threads = (tile, tile) if rung_.number <= 1 else (tile * tile,)

    if rung_.number <= 4:
        if batch > MAX_GRID_Z:
            raise ValueError(f"{rung_.function}: a batch of {batch} exceeds the grid's z limit of {MAX_GRID_Z}")
        kernel((tiles_n, tiles_m, batch), threads,
               (a, b, c, np.int32(m), np.int32(n), np.int32(k), np.int32(groups), *strides))
        return c

    folded = rung_.name == "fold"
    if folded and batch % groups:
        raise ValueError(f"gemm_fold: {batch} matrices of B are not whole images of {groups} groups each")
    images = batch // groups if folded else batch
    if folded and images * n >= 2**31:
        raise ValueError(f"gemm_fold: {images} images x N={n} columns exceed 2**31 - 1 folded columns")
    planes = groups if folded else batch           # blocks along z per split
    if folded:
        tiles_n = _ceil_div(images * n, side)
    if splits is None:
        splits = split_count(tiles_n * tiles_m * planes, k, multiprocessors(runtime))
    k_per_split = _ceil_div(_ceil_div(k, max(splits, 1)), SLICE_K) * SLICE_K
    splits = max(1, _ceil_div(k, k_per_split)) if k else 1   # no empty split
    if planes * splits > MAX_GRID_Z:
        raise ValueError(f"{rung_.function}: {planes} x {splits} splits exceeds the grid's z limit of {MAX_GRID_Z}")
    out = c if splits == 1 else xp.empty((splits, batch, m, n), dtype=xp.float32)
    sizes = (np.int32(m), np.int32(n), np.int32(k), np.int32(groups), np.int32(images))
    kernel((tiles_n, tiles_m, planes * splits), threads, (a, b, out, *sizes, *strides, np.int32(k_per_split)))
    if splits > 1:
        count = batch * m * n
        reduce = runtime.load(BY_NAME["splitk"].source, {"TILE": tile}).get_function("gemm_splitk_reduce")
        reduce((max(1, min(_ceil_div(count, 4 * REDUCE_THREADS), MAX_GRID_Y)),), (REDUCE_THREADS,),
               (out, c, np.int64(count), np.int32(splits)))
    return c
