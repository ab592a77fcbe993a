"""The emulator runtime (experiments/runtime/emulator.py + hip/emulator/hip_cpu.h) cannot pass by accident.

The test kernels are in tests/kernels/emulator_checks.hip. Every build goes to a fresh cache
directory, so the compile-once behaviour is tested from a cold cache.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments.runtime import emulator
from experiments.runtime.emulator import (CompileError, EmulatorError, EmulatorRuntime, OutOfBoundsError,
                                          UnknownKernelError)

ROOT = Path(__file__).resolve().parents[1]
CHECKS = Path(__file__).resolve().parent / "kernels" / "emulator_checks.hip"
TILE = 16


@pytest.fixture(scope="module", autouse=True)
def cache_dir(tmp_path_factory):
    """A cold build cache for this module (CONVBENCH_CACHE_DIR is read at each load)."""
    path = tmp_path_factory.mktemp("convbench-cache")
    old = os.environ.get("CONVBENCH_CACHE_DIR")
    os.environ["CONVBENCH_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        del os.environ["CONVBENCH_CACHE_DIR"]
    else:
        os.environ["CONVBENCH_CACHE_DIR"] = old


def checks(warp_size: int = 32, threads: int = 2, **defines):
    return EmulatorRuntime(warp_size=warp_size, threads=threads).load(str(CHECKS), defines or None)


def run_matmul(module, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    (m, k), n = a.shape, b.shape[1]
    c = np.zeros((m, n), np.float32)
    fn = module.get_function("matmul_tiled")
    fn(((n + TILE - 1) // TILE, (m + TILE - 1) // TILE), (TILE, TILE),
       (a, b, c, np.int32(m), np.int32(n), np.int32(k)))
    return c


def random_operands(m=37, n=50, k=45, seed=0):  # no dimension a multiple of the tile
    rng = np.random.default_rng(seed)
    return rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32)


@pytest.mark.parametrize("warp_size", [32, 64])
def test_tiled_matmul_matches_float64_numpy(warp_size):
    module = checks(warp_size)
    a, b = random_operands()
    c = run_matmul(module, a, b)
    expected = a.astype(np.float64) @ b.astype(np.float64)
    assert np.abs(c - expected).max() <= 1e-5 * np.abs(expected).max()

    out = np.zeros(1, np.int32)
    module.get_function("write_warp_size")((1,), (1,), (out,))
    assert out[0] == warp_size


def test_missing_syncthreads_gives_a_wrong_answer():
    a, b = random_operands()
    expected = a.astype(np.float64) @ b.astype(np.float64)
    module = checks(DROP_SYNC=1)
    c = run_matmul(module, a, b)
    right = np.abs(c - expected) <= 0.5 * np.abs(expected).max()  # NaN (unwritten shared memory): wrong
    assert right.mean() < 0.1, f"{right.mean():.0%} of C is right without __syncthreads()"
    again = run_matmul(EmulatorRuntime(threads=1).load(str(CHECKS), {"DROP_SYNC": 1}), a, b)
    assert np.array_equal(c, again, equal_nan=True), "the wrong answer must not depend on the workers"


@pytest.mark.parametrize("shift, where", [(1, r"elements \[100\.\.100\] past its end"),
                                          (-1, r"elements \[-1\.\.-1\] before its start")])
def test_out_of_bounds_write_is_caught(shift, where):
    out = np.zeros(100, np.float32)
    fn = checks().get_function("write_shifted")
    with pytest.raises(OutOfBoundsError, match=rf"kernel 'write_shifted'.*argument 'out' \(float\*.*{where}"):
        fn((4,), (32,), (out, np.int32(100), np.int32(shift)))
    fn((4,), (32,), (out, np.int32(100), np.int32(0)))  # in bounds: no error, results copied back
    assert (out == 1).all()


def test_argument_errors_are_clear():
    module = checks()
    fn = module.get_function("matmul_tiled")
    a, b = random_operands(8, 8, 8)
    c = np.zeros((8, 8), np.float32)
    grid, block = (1, 1), (TILE, TILE)
    with pytest.raises(TypeError, match=r"'matmul_tiled' takes 6 arguments, got 5: matmul_tiled\(const float\* A"):
        fn(grid, block, (a, b, c, np.int32(8), np.int32(8)))
    with pytest.raises(TypeError, match=r"argument 4 'N' \(int\) .*pass numpy.int32\(\.\.\.\), got int 8"):
        fn(grid, block, (a, b, c, np.int32(8), 8, np.int32(8)))
    with pytest.raises(TypeError, match=r"argument 5 'K' .*got numpy.int64\(8\)"):
        fn(grid, block, (a, b, c, np.int32(8), np.int32(8), np.int64(8)))
    with pytest.raises(TypeError, match=r"argument 0 'A' \(const float\*\) .*needs a float32 array, got a float64"):
        fn(grid, block, (a.astype(np.float64), b, c, np.int32(8), np.int32(8), np.int32(8)))
    with pytest.raises(TypeError, match=r"argument 1 'B' .*pass a numpy array, got list"):
        fn(grid, block, (a, b.tolist(), c, np.int32(8), np.int32(8), np.int32(8)))
    with pytest.raises(ValueError, match=r"argument 0 'A' .*not C-contiguous"):
        fn(grid, block, (a.T, b, c, np.int32(8), np.int32(8), np.int32(8)))
    with pytest.raises(ValueError, match=r"more than __launch_bounds__\(256\) of kernel 'matmul_tiled'"):
        fn(grid, (32, 32), (a, b, c, np.int32(8), np.int32(8), np.int32(8)))
    with pytest.raises(ValueError, match=r"grid must be a tuple of 1 to 3 ints"):
        fn((1, 1, 1, 1), block, (a, b, c, np.int32(8), np.int32(8), np.int32(8)))
    with pytest.raises(UnknownKernelError, match=r"no kernel 'matmul' in emulator_checks.hip; available: "
                                                 r"matmul_tiled, write_indices, .*scalars"):
        module.get_function("matmul")
    with pytest.raises(ValueError, match=r"warp_size=48 is not supported; valid: 32, 64"):
        EmulatorRuntime(warp_size=48)
    with pytest.raises(FileNotFoundError, match=r"no kernel source 'nope.hip'.*available: \["):
        EmulatorRuntime().load("nope.hip")


def test_builtin_variables_in_a_3d_grid_and_block():
    grid, block = (3, 2, 2), (4, 3, 2)
    out = np.full((2, 2, 3, 2, 3, 4, 12), 99, np.uint32)  # [bz, by, bx, tz, ty, tx, field]
    checks().get_function("write_indices")(grid, block, (out,))
    bz, by, bx, tz, ty, tx = np.indices(out.shape[:-1])
    expected = np.stack([tx, ty, tz, bx, by, bz, *(np.full_like(tx, v) for v in block + grid)], axis=-1)
    np.testing.assert_array_equal(out, expected)


def test_atomics_across_concurrent_blocks():
    count, total = np.zeros(1, np.uint32), np.zeros(1, np.uint64)
    blocks, threads = 64, 128
    checks().get_function("count_threads")((blocks,), (threads,), (count, total))
    n = blocks * threads
    assert count[0] == n and total[0] == n * (n - 1) // 2


def test_divergent_barrier_is_an_error_and_the_module_recovers():
    module = checks()
    out = np.zeros(32, np.float32)
    fn = module.get_function("divergent_barrier")
    with pytest.raises(EmulatorError, match=r"'divergent_barrier'.*divergent __syncthreads\(\) in block \(0,0,0\): "
                                            r"16 of 32 threads wait .*thread \(16,0,0\)"):
        fn((1,), (32,), (out, np.int32(16)))
    fn((2,), (32,), (out, np.int32(32)))  # all threads reach the barrier: fine, on the same workers
    assert (out == 1).all()


def test_fiber_stack_overflow_is_an_error_and_the_module_recovers():
    """Fiber stacks lie side by side: an overflow lands in the neighbour's, caught by the canary."""
    module = checks()
    out = np.zeros(4, np.float32)
    fn = module.get_function("deep_stack")
    with pytest.raises(EmulatorError, match=r"'deep_stack'.*thread \(2,0,0\) of block \(0,0,0\) overflowed its "
                                            r"\d+-byte fiber stack"):
        fn((1,), (4,), (out, np.int32(2)))
    fn((3,), (4,), (out, np.int32(-1)))  # no thread goes deep: fine, on the same fibers
    assert (out == 1).all()


