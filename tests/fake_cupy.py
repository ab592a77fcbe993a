"""A stand-in for CuPy, so that the gpu runtime's own code runs in CI without a GPU.

    install(monkeypatch, sms=132, memory=80 << 30, is_hip=False) -> the stand-in module, as sys.modules["cupy"]

Its arrays live in host memory (a numpy array inside a separate type, like a device array: numpy refuses
to convert one implicitly, ``.get()`` copies it to the host); ``RawModule(code=..., options=...)``
compiles the source through the emulator (experiments/runtime/emulator.py: g++, blocks run as fibers),
so a launch runs the real kernel on the real arguments. Strict where CuPy is, or where CuPy would let a
bug through silently:

    kernel arguments   a tuple; pointers are device arrays of the parameter's dtype, C-contiguous (CuPy
                       passes the data pointer of any array: a strided view would be read as if it were
                       contiguous); scalars are numpy scalars of the parameter's exact type (CuPy passes
                       a Python int as a 64-bit value); host (numpy) arrays are refused, as by CuPy
    grid and block     at most 3 dimensions, within the CUDA limits (grid x < 2^31, y and z <= 65535;
                       block <= 1024 threads) and the kernel's __launch_bounds__
    RawModule options  the ones NVRTC takes from the runtime: -I, -D, --std; anything else is refused
    mixing             a device array with a host array in an operation raises TypeError, as in CuPy;
                       numpy.asarray(device array) raises TypeError
    empty              filled with NaN (floats) or a fixed pattern (integers): an element a kernel never
                       writes (a grid too small) shows as wrong values, as on a GPU's reused memory
    streams, events    Stream (with-statement current stream), Event.record/synchronize,
                       get_elapsed_time; a kernel's stream must be a Stream

The memory pool counts what the arrays allocate (bytes in use, freed blocks kept until free_all_blocks,
as CuPy's pool), so the memory estimates can be compared with what really was allocated. Kernels run at
once (the emulator is synchronous), so a missing synchronize cannot be caught here.
"""
from __future__ import annotations

import contextlib
import importlib.machinery
import re
import sys
import tempfile
import time
import types
import weakref
from pathlib import Path

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

from experiments.runtime.emulator import EmulatorRuntime
from experiments.runtime.sources import HIP_DIR

MAX_GRID = (2**31 - 1, 65535, 65535)
MAX_BLOCK = (1024, 1024, 64)
MAX_THREADS = 1024
INT_FILL = 0x5A   # every byte of a fresh integer array


class CUDARuntimeError(RuntimeError):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


# --- arrays -----------------------------------------------------------------------------------------------
class MemoryPool:
    """CuPy's pool: used bytes (live arrays), free bytes (freed, kept for reuse), total = used + free."""

    def __init__(self) -> None:
        self.used = 0
        self.free = 0
        self.peak_used = 0

    def allocate(self, owner: np.ndarray) -> None:
        nbytes = owner.nbytes
        reuse = min(self.free, nbytes)
        self.free -= reuse
        self.used += nbytes
        self.peak_used = max(self.peak_used, self.used)
        weakref.finalize(owner, self._release, nbytes)

    def _release(self, nbytes: int) -> None:
        self.used -= nbytes
        self.free += nbytes

    def used_bytes(self) -> int:
        return self.used

    def free_bytes(self) -> int:
        return self.free

    def total_bytes(self) -> int:
        return self.used + self.free

    def free_all_blocks(self) -> None:
        self.free = 0

    def reset_peak(self) -> None:
        self.peak_used = self.used


class PinnedMemoryPool:
    def free_all_blocks(self) -> None:
        pass


POOL = MemoryPool()


def _device(host: np.ndarray, *, owned: bool = True) -> "ndarray":
    """A device array around ``host``; ``owned``: a fresh allocation, counted in the pool."""
    if owned and host.base is None and host.nbytes:
        POOL.allocate(host)
    return ndarray(host)


def _wrap(value):
    """Results of numpy on device data: arrays become device arrays (new ones counted), others unchanged."""
    if isinstance(value, np.ndarray):
        return _device(value)
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


def _unwrap(value, what: str):
    """Device arrays to their numpy data; a host array where a device array belongs is refused, as by CuPy."""
    if isinstance(value, ndarray):
        return value._data
    if isinstance(value, np.ndarray) and value.ndim > 0:
        raise TypeError(f"{what}: Unsupported type <class 'numpy.ndarray'> (a host array where CuPy needs a device "
                        "array: cupy.asarray(...) it first)")
    if isinstance(value, (tuple, list)):
        return type(value)(_unwrap(v, what) for v in value)
    return value


