"""The gpu runtime without a GPU: backend=auto on simulated devices (a stand-in ``cupy`` module, torch's
build and device probes monkeypatched) and the compile options that key CuPy's cache."""
from __future__ import annotations

import importlib.machinery
import sys
import types

import pytest
import torch

from experiments import runtime
from experiments.runtime import gpu

H100 = "NVIDIA H100 80GB HBM3"


class FakeCudaRuntimeError(RuntimeError):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def install_fake_cupy(monkeypatch, *, devices: int = 1, error: Exception | None = None, is_hip: bool = False):
    def get_device_count():
        if error is not None:
            raise error
        return devices

    cuda_runtime = types.SimpleNamespace(getDeviceCount=get_device_count, is_hip=is_hip,
                                         getDeviceProperties=lambda index: {"name": H100.encode()})
    cupy = types.ModuleType("cupy")
    cupy.__spec__ = importlib.machinery.ModuleSpec("cupy", None)
    cupy.__version__ = "14.2.0"
    cupy.cuda = types.SimpleNamespace(runtime=cuda_runtime, Device=lambda: types.SimpleNamespace(id=0))
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    runtime._auto_choice.cache_clear()
    runtime._runtime.cache_clear()


def torch_build(monkeypatch, *, cuda: str | None, sees_device: bool):
    monkeypatch.setattr(torch.version, "cuda", cuda)
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: sees_device)


@pytest.fixture(autouse=True)
def fresh_choice():
    yield
    runtime._auto_choice.cache_clear()
    runtime._runtime.cache_clear()


def test_device_seen_by_cupy_only_runs_numpy_and_says_why(monkeypatch, capsys):
    install_fake_cupy(monkeypatch)
    torch_build(monkeypatch, cuda=None, sees_device=False)
    assert runtime.resolve("auto").name == "numpy"
    assert capsys.readouterr().err.strip() == (
        f"[convbench] backend=auto -> numpy: CuPy sees {H100} but torch is a CPU build: make setup PLATFORM=cuda")


def test_amd_device_with_a_cpu_torch_points_at_the_rocm_set(monkeypatch):
    install_fake_cupy(monkeypatch, is_hip=True)
    torch_build(monkeypatch, cuda=None, sees_device=False)
    backend, why = gpu.auto_backend()
    assert backend == "numpy" and why.endswith("make setup PLATFORM=rocm")


def test_gpu_torch_that_sees_no_device_runs_numpy(monkeypatch):
    install_fake_cupy(monkeypatch)
    torch_build(monkeypatch, cuda="13.0", sees_device=False)
    assert gpu.auto_backend() == ("numpy", f"CuPy sees {H100} but torch (CUDA 13.0 build) sees no device: "
                                           "make setup PLATFORM=cuda")


def test_both_see_the_device_runs_gpu(monkeypatch):
    install_fake_cupy(monkeypatch)
    torch_build(monkeypatch, cuda="13.0", sees_device=True)
    assert gpu.auto_backend() == ("gpu", f"CuPy and torch see {H100}")


def test_old_driver_is_shown_not_taken_for_no_gpu(monkeypatch):
    message = "cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA runtime version"
    install_fake_cupy(monkeypatch, error=FakeCudaRuntimeError(gpu.INSUFFICIENT_DRIVER, message))
    monkeypatch.setattr(gpu, "_driver_installed", lambda: True)
    backend, why = gpu.auto_backend()
    assert backend == "numpy" and message in why
    with pytest.raises(gpu.GpuUnavailableError, match="insufficient for CUDA runtime"):
        gpu.GpuRuntime()


def test_missing_library_is_shown(monkeypatch):
    install_fake_cupy(monkeypatch, error=OSError("libnvrtc.so.13: cannot open shared object file"))
    assert "libnvrtc.so.13" in gpu.auto_backend()[1]


