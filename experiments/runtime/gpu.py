"""The gpu runtime: kernels of hip/ compiled at run time by CuPy (NVRTC on NVIDIA, hiprtc on AMD)."""
from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

from .sources import HIP_DIR, kernel_source_hash, source_path

NO_DEVICE = 100            # cudaErrorNoDevice, hipErrorNoDevice
INSUFFICIENT_DRIVER = 35   # cudaErrorInsufficientDriver: no driver at all, or one older than CuPy's CUDA


class GpuUnavailableError(RuntimeError):
    pass


def _driver_installed() -> bool:
    return Path("/proc/driver/nvidia/version").exists() or Path("/dev/kfd").exists()


def cupy_device() -> tuple[str | None, str | None]:
    """The name of the device CuPy would use, else None and why: why is None when there simply is no
    GPU here (no CuPy, no driver, no device), else the error that keeps CuPy from the GPU that is there
    (a driver too old for CuPy's CUDA, a missing library), to be shown rather than taken for "no GPU"."""
    if importlib.util.find_spec("cupy") is None:
        return None, None
    try:
        import cupy
        if cupy.cuda.runtime.getDeviceCount() == 0:
            return None, None
        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    except Exception as err:
        status = getattr(err, "status", None)
        if status == NO_DEVICE or (status == INSUFFICIENT_DRIVER and not _driver_installed()):
            return None, None
        return None, f"CuPy cannot use the GPU: {type(err).__name__}: {err}"
    name = props["name"]
    return name.decode() if isinstance(name, bytes) else str(name), None


def gpu_available() -> bool:
    """True when CuPy is installed and its driver sees at least one device."""
    return cupy_device()[0] is not None


def torch_gpu_problem() -> str | None:
    """Why torch cannot run on the GPU (a CPU build, or a GPU build that sees no device); None if it can."""
    import torch
    if torch.version.cuda is None and torch.version.hip is None:
        return "torch is a CPU build"
    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else f"ROCm {torch.version.hip}"
        return f"torch ({build} build) sees no device"
    return None


def auto_backend() -> tuple[str, str]:
    """backend=auto: "gpu" when CuPy and torch both see the device (the harness needs both: our kernels
    and the PyTorch baseline), else "numpy"; and one line saying why."""
    device, error = cupy_device()
    if device is None:
        return "numpy", error or "no GPU visible to CuPy"
    problem = torch_gpu_problem()
    if problem is not None:
        import cupy
        platform = "rocm" if cupy.cuda.runtime.is_hip else "cuda"
        return "numpy", f"CuPy sees {device} but {problem}: make setup PLATFORM={platform}"
    return "gpu", f"CuPy and torch see {device}"


def compile_options(defines: dict[str, int] | None) -> tuple[str, ...]:
    """Options for NVRTC/hiprtc: the hip/ include path, the -D defines (e.g. TILE), and the hash of
    hip/ as a define no kernel reads: CuPy's disk cache keys on source and options, not on the headers
    a source includes, so an edit to any file of hip/ must change the options to recompile."""
    return (f"-I{HIP_DIR}", "--std=c++17", f"-DCONVBENCH_HIP_HASH=0x{kernel_source_hash()}",
            *(f"-D{key}={value}" for key, value in sorted((defines or {}).items())))


class GpuRuntime:
    name = "gpu"
    is_gpu = True
    has_kernels = True
    emulated = False
    execution = "CuPy's current stream, one device"

    def __init__(self) -> None:
        device, error = cupy_device()
        if device is None:
            raise GpuUnavailableError(
                f"backend='gpu' needs a CUDA or ROCm device visible to CuPy, and none is ({error or 'no device'}); "
                "use backend='numpy' (reference algorithms) or backend='emulator' (the kernels on the CPU)")
        import cupy
        self.xp = cupy
        self.kind = "hip" if cupy.cuda.runtime.is_hip else "cuda"

    def load(self, source: str, defines: dict[str, int] | None = None, *, prelude: Path | None = None,
             names: tuple[str, ...] = ()):
        """A kernel file of hip/ by name; or a user's file by absolute path with its ``prelude`` and the
        ``names`` of its kernels (C++ names are found through NVRTC's name expressions)."""
        defines = tuple(sorted((defines or {}).items()))
        if prelude is None:
            return _load_module(source, defines)
        return _load_user_module(str(source), user_source_hash(Path(source)), defines, str(prelude), tuple(names))

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


def user_source(path: Path, prelude: Path) -> str:
    """A user's kernel file as NVRTC/hiprtc compile it: the prelude first, then the file, its lines and
    messages numbered as in the file (#line)."""
    return f'#include "{prelude.name}"\n#line 1 "{path}"\n{path.read_text()}'


def user_compile_options(path: Path, prelude: Path, defines: dict[str, int] | None) -> tuple[str, ...]:
    """The prelude's directory first (its hip/hip_runtime.h and cuda_runtime.h stand in for the real
    ones), then the file's own directory, then hip/ and the defines."""
    return (f"-I{prelude.parent}", f"-I{path.parent}", *compile_options(defines))


def user_source_hash(path: Path) -> str:
    """The file and the headers beside it: CuPy's cache keys on the code and options only."""
    import hashlib
    digest = hashlib.sha256(path.read_bytes())
    for header in sorted(path.parent.glob("*.h")):
        digest.update(header.read_bytes())
    return digest.hexdigest()


@lru_cache(maxsize=None)
def _load_user_module(path: str, content_hash: str, defines: tuple[tuple[str, int], ...], prelude: str,
                      names: tuple[str, ...]):
    """Compiled once per process per content (the hash: an edited file compiles again)."""
    import cupy
    source, header = Path(path), Path(prelude)
    return cupy.RawModule(code=user_source(source, header),
                          options=(*user_compile_options(source, header, dict(defines)),
                                   f"-DCONVBENCH_USER_HASH=0x{content_hash[:16]}"),
                          name_expressions=names or None)
