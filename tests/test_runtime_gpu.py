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