@pytest.mark.parametrize("status, driver", [(gpu.NO_DEVICE, True), (gpu.INSUFFICIENT_DRIVER, False)])
def test_no_device_or_no_driver_is_plain_no_gpu(monkeypatch, status, driver):
    install_fake_cupy(monkeypatch, error=FakeCudaRuntimeError(status, "no device"))
    monkeypatch.setattr(gpu, "_driver_installed", lambda: driver)
    assert gpu.auto_backend() == ("numpy", "no GPU visible to CuPy")


def test_job_with_auto_on_a_cupy_only_device_runs_numpy(monkeypatch, capsys, convbench, tmp_path):
    from mlflow.tracking import MlflowClient

    from experiments.tracking import contract
    install_fake_cupy(monkeypatch)
    torch_build(monkeypatch, cuda=None, sees_device=False)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert convbench("algo=im2col", "backend=auto", "model.input_size=32", "bench=smoke", "energy=off",
                     f"tracking.uri={uri}") == 0
    assert "backend=auto -> numpy: CuPy sees" in capsys.readouterr().err
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("convbench").experiment_id])
    jobs = [r for r in runs if r.data.tags.get(contract.T_RUN_KIND) == "job"]
    assert [r.data.tags[contract.T_BACKEND] for r in jobs] == ["numpy"]


def test_an_edit_to_any_file_of_hip_changes_the_compile_options(monkeypatch, tmp_path):
    import shutil

    from experiments.runtime import sources
    hip = tmp_path / "hip"
    shutil.copytree(sources.HIP_DIR, hip)
    monkeypatch.setattr(sources, "HIP_DIR", hip)
    before = gpu.compile_options({"TILE": 16})
    header = next(hip.glob("*.h"))
    header.write_text(header.read_text() + "\n// an edit no kernel source shows\n")
    after = gpu.compile_options({"TILE": 16})
    assert before != after and before[-1] == after[-1] == "-DTILE=16"


# --- the gpu runtime's own code on the stand-in CuPy (tests/fake_cupy.py): kernels run through the emulator ---
import numpy as np  # noqa: E402

from tests import fake_cupy  # noqa: E402


@pytest.fixture
def gpu_runtime(monkeypatch):
    """backend='gpu' on the stand-in CuPy: GpuRuntime, its module loader and split-K's SM count, fresh."""
    with fake_cupy.gpu_runtime(monkeypatch, sms=110) as gpu_runtime:
        yield gpu_runtime


