"""gemm=custom: a student's own GEMM kernel file checked, run, failed clearly, swept and reported.

The kernels are in tests/kernels/custom/: tiled.hip, the classic shared-memory tiled kernel with
TILE_WIDTH as its macro (host code in #ifndef CONVBENCH), and four copies broken on purpose. The
emulator caches each build on disk and each runtime its modules, so the tiled kernel at tile 8
compiles once for all these tests.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from experiments.conv import custom
from experiments.conv.tolerance import RELATIVE_TOLERANCE
from experiments.harness import check_kernel
from experiments.runtime.emulator import EmulatorRuntime, KernelTimeoutError, OutOfBoundsError
from experiments.tracking import contract

KERNELS = Path(__file__).parent / "kernels" / "custom"
TILED, INDEX_OFF, WRITE_PAST_C = KERNELS / "tiled.hip", KERNELS / "tiled_index_off.hip", KERNELS / "tiled_write_past_c.hip"
SYNTAX_ERROR, NEVER_ENDS = KERNELS / "tiled_syntax_error.hip", KERNELS / "tiled_never_ends.hip"
TOLERANCE = RELATIVE_TOLERANCE["fp32"]
# A job as short as the protocol allows (the emulator runs each kernel thread as a fiber), on resnet18 at a tiny
# input, or on the smallest CNN (digits_cnn: six convs on 8 x 8 images) where a test runs several jobs.
QUICK = ["algo=im2col", "gemm=custom", "gemm.tile_macro=TILE_WIDTH", "gemm.tile=8", "backend=emulator",
         "bench=smoke", "bench.model.warmup=0", "bench.layer.warmup=0", "bench.model.min_samples=1",
         "bench.layer.min_samples=1", "energy=off"]
RESNET18 = [*QUICK, "model=resnet18", "model.input_size=16"]
DIGITS = [*QUICK, "model=digits_cnn"]


@pytest.fixture(scope="module")
def runtime():
    return EmulatorRuntime()


def tiled(path=TILED, **options) -> custom.CustomGemm:
    return custom.read_kernel(path, tile_macro="TILE_WIDTH", **options)


# --- the contract, before any work --------------------------------------------------------------

def test_the_tiled_kernel_keeps_the_contract_and_is_identified_by_its_hash():
    kernel = tiled()
    assert (kernel.name, kernel.function, kernel.tile_macro) == ("tiled", "tiled_matmul", "TILE_WIDTH")
    import hashlib
    assert kernel.sha256 == hashlib.sha256(TILED.read_bytes()).hexdigest()


def _write(tmp_path, text: str, name: str = "k.hip") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


KERNEL = "__global__ void {name}({params}) {{ }}\n"
CONTRACT = "const float* A, const float* B, float* C, int M, int N, int K"


@pytest.mark.parametrize("text, options, message", [
    ("", {}, "no __global__ function found"),
    (KERNEL.format(name="a", params=CONTRACT) + KERNEL.format(name="b", params=CONTRACT), {},
     "defines 2 __global__ functions (a, b); name the GEMM with gemm.function=NAME"),
    (KERNEL.format(name="a", params=CONTRACT), {"function": "gemm"}, "gemm.function='gemm': no __global__ function "
     "of that name"),
    (KERNEL.format(name="a", params="const float* A, const float* B, float* C, int M, int N"), {},
     "kernel a(const float* A, const float* B, float* C, int M, int N) does not have the contract's signature"),
    (KERNEL.format(name="a", params="const double* A, const double* B, double* C, int M, int N, int K"), {},
     "does not have the contract's signature"),
    (KERNEL.format(name="a", params=CONTRACT + ", long sA, long sB, long sC"), {}, "set gemm.batched=true"),
    (KERNEL.format(name="a", params=CONTRACT), {"batched": True}, "set gemm.batched=false"),
    ("#define TILE 16\n" + KERNEL.format(name="a", params=CONTRACT), {}, "k.hip:1: #define TILE without #ifndef TILE"),
    ("#ifndef BS\n#define BS 16\n#endif\n" + KERNEL.format(name="a", params=CONTRACT), {},
     "never uses TILE (gemm.tile_macro) but defines BS with a default: is that its tile? set gemm.tile_macro=BS"),
])
def test_a_file_off_the_contract_is_refused_naming_what_was_found(tmp_path, text, options, message):
    with pytest.raises(custom.ContractError) as error:
        custom.read_kernel(_write(tmp_path, text), **options)
    assert message in str(error.value)


def test_a_missing_file_names_the_path_and_the_template(tmp_path):
    with pytest.raises(custom.ContractError, match=r"gemm.source='nowhere.hip': no such file .*hip/custom/template.hip"):
        custom.read_kernel("nowhere.hip")


def test_extern_c_and_cpp_names_are_both_found(tmp_path):
    text = ('extern "C" __global__ void plain(' + CONTRACT + ") { }\n"
            "__global__ void __launch_bounds__(256) mangled(" + CONTRACT + ") { }\n")
    path = _write(tmp_path, text)
    assert custom.read_kernel(path, function="plain").function == "plain"
    assert custom.read_kernel(path, function="mangled").function == "mangled"


# --- on the emulator ----------------------------------------------------------------------------

@pytest.mark.parametrize("m, n, k", [(37, 29, 27), (1, 17, 9), (19, 1, 33), (21, 23, 1), (64, 64, 64)])
def test_the_tiled_kernel_is_right_on_awkward_shapes(runtime, m, n, k):
    check = custom.check_gemm(runtime, tiled(), 8, m, n, k, TOLERANCE, seed=m + n + k)
    assert check.ok, check.describe()
    assert check.max_error < 1e-6


def test_one_index_off_names_the_first_wrong_element(runtime):
    check = custom.check_gemm(runtime, tiled(INDEX_OFF), 8, 5, 6, 11, TOLERANCE)   # K 11: one tile short
    assert not check.ok and check.wrong == (0, 0)
    assert "first wrong element of C at (row 0, column 0)" in check.describe()
    # the first element wrong in row-major order, by an independent computation of what the kernel does
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((5, 11)).astype(np.float32), rng.standard_normal((1, 11, 6)).astype(np.float32)
    truncated = a[:, :8].astype(np.float64) @ b[0, :8].astype(np.float64)
    assert check.got == pytest.approx(truncated[0, 0], rel=1e-5)


def test_a_write_past_c_names_the_kernel_the_array_and_the_index(runtime):
    with pytest.raises(OutOfBoundsError, match=r"kernel 'tiled_matmul' wrote out of bounds: argument 'C' "
                                               r"\(float\*, 35 elements of float32\): elements \[35\.\.\d+\] past its end"):
        custom.check_gemm(runtime, tiled(WRITE_PAST_C), 8, 7, 5, 9, TOLERANCE)


def test_a_syntax_error_shows_the_users_file_and_line(runtime):
    with pytest.raises(custom.KernelCompileError) as error:
        custom.load(runtime, tiled(SYNTAX_ERROR), 8)
    assert f"{SYNTAX_ERROR}:22:" in str(error.value) and "error: expected ';'" in str(error.value)


def test_a_kernel_that_never_ends_is_stopped_and_the_runtime_goes_on(runtime):
    runtime.kernel_timeout_s = 1.0
    try:
        start = time.monotonic()
        with pytest.raises(KernelTimeoutError, match=r"kernel 'tiled_matmul' .* did not finish within its time limit "
                                                     r"of 1 s \(bench.kernel_timeout_s\)"):
            custom.check_gemm(runtime, tiled(NEVER_ENDS), 8, 20, 20, 20, TOLERANCE)
        assert time.monotonic() - start < 60   # the compile included
        assert custom.check_gemm(runtime, tiled(), 8, 20, 20, 20, TOLERANCE).ok   # the workers are free again
    finally:
        runtime.kernel_timeout_s = None


def test_a_cpp_kernel_with_cuda_host_code_and_the_batched_form(tmp_path, runtime):
    """A C++ (mangled) name, #include <cuda_runtime.h> and a main with cudaMalloc skipped under CONVBENCH;
    the batched form: blockIdx.z is the matrix, a stride of 0 shares A."""
    path = _write(tmp_path, """#include <cuda_runtime.h>