class ndarray(NDArrayOperatorsMixin):
    """A device array: its data are a numpy array that only this type (and .get()) hands out."""

    __module__ = "cupy"

    def __init__(self, data: np.ndarray):
        self._data = data

    # numpy may not take a device array implicitly (CuPy: TypeError); numpy functions dispatch here
    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct a "
                        "NumPy array explicitly.")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        inputs = _unwrap(inputs, f"numpy.{ufunc.__name__}")
        if "out" in kwargs:
            kwargs["out"] = _unwrap(kwargs["out"], f"numpy.{ufunc.__name__}")
        return _wrap(getattr(ufunc, method)(*inputs, **kwargs))

    def __array_function__(self, func, types_, args, kwargs):
        return _wrap(func(*_unwrap(args, f"numpy.{func.__name__}"), **_unwrap(kwargs, f"numpy.{func.__name__}")))

    # DLPack: torch.from_dlpack(array) shares the memory (a CPU tensor here)
    def __dlpack__(self, *args, **kwargs):
        return self._data.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self._data.__dlpack_device__()

    def get(self, stream=None) -> np.ndarray:
        return self._data.copy()

    def __getitem__(self, key):
        return _wrap(self._data[_unwrap(key, "indexing")])

    def __setitem__(self, key, value):
        self._data[_unwrap(key, "indexing")] = _unwrap(value, "assignment")

    def __len__(self):
        return len(self._data)

    def __iter__(self):
        return (_wrap(v) for v in self._data)

    def __float__(self):
        return float(self._data)

    def __int__(self):
        return int(self._data)

    def __bool__(self):
        return bool(self._data)

    def __index__(self):
        return self._data.__index__()

    def __repr__(self):
        return f"array({self._data!r}) (stand-in device)"

    def __getattr__(self, name):
        if name.startswith("__"):   # numpy's protocols (__array_interface__, __array_struct__): not a host array
            raise AttributeError(name)
        value = getattr(self._data, name)
        if not callable(value):
            return _wrap(value) if name in ("T", "real", "imag") else value
        return lambda *a, **k: _wrap(value(*_unwrap(a, f"ndarray.{name}"), **_unwrap(k, f"ndarray.{name}")))


def asarray(a, dtype=None, order=None):
    if isinstance(a, ndarray):
        return a if (dtype is None or a.dtype == dtype) and order is None else _wrap(np.asarray(a._data, dtype, order))
    return _device(np.array(a, dtype=dtype, order=order, copy=True))   # from the host: a copy


array = asarray


def ascontiguousarray(a, dtype=None):
    if not isinstance(a, ndarray):
        raise TypeError(f"cupy.ascontiguousarray: Unsupported type {type(a)}")
    result = np.ascontiguousarray(a._data, dtype=dtype)
    return a if result is a._data else _device(result)


def empty(shape, dtype=np.float32, order="C"):
    data = np.empty(shape, dtype=dtype, order=order)
    if data.dtype.kind in "fc":
        data.fill(np.nan)
    else:
        data.view(np.uint8).fill(INT_FILL)
    return _device(data)


def asnumpy(a, stream=None):
    return a.get() if isinstance(a, ndarray) else np.asarray(a)


def from_dlpack(x):
    """The torch tensor's memory (torch's allocator: not in CuPy's pool)."""
    return _device(np.from_dlpack(x), owned=False)


def get_default_memory_pool() -> MemoryPool:
    return POOL


def get_default_pinned_memory_pool() -> PinnedMemoryPool:
    return PinnedMemoryPool()


class _NumpyRandom:
    """cupy.random: a numpy Generator's methods (standard_normal(shape, dtype=...) as in CuPy), on the device."""

    def __init__(self, seed: int = 0):
        self._rng = np.random.default_rng(seed)

    def __getattr__(self, name):
        return lambda *a, **k: _wrap(getattr(self._rng, name)(*a, **k))


# --- kernels ----------------------------------------------------------------------------------------------
_EMULATOR = EmulatorRuntime(warp_size=32)
_OPTION = re.compile(r"-I(?P<include>.+)|-D(?P<name>[A-Za-z_]\w*)=(?P<value>\S+)|--std=c\+\+\d+")