def conv_case(seed, n=2, c=5, f=7, h=11, w=13, k=3, groups=1):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, c, h, w)).astype(np.float32),
            rng.standard_normal((f, c // groups, k, k)).astype(np.float32))


def relative(y, reference) -> float:
    y = torch.as_tensor(np.asarray(y)).double()
    return ((y - reference).abs().max() / reference.abs().max()).item()


@pytest.mark.parametrize("algo, gemm, tile, rung, groups", [
    ("im2col", "blocked", 8, "blocked", 1), ("kn2row", "blocked", 16, "dbuf", 1), ("scalar", None, 16, None, 1),
    ("im2col", "blocked", 8, "fold", 1), ("im2col", "blocked", 16, "splitk", 1), ("im2col", "vendor", 16, None, 1),
    ("kn2row", "blocked", 8, "warptile", 1), ("im2col", "blocked", 8, "vec4", 3), ("im2col", "sparse", 16, None, 1),
])
def test_conv2d_on_the_gpu_runtime_matches_float64(gpu_runtime, algo, gemm, tile, rung, groups):
    """conv2d(backend='gpu') through GpuRuntime: CuPy arrays, RawModule compiled from hip/ with the runtime's
    options, every launch's grid, block and argument types checked, the kernels run (emulator)."""
    from experiments import conv2d
    x, w = conv_case(tile + groups, c=6, f=9, groups=groups)
    kwargs = {"gemm": gemm} if gemm else {}
    if rung:
        kwargs["rung"] = rung
    y = conv2d(x, w, padding=1, groups=groups, algo=algo, tile=tile, backend="gpu", **kwargs)
    assert isinstance(y, np.ndarray) and y.dtype == np.float32
    reference = torch.nn.functional.conv2d(torch.from_numpy(x).double(), torch.from_numpy(w).double(), padding=1,
                                           groups=groups)
    assert relative(y, reference) < 1e-5
    assert fake_cupy.LAUNCHES or gemm == "vendor"


def test_split_k_splits_on_the_stand_in_device(gpu_runtime):
    """A long-K, small-M/N GEMM splits across the stand-in's 110 SMs: two launches (the split GEMM and the
    reduction), the reduction's grid within the limits."""
    from experiments.conv import ladder
    rng = np.random.default_rng(5)
    a = gpu_runtime.xp.asarray(rng.standard_normal((1, 20, 3000)).astype(np.float32))
    b = gpu_runtime.xp.asarray(rng.standard_normal((1, 3000, 30)).astype(np.float32))
    c = ladder.gemm(gpu_runtime, "splitk", 16, a, b, 1)
    assert [name for name, _, _ in fake_cupy.LAUNCHES] == ["gemm_splitk", "gemm_splitk_reduce"]
    assert fake_cupy.LAUNCHES[0][1][2] > 1   # splits along z
    reference = a.get().astype(np.float64) @ b.get().astype(np.float64)
    assert np.abs(c.get() - reference).max() / np.abs(reference).max() < 1e-5


@pytest.mark.parametrize("dtype", ["fp16", "int8"])
@pytest.mark.parametrize("gemm", ["blocked", "vendor"])
def test_low_precision_on_the_gpu_runtime(gpu_runtime, monkeypatch, dtype, gemm):
    """fp16 and int8 through the GPU branches: the runtime's conversion kernels, the blocked low-precision
    GEMM, or the vendor path (experiments/conv/vendor_lowp.py, through DLPack views). torch's float32-output
    half GEMM exists on GPUs only: on the CPU its call is replaced by the float32 product of the halves."""
    from experiments import conv2d
    from experiments.conv import exactness  # noqa: F401  (the precision rules the reference follows)
    if dtype == "fp16" and gemm == "vendor":
        real_bmm = torch.bmm
        monkeypatch.setattr(torch, "bmm", lambda a, b, out_dtype=None: real_bmm(a.float(), b.float()))
    x, w = conv_case(3, c=6, f=20)
    y = conv2d(x, w, padding=1, algo="im2col", gemm=gemm, tile=8, backend="gpu", dtype=dtype)
    reference = conv2d(x, w, padding=1, algo="im2col", gemm="vendor", backend="numpy", dtype=dtype)
    assert relative(y, torch.from_numpy(reference).double()) < 1e-5


def test_the_runtime_is_cupy_on_the_device(gpu_runtime):
    assert gpu_runtime.name == "gpu" and gpu_runtime.kind == "cuda" and gpu_runtime.xp is sys.modules["cupy"]
    assert gpu_runtime.device_name() == "NVIDIA H100 80GB HBM3 (stand-in)"
    gpu_runtime.synchronize()
    module = gpu_runtime.load("im2col.hip")
    assert module is gpu_runtime.load("im2col.hip")   # compiled once per process


@pytest.mark.parametrize("bad, error", [
    (lambda a, c: (a, c, 5, np.int32(3)), "Python int"),                                  # CuPy: 64 bits
    (lambda a, c: (a, c, np.int64(5), np.int32(3)), "numpy.int32"),                       # wrong width
    (lambda a, c: (a.get(), c, np.int32(5), np.int32(3)), "host"),                         # a numpy array
    (lambda a, c: (a.reshape(2, 5)[:, ::2], c, np.int32(5), np.int32(3)), "C-contiguous"),  # a strided view
])
def test_the_stand_in_refuses_what_a_gpu_would_get_wrong(gpu_runtime, tmp_path, bad, error):
    kernel = gpu_runtime.xp.RawModule(code=STRIDE_KERNEL, options=("--std=c++17",)).get_function("scale")
    a, c = gpu_runtime.xp.asarray(np.arange(10, dtype=np.float32)), gpu_runtime.xp.empty(10, dtype=np.float32)
    kernel((1,), (32,), (a, c, np.int32(10), np.int32(3)))
    assert np.array_equal(c.get(), np.arange(10) * 3)
    with pytest.raises((TypeError, ValueError), match=error):
        kernel((1,), (32,), bad(a, c))


STRIDE_KERNEL = """#include "common.h"
KERNEL void scale(const float* a, float* c, int n, int factor)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) c[i] = a[i] * factor;
}
"""


@pytest.mark.parametrize("grid, block", [((2**31,), (32,)), ((1, 65536), (32,)), ((1,), (33, 32)), ((1,), (1, 1, 65))])
def test_the_stand_in_refuses_launches_past_the_limits(gpu_runtime, grid, block):
    kernel = gpu_runtime.xp.RawModule(code=STRIDE_KERNEL).get_function("scale")
    a, c = gpu_runtime.xp.empty(4, dtype=np.float32), gpu_runtime.xp.empty(4, dtype=np.float32)
    with pytest.raises(ValueError, match="limit|threads"):
        kernel(grid, block, (a, c, np.int32(4), np.int32(1)))


def test_a_grid_too_small_leaves_elements_unwritten(gpu_runtime):
    """Fresh device memory is NaN here (arbitrary on a GPU): a launch that misses elements shows."""
    kernel = gpu_runtime.xp.RawModule(code=STRIDE_KERNEL).get_function("scale")
    a, c = gpu_runtime.xp.asarray(np.ones(100, np.float32)), gpu_runtime.xp.empty(100, dtype=np.float32)
    kernel((3,), (32,), (a, c, np.int32(100), np.int32(2)))
    assert np.isnan(c.get()[96:]).all() and (c.get()[:96] == 2).all()


def test_device_arrays_do_not_mix_with_host_arrays(gpu_runtime):
    xp = gpu_runtime.xp
    d = xp.asarray(np.ones(3, np.float32))
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(d)
    with pytest.raises(TypeError, match="Unsupported type"):
        d + np.ones(3, np.float32)
    assert (d + 1).get().tolist() == [2, 2, 2] and xp.matmul(d.reshape(1, 3), d.reshape(3, 1)).get().item() == 3


def test_streams_and_events_time_a_kernel(gpu_runtime):
    """EventClock('cupy') (bench-layers, bench-ladder): events on the current stream, elapsed time in ms; a
    kernel on an explicit stream."""
    from experiments.measure.timing import EventClock
    xp = gpu_runtime.xp
    kernel = xp.RawModule(code=STRIDE_KERNEL).get_function("scale")
    a, c = xp.asarray(np.ones(64, np.float32)), xp.empty(64, dtype=np.float32)
    clock = EventClock("cupy")
    seconds = clock.time(lambda: kernel((2,), (32,), (a, c, np.int32(64), np.int32(2))))
    assert 0 < seconds < 10
    stream = xp.cuda.Stream()
    with stream:
        assert xp.cuda.get_current_stream() is stream
        kernel((2,), (32,), (a, c, np.int32(64), np.int32(3)), stream=stream)
    stream.synchronize()
    assert (c.get() == 3).all() and xp.cuda.get_current_stream() is xp.cuda.Stream.null
    with pytest.raises(TypeError, match="stream"):
        kernel((2,), (32,), (a, c, np.int32(64), np.int32(3)), stream="default")


def test_device_memory_counts_the_stand_ins_pool(gpu_runtime, monkeypatch):
    """device_memory on the gpu runtime: the pool's high-water mark after a convolution, emptied between jobs
    (torch's CUDA allocator calls stubbed: torch here has no CUDA)."""
    from experiments import conv2d
    from experiments.runtime import device_memory
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda: None)
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda: 0)
    pool = gpu_runtime.xp.get_default_memory_pool()
    device_memory.start(gpu_runtime)
    x, w = conv_case(4)
    conv2d(x, w, padding=1, algo="im2col", tile=8, backend="gpu")
    peak = device_memory.peak_bytes(gpu_runtime)
    columns = 2 * 5 * 9 * 11 * 13 * 4
    assert peak >= columns and pool.used_bytes() == 0
    device_memory.release(gpu_runtime)
    assert device_memory.peak_bytes(gpu_runtime) == 0


