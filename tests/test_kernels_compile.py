"""The gpu runtime's exact compile path, without a GPU: NVRTC builds every kernel for sm_90.

CuPy's RawModule hands the same source and options to NVRTC at run time (experiments/runtime/nvrtc.py:
the runtime's options as CuPy completes them, its CUDA include path among them); compiling here catches
an include path, a define or a language feature that only the run-time compiler rejects, on the branch
of common.h that the runtime takes (cuda_fp16.h, from the pinned nvidia-cuda-runtime headers).
(nvcc and hipcc builds run in `make compile-check`.)
"""
from pathlib import Path

import pytest

from analysis.kernel_report import parse_ptxas

from experiments.conv import ladder
from experiments.conv.kernel_launch import SCALAR_COBS, kernel_defines
from experiments.runtime import nvrtc  # CuPy's NVRTC, pinned with nvidia-cuda-nvrtc 13.0 (the lent GPUs' driver)
from experiments.runtime.sources import HIP_DIR

# Every build with the defines the launches use (kernel_defines: one source of the shapes for both sides).
BUILDS = [
    *[(rung.source, rung.function, kernel_defines(rung.source, side)) for rung in ladder.RUNGS for side in ladder.TILES],
    *[("gemm_5_splitk.hip", "gemm_splitk_reduce", kernel_defines("gemm_5_splitk.hip", side)) for side in ladder.TILES],
    ("im2col.hip", "im2col", kernel_defines("im2col.hip")),
    ("kn2row_shift_add.hip", "kn2row_shift_add", kernel_defines("kn2row_shift_add.hip")),
    *[("scalar_conv.hip", "scalar_conv", kernel_defines("scalar_conv.hip", cob=cob)) for cob in SCALAR_COBS],
    ("depthwise_conv.hip", "depthwise_conv", kernel_defines("depthwise_conv.hip")),
    ("spmm_csr.hip", "spmm_csr", kernel_defines("spmm_csr.hip")),
    # reduced precision (experiments/conv/lowp.py): __half from cuda_fp16.h, as at run time
    *[("gemm_lowp.hip", kernel, kernel_defines("gemm_lowp.hip", side))
      for kernel in ("gemm_blocked_fp16", "gemm_blocked_int8") for side in ladder.TILES],
    ("im2col_lowp.hip", "im2col_fp16", kernel_defines("im2col_lowp.hip")),
    ("im2col_lowp.hip", "im2col_int8", kernel_defines("im2col_lowp.hip")),
    *[("scalar_conv_lowp.hip", kernel, kernel_defines("scalar_conv_lowp.hip", cob=cob))
      for kernel in ("scalar_conv_fp16", "scalar_conv_int8") for cob in SCALAR_COBS],
    ("quantize.hip", "to_half", {}),
    ("quantize.hip", "quantize_int8", {}),
    ("quantize.hip", "dequantize_int32", {}),
]


def test_every_kernel_source_is_covered():
    assert {b[0] for b in BUILDS} == {p.name for p in HIP_DIR.glob("*.hip")}


@pytest.mark.parametrize("source, kernel, defines", BUILDS, ids=lambda v: str(v))
def test_nvrtc_builds_it_as_the_runtime_does(source, kernel, defines):
    log = nvrtc.build(source, defines, "sm_90").log
    assert kernel in parse_ptxas(log), log


HALF_BRANCH_PROBE = """#define CONVBENCH_HALF
#include "common.h"
#ifndef CONVBENCH_CUDA_FP16_HEADER
#error common.h defined its own __half: cuda_fp16.h is not on CuPy's include path
#endif
"""


def test_half_precision_comes_from_cuda_fp16_as_at_run_time(tmp_path, monkeypatch):
    """CuPy adds the CUDA include path (cuda.pathfinder: the nvidia-cuda-runtime wheel's headers), so at run
    time common.h takes its cuda_fp16.h branch; the builds above must be of that branch too."""
    probe = tmp_path / "probe.hip"
    probe.write_text(HALF_BRANCH_PROBE)
    monkeypatch.setattr(nvrtc, "source_path", lambda name: tmp_path / name)
    options = nvrtc.nvrtc_options({}, "sm_90")
    assert any((Path(o[2:]) / "cuda_fp16.h").is_file() for o in options if o.startswith("-I")), options
    nvrtc.build("probe.hip", {}, "sm_90", extra=(f"-I{HIP_DIR}",))