class RawModule:
    def __init__(self, code: str | None = None, *, path=None, options=(), backend="nvrtc", **kwargs):
        if code is None or not isinstance(code, str):
            raise TypeError("the stand-in RawModule takes code= (source text), as the gpu runtime passes it")
        if not isinstance(options, tuple) or not all(isinstance(o, str) for o in options):
            raise TypeError(f"options must be a tuple of str, got {options!r}")
        self.defines = {}
        for option in options:
            match = _OPTION.fullmatch(option)
            if match is None:
                raise ValueError(f"NVRTC option {option!r} is not one the gpu runtime passes (-I, -D, --std)")
            if match["include"] is not None and Path(match["include"]) != HIP_DIR:
                raise ValueError(f"include path {match['include']} is not hip/ ({HIP_DIR})")
            if match["name"] and match["name"] != "CONVBENCH_HIP_HASH":
                self.defines[match["name"]] = int(match["value"], 0)
        self.code = code
        self._module = None

    def _source(self) -> Path:
        same = [p for p in sorted(HIP_DIR.glob("*.hip")) if p.read_text() == self.code]
        if same:
            return same[0]
        path = Path(tempfile.mkdtemp(prefix="fake-cupy-")) / "kernel.hip"
        path.write_text(self.code)
        return path

    def get_function(self, name: str) -> "RawKernel":
        if self._module is None:
            self._module = _EMULATOR.load(self._source(), self.defines)
        return RawKernel(self._module.get_function(name), name)


class RawKernel:
    def __init__(self, function, name: str):
        self.function, self.name = function, name
        self.launches: list[dict] = []

    def __call__(self, grid, block, args, *, shared_mem=0, stream=None, enable_cooperative_groups=False):
        grid, block = _dims(grid, "grid", MAX_GRID), _dims(block, "block", MAX_BLOCK)
        if block[0] * block[1] * block[2] > MAX_THREADS:
            raise ValueError(f"{self.name}: block {block} has more than {MAX_THREADS} threads")
        if stream is not None and not isinstance(stream, Stream):
            raise TypeError(f"{self.name}: stream must be a cupy.cuda.Stream, got {type(stream).__name__}")
        if not isinstance(args, tuple):
            raise TypeError(f"{self.name}: args must be a tuple, got {type(args).__name__}")
        host = []
        for i, a in enumerate(args):
            if isinstance(a, np.ndarray):
                raise TypeError(f"{self.name}: argument {i} is a numpy (host) array: Unsupported type "
                                "<class 'numpy.ndarray'>")
            host.append(a._data if isinstance(a, ndarray) else a)
        self.launches.append({"grid": grid, "block": block, "stream": stream or _current_stream()})
        LAUNCHES.append((self.name, grid, block))
        self.function(grid, block, tuple(host), shared_mem)


LAUNCHES: list[tuple[str, tuple, tuple]] = []


def _dims(value, what: str, limits) -> tuple[int, int, int]:
    dims = (value,) if isinstance(value, (int, np.integer)) else tuple(value)
    if not 1 <= len(dims) <= 3 or not all(isinstance(d, (int, np.integer)) for d in dims):
        raise ValueError(f"{what} must be 1 to 3 ints, got {value!r}")
    dims = tuple(int(d) for d in dims) + (1,) * (3 - len(dims))
    for d, limit, axis in zip(dims, limits, "xyz"):
        if not 1 <= d <= limit:
            raise ValueError(f"{what}.{axis}={d} is outside 1..{limit} (the CUDA limit)")
    return dims


# --- streams and events -----------------------------------------------------------------------------------
class Stream:
    null: "Stream"

    def __init__(self, non_blocking: bool = False, null: bool = False):
        self.is_null = null

    def synchronize(self) -> None:
        pass

    def __enter__(self):
        _STREAMS.append(self)
        return self

    def __exit__(self, *exc):
        _STREAMS.pop()


Stream.null = Stream(null=True)
_STREAMS: list[Stream] = [Stream.null]


def _current_stream() -> Stream:
    return _STREAMS[-1]


class Event:
    def __init__(self, block=False, disable_timing=False, interprocess=False):
        self.disable_timing = disable_timing
        self.time: float | None = None

    def record(self, stream: Stream | None = None) -> None:
        if stream is not None and not isinstance(stream, Stream):
            raise TypeError(f"Event.record: stream must be a cupy.cuda.Stream, got {type(stream).__name__}")
        self.time = time.perf_counter()

    def synchronize(self) -> None:
        if self.time is None:
            raise CUDARuntimeError(400, "cudaErrorInvalidResourceHandle: the event was never recorded")

    @property
    def done(self) -> bool:
        return self.time is not None