@pytest.mark.parametrize("is_hip", [False, True])
def test_split_k_reads_the_sm_count_on_nvidia_and_amd(monkeypatch, is_hip):
    """One attribute through cupy.cuda.runtime.deviceGetAttribute: Device.attributes fails on ROCm."""
    from experiments.conv import ladder
    fake_cupy.install(monkeypatch, sms=104, is_hip=is_hip)
    monkeypatch.setattr(ladder, "_MULTIPROCESSORS", {})
    runtime._runtime.cache_clear()
    rt = runtime.resolve("gpu")
    assert rt.kind == ("hip" if is_hip else "cuda")
    assert ladder.multiprocessors(rt) == 104


@pytest.mark.parametrize("dtype", ["fp16", "int8"])
def test_the_vendor_filter_is_prepared_once_per_layer_not_per_call(gpu_runtime, monkeypatch, dtype):
    """Fairness: what is the same in every call (the filter, padded for int8) is made by the plan, outside
    the timed calls; fp16's filter reaches every image as a stride-0 batch, never copied per image."""
    from experiments.conv import Variant, vendor_lowp
    from experiments.conv.plan import ConvPlan
    prepared, filters = [], []
    real_prepare, real_bmm = vendor_lowp.prepare, torch.bmm
    monkeypatch.setattr(vendor_lowp, "prepare", lambda a: prepared.append(1) or real_prepare(a))

    def bmm(a, b, out_dtype=None):
        filters.append(a.stride(0))
        return real_bmm(a.float(), b.float())

    monkeypatch.setattr(torch, "bmm", bmm)
    x, w = conv_case(6, n=3, c=6, f=20)
    xp = gpu_runtime.xp
    plan = ConvPlan.build(xp.asarray(w), None, 1, 1, 1, 1, Variant.of("im2col", "vendor", dtype=dtype), gpu_runtime)
    outputs = [plan(xp.asarray(x)).get() for _ in range(3)]
    assert len(prepared) == 1 and all(np.array_equal(o, outputs[0]) for o in outputs)
    assert filters == ([0, 0, 0] if dtype == "fp16" else [])