#ifndef TILE
#define TILE 16
#endif
__global__ void batched(const float* A, const float* B, float* C, int M, int N, int K,
                        long strideA, long strideB, long strideC)
{
    A += blockIdx.z * strideA; B += blockIdx.z * strideB; C += blockIdx.z * strideC;
    int row = blockIdx.y * TILE + threadIdx.y, col = blockIdx.x * TILE + threadIdx.x;
    if (row >= M || col >= N) return;
    float acc = 0;
    for (int k = 0; k < K; ++k) acc += A[row * K + k] * B[k * N + col];
    C[row * N + col] = acc;
}
#ifndef CONVBENCH
#include <stdio.h>
int main() { float* p; cudaMalloc(&p, 4); printf("host code\\n"); return 0; }
#endif
""", "batched_gemm.cu")
    kernel = custom.read_kernel(path, batched=True)
    assert custom.check_gemm(runtime, kernel, 8, 13, 11, 7, TOLERANCE, batch=3).ok
    # grouped: groups 2, images 2: a[g] for matrices g, g + 2 of b
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 5, 3)).astype(np.float32), rng.standard_normal((4, 3, 6)).astype(np.float32)
    c = custom.gemm(runtime, kernel, 8, a, b, 2)
    np.testing.assert_allclose(c, np.stack([a[i % 2] @ b[i] for i in range(4)]), rtol=1e-5, atol=1e-5)


# --- make check-kernel -----------------------------------------------------------------------------

def test_check_kernel_passes_the_tiled_kernel(capsys):
    assert check_kernel.main([str(TILED), "--tile", "8"]) == 0
    out = capsys.readouterr().out
    assert "-DTILE_WIDTH=8" in out   # found in the file: no TILE_MACRO needed
    rows = [line for line in out.splitlines() if line.split()[:1] and line.split()[0].isdigit()]
    assert len(rows) > 15 and all(" pass " in row for row in rows)
    for shape in ("1 x 17 x 11", "17 x 1 x 11", "11 x 11 x 1", "64 x 256 x 147", "512 x 1 x 4608"):
        assert any(row.startswith(shape) for row in rows), shape   # M, N, K of 1; resnet18's conv1 and layer4
    assert "passed:" in out


def test_check_kernel_fails_the_broken_kernels_naming_why(capsys):
    assert check_kernel.main([str(INDEX_OFF), "--tile", "8"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "(row 0, column 0)" in out and out.rstrip().splitlines()[-1].startswith("FAILED")
    assert check_kernel.main([str(SYNTAX_ERROR), "--tile", "8"]) == 2
    assert f"{SYNTAX_ERROR}:22:" in capsys.readouterr().err


# --- run.py ----------------------------------------------------------------------------------------

def _runs(uri):
    from mlflow.tracking import MlflowClient
    client = MlflowClient(uri)
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_run_py_finishes_with_the_files_hash_among_its_params(convbench, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert convbench(*RESNET18, f"gemm.source={TILED}", f"tracking.uri={uri}") == 0
    (run,) = _runs(uri)
    assert run.info.status == "FINISHED", run.data.tags.get(contract.T_ERROR)
    assert run.data.params[contract.P_VARIANT_CUSTOM_SHA256] == tiled().sha256
    assert run.data.params[contract.P_VARIANT_CUSTOM_PATH] == str(TILED)
    assert run.data.params[contract.P_VARIANT_LABEL] == "im2col/custom-tiled-t8/fp32"
    assert run.data.metrics[contract.MAX_REL_ERR] <= TOLERANCE


def test_run_py_fails_a_wrong_kernel_naming_the_wrong_element(convbench, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert convbench(*DIGITS, f"gemm.source={INDEX_OFF}", f"tracking.uri={uri}") == 1
    (run,) = _runs(uri)
    error = run.data.tags[contract.T_ERROR]
    assert run.info.status == "FAILED" and "exceeds the fp32 tolerance" in error
    # digits_cnn's first conv: 16 filters of 1 x 3 x 3 on 8 x 8: the 16 x 64 x 9 GEMM; 9 is not a multiple of 8
    assert "first wrong layer stem.0" in error and "the 16 x 64 x 9 GEMM" in error
    assert "first wrong element of C at (row 0, column 0)" in error


def test_run_py_fails_a_kernel_writing_past_c_naming_the_access(convbench, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    # resnet18: its layer3 and layer4 GEMMs have N of 4 and 1 (digits_cnn's are all multiples of 8: no write past)
    assert convbench(*RESNET18, f"gemm.source={WRITE_PAST_C}", f"tracking.uri={uri}") == 1
    (run,) = _runs(uri)
    assert run.info.status == "FAILED"
    assert "kernel 'tiled_matmul' wrote out of bounds: argument 'C'" in run.data.tags[contract.T_ERROR]


def test_run_py_stops_a_kernel_that_never_ends_at_the_time_limit(convbench, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert convbench(*DIGITS, f"gemm.source={NEVER_ENDS}", "bench.kernel_timeout_s=1", f"tracking.uri={uri}") == 1
    (run,) = _runs(uri)
    assert run.info.status == "FAILED"
    assert "did not finish within its time limit of 1 s (bench.kernel_timeout_s)" in run.data.tags[contract.T_ERROR]


@pytest.mark.parametrize("source, extra, message", [
    (SYNTAX_ERROR, [], f"{SYNTAX_ERROR}:22:"),
    (TILED, ["gemm.tile_macro=TILE"], "set gemm.tile_macro=TILE_WIDTH"),
    (TILED, ["gemm.function=gemm"], "found: tiled_matmul"),
    (Path("missing.hip"), [], "gemm.source='missing.hip': no such file"),
    (TILED, ["gemm.tile=33"], "tile=33"),
])
def test_run_py_refuses_a_kernel_that_cannot_run_before_any_work(convbench, tmp_path, capsys, source, extra, message):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert convbench(*DIGITS, f"gemm.source={source}", *extra, f"tracking.uri={uri}") == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists() or not _runs(uri)


def test_a_sweep_puts_the_custom_rows_beside_the_vendor_ones_in_the_report(convbench, tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert convbench("-m", *DIGITS, "gemm=custom,vendor", "gemm.tile=8,16", f"gemm.source={TILED}",
                     f"tracking.uri={uri}") == 0
    out = capsys.readouterr().out
    assert "3 of 3 jobs ok" in out   # vendor at tile 8 and 16 is one job
    from analysis import report
    assert report.main(["--tracking-uri", uri, "--out", str(tmp_path / "reports")]) == 0
    import pandas as pd
    table = pd.read_csv(tmp_path / "reports" / "tables" / "emulated.csv")
    rows = set(zip(table["technique"], table["tile"].fillna(0).astype(int)))
    assert {("im2col+custom-tiled", 8), ("im2col+custom-tiled", 16), ("im2col+vendor", 0)} <= rows


# --- on NVIDIA: the file as the gpu runtime builds it (NVRTC with CuPy's options), no GPU needed -------------

def _nvrtc_build(path: Path, defines: dict, name: str):
    """(lowered name or None, NVRTC's log): the code and options GpuRuntime.load hands CuPy's RawModule for a
    user's file, completed as CuPy completes them (experiments/runtime/nvrtc.py), for sm_90."""
    pytest.importorskip("cupy")
    from cupy.cuda import nvrtc
    from cupy._core import core
    from experiments.runtime import gpu
    from experiments.runtime.nvrtc import CUPY_NVRTC_OPTIONS
    options = (*core.assemble_cupy_compiler_options(gpu.user_compile_options(path, custom.PRELUDE, defines)),
               *CUPY_NVRTC_OPTIONS, "-arch=sm_90")
    program = nvrtc.createProgram(gpu.user_source(path, custom.PRELUDE), str(path), [], [])
    try:
        nvrtc.addNameExpression(program, name)   # as RawModule(name_expressions=...): C++ names too
        try:
            nvrtc.compileProgram(program, list(options))
        except nvrtc.NVRTCError:
            return None, nvrtc.getProgramLog(program)
        return nvrtc.getLoweredName(program, name), nvrtc.getProgramLog(program)
    finally:
        nvrtc.destroyProgram(program)


def test_nvrtc_builds_the_tiled_kernel_with_its_hip_include_and_cpp_name():
    lowered, _ = _nvrtc_build(TILED, {"TILE_WIDTH": 16}, "tiled_matmul")
    assert lowered == "_Z12tiled_matmulPKfS0_Pfiii"   # #include <hip/hip_runtime.h> and a C++ name, under NVRTC


def test_nvrtc_reports_a_syntax_error_at_the_users_file_and_line():
    lowered, log = _nvrtc_build(SYNTAX_ERROR, {"TILE_WIDTH": 16}, "tiled_matmul")
    assert lowered is None and f"{SYNTAX_ERROR}(23): error" in log   # NVRTC names the token after the gap
    assert f"{SYNTAX_ERROR}(23): error" in custom.compiler_message(str(SYNTAX_ERROR), log, "NVRTC")


def test_algo_auto_tunes_the_custom_kernel_keyed_by_its_hash(convbench, tmp_path):
    """tuning.gemms=[custom, vendor]: the kernel at each tuned tile is a candidate of every layer; the tuning
    database's keys carry the file's sha256, so an edited file is measured again rather than reused."""
    uri, db = f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "tuning.db"
    auto = [a for a in DIGITS if not a.startswith(("algo=", "gemm=", "gemm.tile="))]
    assert convbench(*auto, "algo=auto", "tuning.algos=[im2col]", "tuning.gemms=[custom,vendor]", "tuning.tiles=[8]",
                     "tuning.budget_s=1", "tuning.warmup=0", "tuning.first_samples=1", f"tuning.db={db}",
                     f"gemm.source={TILED}", f"tracking.uri={uri}") == 0
    (run,) = _runs(uri)
    assert run.info.status == "FINISHED", run.data.tags.get(contract.T_ERROR)
    import sqlite3
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT * FROM sqlite_master WHERE type='table'").fetchall()
        table = next(r[1] for r in rows if "key" in r[4].lower() or "kernel_hash" in r[4])
        text = " ".join(map(str, connection.execute(f"SELECT * FROM {table}").fetchall()))
    assert tiled().sha256[:16] in text and "im2col/custom-tiled-t8/fp32" in text