def get_elapsed_time(start: Event, end: Event) -> float:
    for event in (start, end):
        if event.time is None or event.disable_timing:
            raise CUDARuntimeError(400, "cudaErrorInvalidResourceHandle: an event without timing or not recorded")
    return (end.time - start.time) * 1e3


# --- the module -------------------------------------------------------------------------------------------
def install(monkeypatch, *, sms: int = 132, memory: int = 80 << 30, is_hip: bool = False,
            name: str = "NVIDIA H100 80GB HBM3 (stand-in)", attributes_fail: bool | None = None):
    """sys.modules["cupy"] = a fresh stand-in (its pool empty); ``attributes_fail``: Device.attributes raises, as
    on ROCm (default: when is_hip)."""
    global POOL
    POOL = MemoryPool()
    LAUNCHES.clear()
    cupy = types.ModuleType("cupy")
    cupy.__spec__ = importlib.machinery.ModuleSpec("cupy", None)
    cupy.__version__ = "14.2.0"
    for obj in (ndarray, asarray, array, ascontiguousarray, empty, asnumpy, from_dlpack, get_default_memory_pool,
                get_default_pinned_memory_pool, RawModule, RawKernel):
        setattr(cupy, obj.__name__, obj)
    cupy.random = _NumpyRandom()

    def numpy_function(name):
        """Every other cupy.X: numpy's X on device data, host arrays refused."""
        func = getattr(np, name)
        if not callable(func) or isinstance(func, type):
            return func   # dtypes (cupy.float32 is numpy.float32) and constants
        return lambda *a, **k: _wrap(func(*_unwrap(a, f"cupy.{name}"), **_unwrap(k, f"cupy.{name}")))

    cupy.__getattr__ = numpy_function
    attributes_fail = is_hip if attributes_fail is None else attributes_fail

    class Device:
        def __init__(self, device: int = 0):
            self.id = device

        @property
        def attributes(self):
            if attributes_fail:
                raise CUDARuntimeError(1, "hipErrorInvalidValue: Device.attributes is not supported on ROCm")
            return {"MultiProcessorCount": sms}

        def synchronize(self):
            pass

    runtime = types.SimpleNamespace(
        is_hip=is_hip, CUDARuntimeError=CUDARuntimeError, cudaDevAttrMultiProcessorCount=16,
        getDeviceCount=lambda: 1, getDevice=lambda: 0,
        getDeviceProperties=lambda device: {"name": name.encode(), "multiProcessorCount": sms,
                                            "totalGlobalMem": memory},
        deviceGetAttribute=lambda attribute, device: _attribute(attribute, device, sms),
        memGetInfo=lambda: (memory - POOL.total_bytes(), memory),
        driverGetVersion=lambda: 13000, runtimeGetVersion=lambda: 13000)
    cupy.cuda = types.SimpleNamespace(runtime=runtime, Device=Device, Stream=Stream, Event=Event,
                                      get_current_stream=_current_stream, get_elapsed_time=get_elapsed_time)
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    return cupy


def _attribute(attribute: int, device: int, sms: int) -> int:
    if device != 0:
        raise CUDARuntimeError(101, f"cudaErrorInvalidDevice: device {device}")
    if attribute != 16:   # cudaDevAttrMultiProcessorCount (hipDeviceAttributeMultiprocessorCount via CuPy)
        raise NotImplementedError(f"the stand-in knows only the multiprocessor count, not attribute {attribute}")
    return sms


@contextlib.contextmanager
def gpu_runtime(monkeypatch, **install_options):
    """backend='gpu' on a fresh stand-in (``install``'s options): GpuRuntime, its module loader and split-K's SM
    count emptied before and after, so that no test sees another's device."""
    from experiments import runtime
    from experiments.conv import ladder
    from experiments.runtime import gpu
    cupy = install(monkeypatch, **install_options)
    monkeypatch.setattr(ladder, "_MULTIPROCESSORS", {})
    gpu._load_module.cache_clear()
    runtime._runtime.cache_clear()
    try:
        yield runtime.resolve("gpu")
    finally:
        gpu._load_module.cache_clear()
        runtime._runtime.cache_clear()
    assert cupy is sys.modules["cupy"], "a test replaced the stand-in CuPy it was given"