def test_dynamic_shared_memory_and_syncthreads_count():
    x = np.random.default_rng(1).standard_normal(1000).astype(np.float32)
    sums, positives = np.zeros(8, np.float32), np.zeros(8, np.int32)
    fn = checks().get_function("block_sum")
    fn((8,), (128,), (x, sums, positives, np.int32(1000)), shared_mem=128 * 4)
    padded = np.zeros(1024, np.float32)
    padded[:1000] = x
    np.testing.assert_allclose(sums, padded.reshape(8, 128).sum(axis=1, dtype=np.float64), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(positives, (padded.reshape(8, 128) > 0).sum(axis=1))


def test_scalar_types_reach_the_kernel():
    out = np.zeros(7)
    args = (out, np.int32(-7), np.uint32(4_000_000_000), np.int64(-2**40), np.float32(1.5), np.float64(2.25),
            np.float16(0.5), np.bool_(True))
    checks().get_function("scalars")((1,), (1,), args)
    np.testing.assert_array_equal(out, [-7, 4_000_000_000, -2**40, 1.5, 2.25, 0.5, 1])


def test_each_build_compiles_once_per_machine(cache_dir):
    count = emulator.compile_count
    first = checks(TILE=8)
    assert first.compiled and emulator.compile_count == count + 1
    second = EmulatorRuntime().load(str(CHECKS), {"TILE": 8})
    assert not second.compiled and second.library_path == first.library_path
    assert emulator.compile_count == count + 1
    code = ("from experiments.runtime.emulator import EmulatorRuntime;"
            f"m = EmulatorRuntime().load({str(CHECKS)!r}, {{'TILE': 8}});"
            "print(m.compiled, m.library_path)")
    env = dict(os.environ, CONVBENCH_CACHE_DIR=str(cache_dir), PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", str(first.library_path)]


def test_compile_errors_carry_the_compiler_output(tmp_path):
    broken = tmp_path / "broken.hip"
    broken.write_text('#include "common.h"\nKERNEL void broken(float* out) { out[0] = undeclared; }\n')
    with pytest.raises(CompileError, match=r"(?s)g\+\+ failed to compile broken.hip.*'undeclared' was not declared"):
        EmulatorRuntime().load(str(broken))