def test_no_device_at_all_is_plain_no_gpu(monkeypatch):
    install_fake_cupy(monkeypatch, devices=0)
    assert gpu.cupy_device() == (None, None) and not gpu.gpu_available()


def test_cupy_arrays_in_cupy_arrays_out(gpu_runtime):
    """A caller's CuPy arrays stay on the device: the result is a CuPy array of the same values."""
    from experiments import conv2d
    x, w = conv_case(8)
    xp = gpu_runtime.xp
    y = conv2d(xp.asarray(x), xp.asarray(w), padding=1, algo="kn2row", tile=8, backend="gpu")
    assert type(y) is xp.ndarray
    reference = torch.nn.functional.conv2d(torch.from_numpy(x).double(), torch.from_numpy(w).double(), padding=1)
    assert relative(y.get(), reference) < 1e-5


def test_grouped_vendor_fp16_runs_one_call_per_group(gpu_runtime, monkeypatch):
    """Grouped fp16 through the vendor path: each group's filter a stride-0 batch over the images."""
    from experiments import conv2d
    real_bmm, strides = torch.bmm, []

    def bmm(a, b, out_dtype=None):
        strides.append(a.stride(0))
        return real_bmm(a.float(), b.float())

    monkeypatch.setattr(torch, "bmm", bmm)
    x, w = conv_case(9, c=6, f=8, groups=2)
    y = conv2d(x, w, padding=1, groups=2, algo="im2col", gemm="vendor", backend="gpu", dtype="fp16")
    reference = conv2d(x, w, padding=1, groups=2, algo="im2col", gemm="vendor", backend="numpy", dtype="fp16")
    assert strides == [0, 0] and relative(y, torch.from_numpy(reference).double()) < 1e-5
