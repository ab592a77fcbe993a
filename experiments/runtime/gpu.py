"""The gpu runtime: kernels of hip/ compiled at run time by CuPy (NVRTC on NVIDIA, hiprtc on AMD)."""
from __future__ import annotations

from functools import lru_cache

from .sources import HIP_DIR, source_path


def gpu_available() -> bool:
    """True when CuPy is installed and its driver sees at least one device."""
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no CuPy, no driver, no device: all mean "no GPU here"
        return False


class GpuUnavailableError(RuntimeError):
    pass


def compile_options(defines: dict[str, int] | None) -> tuple[str, ...]:
    """Options for NVRTC/hiprtc: the hip/ include path and the -D defines (e.g. TILE)."""
    return (f"-I{HIP_DIR}", "--std=c++17",
            *(f"-D{key}={value}" for key, value in sorted((defines or {}).items())))


class GpuRuntime:
    name = "gpu"
    is_gpu = True
    has_kernels = True

    def __init__(self) -> None:
        if not gpu_available():
            raise GpuUnavailableError(
                "backend='gpu' needs a CUDA or ROCm device visible to CuPy, and none is; "
                "use backend='numpy' (reference algorithms) or backend='emulator' (the kernels on the CPU)")
        import cupy
        self.xp = cupy
        self.kind = "hip" if cupy.cuda.runtime.is_hip else "cuda"

    def load(self, source: str, defines: dict[str, int] | None = None):
        return _load_module(source, tuple(sorted((defines or {}).items())))

    def device_name(self) -> str:
        props = self.xp.cuda.runtime.getDeviceProperties(self.xp.cuda.Device().id)
        return props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])

    def synchronize(self) -> None:
        self.xp.cuda.get_current_stream().synchronize()


@lru_cache(maxsize=None)
def _load_module(source: str, defines: tuple[tuple[str, int], ...]):
    """Each (source, defines) is compiled once per process; CuPy also caches the binary on disk."""
    import cupy
    code = source_path(source).read_text()
    return cupy.RawModule(code=code, options=compile_options(dict(defines)))
