"""The GEMM ladder: the rungs of hip/gemm_<n>_*.hip, from naive to fast, and how each is launched.

Every rung computes the same thing, C[b] = A[b % groups] @ B[b] in float32 for any M, N, K, and
takes the same parallelism parameter, the threads per side of its thread block (``threads_per_side``,
what the course sweeps as ``gemm.tile``); ``gemm.rung`` names the rung. Each kernel file's header
says what its rung changes and what that should buy; ``make kernel-report`` shows what the compiler
made of it. The shapes (CUTLASS's words: thread tile, block tile, K slice) are defined here only and
reach the kernels as -D defines (``BlockShape.defines``):

    rung  name      file                 block            thread tile      block tile (side 8 / 16 / 32)
    0     naive     gemm_0_naive.hip     side x side      1 x 1            8 / 16 / 32
    1     blocked   gemm_1_blocked.hip   side x side      4 x 4            32 / 64 / 128
    2     vec4      gemm_2_vec4.hip      side*side        8 x 8 (4 at 32)  64 / 128 / 128
    3     dbuf      gemm_3_dbuf.hip      side*side        8 x 8 (4 at 32)  64 / 128 / 128
    4     warptile  gemm_4_warptile.hip  side*side        8 x 8 (4 at 32)  64 / 128 / 128
    5     splitk    gemm_5_splitk.hip    side*side        8 x 8 (4 at 32)  64 / 128 / 128, K split over blocks
    6     fold      gemm_6_fold.hip      side*side        8 x 8 (4 at 32)  64 / 128 / 128, images folded into N
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .grid import GRID_STRIDE_MAX_BLOCKS, MAX_GRID_Y, MAX_GRID_Z, ceil_div

TILES = (8, 16, 32)   # the threads per side a rung takes (gemm.tile)
SLICE_K = 8           # BK of rungs 2-6 (hip/gemm_ladder.h): a split's K range is a multiple of it
MIN_SPLIT_SLICES = 8  # each split walks at least 8 slices (64 of K): shorter ones cost more than they save
MAX_SPLITS = 16
REDUCE_THREADS = 256  # threads per block of the split-K reduction (gemm_splitk_reduce)
REDUCE_OUTPUTS = 4    # outputs per thread and step of the reduction: one float4
DEFAULT_SMS = 132     # the H100 SXM: the grid size split-K aims at where the runtime has no SM count


@dataclass(frozen=True)
class BlockShape:
    """How one thread block of a GEMM is laid out: its threads and the tile of C it computes."""

    threads_per_side: int   # the block is threads_per_side^2 threads (gemm.tile)
    thread_tile: int        # each thread computes a thread_tile x thread_tile tile of C
    flat: bool              # threads as one dimension (rungs 2-6) or threads_per_side x threads_per_side
    slice_k: int | None     # the K slice a block stages per step (BK), where the host needs it
    extra: tuple = ()       # further (define, value) pairs of the source (the split-K reduction's)

    @property
    def block_tile(self) -> int:
        """The side of the square of C one thread block computes."""
        return self.threads_per_side * self.thread_tile

    @property
    def threads(self) -> tuple[int, ...]:
        side = self.threads_per_side
        return (side * side,) if self.flat else (side, side)

    def defines(self) -> dict[str, int]:
        """The -D defines of the kernel source: the one source of these shapes for both sides."""
        shape = {"THREADS_PER_SIDE": self.threads_per_side, "THREAD_TILE": self.thread_tile,
                 "BLOCK_TILE": self.block_tile}
        if self.slice_k is not None:
            shape["SLICE_K"] = self.slice_k
        return {**shape, **dict(self.extra)}


@dataclass(frozen=True)
class Rung:
    number: int
    name: str
    function: str         # the kernel (GPU function) in the file
    summary: str          # what the rung changes (docs/library.md's ladder table)
    thread_tiles: tuple[int, int, int]   # the thread tile's side at 8, 16 and 32 threads per side

    @property
    def source(self) -> str:
        return f"gemm_{self.number}_{self.name}.hip"

    def shape(self, threads_per_side: int) -> BlockShape:
        """The block shape at ``threads_per_side`` (one of TILES); ValueError for another value."""
        if threads_per_side not in TILES:
            raise ValueError(f"tile={threads_per_side!r} is not a GEMM tile (threads per block side); valid: "
                             f"{', '.join(map(str, TILES))}")
        flat = self.number >= 2
        extra = (("REDUCE_THREADS", REDUCE_THREADS), ("REDUCE_OUTPUTS", REDUCE_OUTPUTS)) if self.name == "splitk" else ()
        return BlockShape(threads_per_side, self.thread_tiles[TILES.index(threads_per_side)], flat,
                          SLICE_K if flat else None, extra)


# Rungs 2-6: 8 x 8 thread tiles, but 4 x 4 at 32 threads per side (1024 threads leave 64 registers
# each: 8 x 8 would spill).
_LADDER_TILES = (8, 8, 4)
RUNGS = (
    Rung(0, "naive", "gemm_naive", "one thread per element of C, operands straight from global memory", (1, 1, 1)),
    Rung(1, "blocked", "gemm_blocked", "shared-memory tiles, 4x4 register thread tile, 32-bit loads", (4, 4, 4)),
    Rung(2, "vec4", "gemm_vec4", "8x8 thread tile (4x4 at 32 threads per side), 128-bit global and shared loads",
         _LADDER_TILES),
    Rung(3, "dbuf", "gemm_dbuf", "double buffering through registers: next slice's loads in flight", _LADDER_TILES),
    Rung(4, "warptile", "gemm_warptile", "warp tiling: a warp's lanes 4x8 over a 32x64 tile", _LADDER_TILES),
    Rung(5, "splitk", "gemm_splitk", "split-K for small-M/N, long-K GEMMs, deterministic reduction", _LADDER_TILES),
    Rung(6, "fold", "gemm_fold", "images sharing a filter folded into N (batch > 1)", _LADDER_TILES),
)
RUNG_NAMES = tuple(r.name for r in RUNGS)
BY_NAME = {r.name: r for r in RUNGS}
DEFAULT_RUNG = "blocked"


def rung(name: str) -> Rung:
    if name not in BY_NAME:
        raise ValueError(f"unknown GEMM rung {name!r}; valid (gemm.rung, the rungs of the ladder, naive to "
                         f"fast): {', '.join(RUNG_NAMES)}")
    return BY_NAME[name]


def block_tile(name: str, threads_per_side: int) -> int:
    """The side of the square of C one thread block of rung ``name`` computes."""
    return rung(name).shape(threads_per_side).block_tile


def split_count(blocks: int, k: int, sms: int) -> int:
    """Splits of K for a grid of ``blocks`` output tiles: enough to give every SM two blocks, each
    split at least MIN_SPLIT_SLICES slices long, at most MAX_SPLITS."""
    wanted = ceil_div(2 * sms, blocks)
    return max(1, min(wanted, k // (SLICE_K * MIN_SPLIT_SLICES), MAX_SPLITS))


def multiprocessors(runtime) -> int:
    """The device's SMs (CUs on AMD), which split-K fills; DEFAULT_SMS off a GPU, so that the emulator
    splits as an H100 would."""
    if not runtime.is_gpu:
        return DEFAULT_SMS
    cuda = runtime.xp.cuda
    device = cuda.Device().id
    if device not in _MULTIPROCESSORS:   # one attribute, not Device.attributes (all of them; fails on ROCm)
        _MULTIPROCESSORS[device] = int(cuda.runtime.deviceGetAttribute(cuda.runtime.cudaDevAttrMultiProcessorCount,
                                                                       device))
    return _MULTIPROCESSORS[device]


_MULTIPROCESSORS: dict[int, int] = {}


@dataclass(frozen=True)
class SplitPlan:
    """How rungs 5 and 6 lay a GEMM over the grid: blocks along x (tiles_n) and z (planes per split)."""

    splits: int
    k_per_split: int
    tiles_n: int
    planes: int

    def workspace_bytes(self, batch: int, m: int, n: int) -> int:
        """The splits x batch x M x N float32 partial sums (none without a split)."""
        return 0 if self.splits == 1 else 4 * self.splits * batch * m * n


def split_plan(name: str, threads_per_side: int, m: int, n: int, k: int, batch: int, groups: int, sms: int,
               splits: int | None = None) -> SplitPlan:
    """The split of K that rung ``name`` (splitk or fold) takes for a (groups x M x K) times (batch x K x N)
    GEMM on a device of ``sms`` multiprocessors (``splits``: forced, as tests do); the launch and the
    memory estimate (experiments/conv/memory.py) both take it from here."""
    side = block_tile(name, threads_per_side)
    folded = rung(name).name == "fold"
    planes = groups if folded else batch   # blocks along z per split
    tiles_n = ceil_div((batch // groups if folded else 1) * n, side)
    if splits is None:
        splits = split_count(tiles_n * ceil_div(m, side) * planes, k, sms)
    k_per_split = ceil_div(ceil_div(k, max(splits, 1)), SLICE_K) * SLICE_K
    splits = max(1, ceil_div(k, k_per_split)) if k else 1   # no empty split
    return SplitPlan(splits, k_per_split, tiles_n, planes)


def gemm(runtime, name: str, threads_per_side: int, a, b, groups: int, splits: int | None = None):
    """Rung ``name`` with ``threads_per_side`` (gemm.tile): a (groups x M x K) times b (batch x K x N), image b
    with a[b % groups].

    ``splits`` (rungs 5 and 6) overrides the split-K heuristic (tests force it). Returns batch x M x N.
    """
    rung_ = rung(name)
    shape = rung_.shape(threads_per_side)
    xp = runtime.xp
    batch, k, n = b.shape
    m = a.shape[-2]
    c = xp.empty((batch, m, n), dtype=xp.float32)
    side = shape.block_tile
    tiles_m, tiles_n = ceil_div(m, side), ceil_div(n, side)
    if tiles_m > MAX_GRID_Y:
        raise ValueError(f"{rung_.function}: M={m} needs {tiles_m} row tiles, more than the grid's y limit {MAX_GRID_Y}")
    strides = (np.int64(m * k), np.int64(k * n), np.int64(m * n))
    module = runtime.load(rung_.source, shape.defines())
    kernel = module.get_function(rung_.function)

    if rung_.number <= 4:
        if batch > MAX_GRID_Z:
            raise ValueError(f"{rung_.function}: a batch of {batch} exceeds the grid's z limit of {MAX_GRID_Z}")
        kernel((tiles_n, tiles_m, batch), shape.threads,
               (a, b, c, np.int32(m), np.int32(n), np.int32(k), np.int32(groups), *strides))
        return c

    folded = rung_.name == "fold"
    if folded and batch % groups:
        raise ValueError(f"gemm_fold: {batch} matrices of B are not whole images of {groups} groups each")
    images = batch // groups if folded else batch
    if folded and images * n >= 2**31:
        raise ValueError(f"gemm_fold: {images} images x N={n} columns exceed 2**31 - 1 folded columns")
    plan = split_plan(name, threads_per_side, m, n, k, batch, groups,
                      multiprocessors(runtime) if splits is None else 0, splits)
    splits = plan.splits
    if plan.planes * splits > MAX_GRID_Z:
        raise ValueError(f"{rung_.function}: {plan.planes} x {splits} splits exceeds the grid's z limit of {MAX_GRID_Z}")
    out = c if splits == 1 else xp.empty((splits, batch, m, n), dtype=xp.float32)
    sizes = (np.int32(m), np.int32(n), np.int32(k), np.int32(groups), np.int32(images))
    kernel((plan.tiles_n, tiles_m, plan.planes * splits), shape.threads,
           (a, b, out, *sizes, *strides, np.int32(plan.k_per_split)))
    if splits > 1:
        count = batch * m * n
        splitk = BY_NAME["splitk"]
        reduce = runtime.load(splitk.source, splitk.shape(threads_per_side).defines()).get_function("gemm_splitk_reduce")
        reduce((max(1, min(ceil_div(count, REDUCE_OUTPUTS * REDUCE_THREADS), GRID_STRIDE_MAX_BLOCKS)),), (REDUCE_THREADS,),
               (out, c, np.int64(count), np.int32(splits)))
    return c
