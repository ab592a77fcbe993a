"""A kernel of hip/ built the way the gpu runtime builds it on NVIDIA, without a GPU: NVRTC with CuPy's options.

    nvrtc_options(defines, arch)   what CuPy's RawModule hands NVRTC for gpu.compile_options(defines)
    build(source, defines, arch)   an NvrtcBuild: the cubin and NVRTC's log (ptxas' registers and spills)

CuPy 14 completes the options of a RawModule in three places: cupy._core.core.assemble_cupy_compiler_options
adds its CCCL and own include directories and the CUDA include path it found (cuda.pathfinder: the
nvidia-cuda-runtime wheel's headers, else a CUDA toolkit); cupy/cuda/compiler.py adds ``-ftz=true``
(_compile_with_cache_cuda), ``-arch=sm_XX`` and ``--device-as-default-execution-space``
(_compile_using_nvrtc_no_warning). ``--pch`` (a precompiled header, compile time only) is left out.
tests/test_kernel_spills.py checks that CuPy still adds these, so a CuPy that changes them fails a test
rather than the report describing kernels other than the ones that run.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from .gpu import compile_options
from .sources import source_path

CUPY_NVRTC_OPTIONS = ("-ftz=true", "--device-as-default-execution-space")


def nvrtc_options(defines: dict[str, int] | None, arch: str) -> tuple[str, ...]:
    from cupy._core import core
    return (*core.assemble_cupy_compiler_options(compile_options(defines)), *CUPY_NVRTC_OPTIONS, f"-arch={arch}")


@dataclass
class NvrtcBuild:
    cubin: bytes
    log: str


def build(source: str, defines: dict[str, int] | None, arch: str, extra: tuple[str, ...] = ("-Xptxas=-v",)) -> NvrtcBuild:
    """NVRTC's build of hip/<source> for arch (e.g. "sm_90"); extra options after CuPy's (ptxas' report by
    default). Raises RuntimeError with NVRTC's log when it fails."""
    from cupy.cuda import nvrtc
    program = nvrtc.createProgram(source_path(source).read_text(), source, [], [])
    try:
        try:
            nvrtc.compileProgram(program, [*nvrtc_options(defines, arch), *extra])
        except nvrtc.NVRTCError as err:
            raise RuntimeError(f"NVRTC failed on {source} {defines}: {err}\n{nvrtc.getProgramLog(program)}") from err
        return NvrtcBuild(_whole_elf(nvrtc.getCUBIN(program)), nvrtc.getProgramLog(program))
    finally:
        nvrtc.destroyProgram(program)


def _whole_elf(cubin: bytes) -> bytes:
    """CuPy 14's getCUBIN drops the last byte of the cubin (it trims a C string's terminator, which a cubin
    has not); nvdisasm then refuses the file. Restored to the length the ELF header gives (zero padding)."""
    phoff, shoff = struct.unpack_from("<QQ", cubin, 0x20)
    phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", cubin, 0x36)
    length = max(phoff + phentsize * phnum, shoff + shentsize * shnum)
    return cubin + bytes(max(0, length - len(cubin)))
