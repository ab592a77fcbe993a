"""The gpu runtime's exact compile path, without a GPU: NVRTC turns every kernel into PTX.

CuPy's RawModule hands the same source and options to NVRTC at run time; compiling here
catches an include path, a define or a language feature that only the run-time compiler
rejects. (nvcc and hipcc builds run in `make compile-check`.)
"""
import pytest
from cupy.cuda import nvrtc  # pinned with nvidia-cuda-nvrtc 13.0 (matches the lent GPUs' driver)

from experiments.conv import ladder
from experiments.conv.kernel_launch import GEMM_WPT, SCALAR_COB, SCALAR_COBS
from experiments.runtime.gpu import compile_options
from experiments.runtime.sources import HIP_DIR, source_path

BUILDS = [
    *[(rung.source, rung.function, {"TILE": tile}) for rung in ladder.RUNGS for tile in ladder.TILES],
    *[("gemm_5_splitk.hip", "gemm_splitk_reduce", {"TILE": tile}) for tile in ladder.TILES],
    ("im2col.hip", "im2col", {}),
    ("kn2row_shift_add.hip", "kn2row_shift_add", {}),
    ("scalar_conv.hip", "scalar_conv", {"COB": SCALAR_COB}),
    *[("scalar_conv.hip", "scalar_conv", {"COB": cob}) for cob in SCALAR_COBS if cob != SCALAR_COB],
    ("depthwise_conv.hip", "depthwise_conv", {}),
    ("spmm_csr.hip", "spmm_csr", {}),
    # reduced precision (experiments/conv/lowp.py): NVRTC has no cuda_fp16.h here, so common.h's own __half
    *[("gemm_lowp.hip", kernel, {"TILE": tile, "WPT": GEMM_WPT})
      for kernel in ("gemm_blocked_fp16", "gemm_blocked_int8") for tile in (8, 16, 32)],
    ("im2col_lowp.hip", "im2col_fp16", {}),
    ("im2col_lowp.hip", "im2col_int8", {}),
    *[("scalar_conv_lowp.hip", kernel, {"COB": cob})
      for kernel in ("scalar_conv_fp16", "scalar_conv_int8") for cob in SCALAR_COBS],
    ("quantize.hip", "to_half", {}),
    ("quantize.hip", "quantize_int8", {}),
    ("quantize.hip", "dequantize_int32", {}),
]


def test_every_kernel_source_is_covered():
    assert {b[0] for b in BUILDS} == {p.name for p in HIP_DIR.glob("*.hip")}


@pytest.mark.parametrize("source, kernel, defines", BUILDS, ids=lambda v: str(v))
def test_nvrtc_compiles_to_ptx(source, kernel, defines):
    program = nvrtc.createProgram(source_path(source).read_text(), source, [], [])
    options = [*compile_options(defines), "--gpu-architecture=compute_90"]
    try:
        nvrtc.compileProgram(program, options)
    except nvrtc.NVRTCError as err:
        pytest.fail(f"{err}\n{nvrtc.getProgramLog(program)}")
    ptx = nvrtc.getPTX(program)
    assert f".entry {kernel}(" in (ptx.decode() if isinstance(ptx, bytes) else ptx)
