"""The harness on a GPU: device-event timing, cold-cache flush on the device, one job end to end.

Skipped without a CUDA/ROCm device visible to both CuPy and torch.
"""
import pytest

from experiments.runtime import gpu_available

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not (gpu_available() and torch.cuda.is_available()), reason="no GPU")]


def test_event_clock_times_device_work():
    from experiments.measure.timing import EventClock, Protocol, measure
    a = torch.randn(2048, 2048, device="cuda")
    for library in ("torch", "cupy"):
        clock = EventClock(library)
        m = measure(lambda: a @ a, Protocol(warmup=3, min_samples=5, min_time_s=0, max_time_s=5), clock, library)
        assert m.n >= 5 and 0 < m.median < 1.0


def test_cold_cache_flush_on_the_device():
    from experiments.measure.timing import CacheFlusher
    flush = CacheFlusher(64 << 20, torch.device("cuda"))
    flush()
    torch.cuda.synchronize()
    assert flush._buffer.is_cuda and int(flush._buffer[0]) == int(flush._buffer[-1])


def test_gpu_job_end_to_end(convbench, tmp_path):
    from mlflow.tracking import MlflowClient

    from experiments.tracking import contract
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    code = convbench("-m", "algo=pytorch,im2col", "gemm=blocked,vendor", "backend=gpu", "model.input_size=64",
                     "bench=smoke", "bench.cache_mode=cold", "bench.flush_mb=64", "energy=off", f"tracking.uri={uri}")
    assert code == 0
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("convbench").experiment_id])
    jobs = [r for r in runs if r.data.tags.get(contract.T_RUN_KIND) == "job"]
    assert len(jobs) == 3     # pytorch once, im2col with each GEMM
    for run in jobs:
        assert run.data.tags[contract.T_BACKEND] == "gpu" and run.data.tags[contract.T_RUNTIME] in ("cuda", "hip")
        assert run.data.metrics[contract.MAX_REL_ERR] <= 1e-4
