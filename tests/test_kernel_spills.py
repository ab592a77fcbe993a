"""The ladder as the gpu runtime builds it on NVIDIA: NVRTC with CuPy's options (no GPU needed). No rung spills at
any tile, and the options are CuPy's own (experiments/runtime/nvrtc.py)."""
import inspect
import struct

import pytest

from analysis.kernel_report import parse_ptxas
from experiments.conv import ladder
from experiments.runtime import gpu, nvrtc

pytest.importorskip("cupy")


@pytest.mark.parametrize("tile", ladder.TILES)
@pytest.mark.parametrize("rung", ladder.RUNGS, ids=lambda r: r.name)
def test_no_rung_spills_under_nvrtc_with_cupys_options(rung, tile):
    built = nvrtc.build(rung.source, rung.shape(tile).defines(), "sm_90")
    kernels = parse_ptxas(built.log)
    assert rung.function in kernels, built.log
    spills = {name: (k["spill_stores"], k["spill_loads"]) for name, k in kernels.items()
              if k["spill_stores"] or k["spill_loads"]}
    assert not spills, f"{rung.source} TILE={tile} spills (stores, loads in bytes): {spills}\n{built.log}"


def test_the_options_are_the_runtimes_and_cupys():
    options = nvrtc.nvrtc_options({"TILE": 16}, "sm_90")
    runtime = gpu.compile_options({"TILE": 16})
    assert all(option in options for option in runtime)
    assert options[-3:] == ("-ftz=true", "--device-as-default-execution-space", "-arch=sm_90")
    from cupy._core import core
    assert core.assemble_cupy_compiler_options(runtime) == options[:-3]


def test_cupy_still_adds_what_the_report_adds():
    """CuPy's compile path (cupy/cuda/compiler.py) adds these to every RawModule: a CuPy that stops (or adds
    others that change code generation) must be looked at before the kernel report is trusted."""
    from cupy.cuda import compiler
    with_cache = inspect.getsource(compiler._compile_with_cache_cuda)
    nvrtc_compile = inspect.getsource(compiler._compile_using_nvrtc_no_warning)
    assert "options += ('-ftz=true',)" in with_cache
    assert "options += ('--device-as-default-execution-space',)" in nvrtc_compile
    assert "_get_arch_for_options_for_nvrtc" in nvrtc_compile


def test_the_cubin_is_whole_for_nvdisasm():
    """CuPy's getCUBIN loses the last byte; the program header table, the file's end, must be whole."""
    built = nvrtc.build("gemm_0_naive.hip", ladder.RUNGS[0].shape(8).defines(), "sm_90", extra=())
    phoff, shoff = struct.unpack_from("<QQ", built.cubin, 0x20)
    phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", built.cubin, 0x36)
    assert built.cubin[:4] == b"\x7fELF"
    assert len(built.cubin) == max(phoff + phentsize * phnum, shoff + shentsize * shnum)
