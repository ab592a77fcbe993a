"""One GPU per job: the device a job of a parallel launcher keeps, from the scheduler or a slot."""
import subprocess
import sys
import textwrap

from experiments.harness import devices
from experiments.harness.devices import assign_device, candidate_devices, host_gpus


def test_a_single_device_given_by_the_scheduler_is_left_alone(tmp_path):
    env = {"CUDA_VISIBLE_DEVICES": "3", "SLURM_LOCALID": "0"}       # SLURM, gpus_per_task=1
    assert assign_device(env, tmp_path).how == "scheduler" and env == {"CUDA_VISIBLE_DEVICES": "3",
                                                                       "SLURM_LOCALID": "0"}


def test_slurm_tasks_of_one_allocation_take_their_local_id(tmp_path):
    env = {"CUDA_VISIBLE_DEVICES": "4,5,6,7", "SLURM_LOCALID": "2"}
    assigned = assign_device(env, tmp_path)
    assert (assigned.device, assigned.how) == ("6", "slurm-localid")
    assert env["CUDA_VISIBLE_DEVICES"] == env["HIP_VISIBLE_DEVICES"] == "6"


def test_no_gpu_means_nothing_to_set(tmp_path, monkeypatch):
    monkeypatch.setattr(devices, "host_gpus", lambda: [])
    env = {}
    assert assign_device(env, tmp_path).how == "no-gpu" and env == {}
    env = {"CUDA_VISIBLE_DEVICES": ""}                                  # hidden on purpose (submitit, no GPUs)
    assert assign_device(env, tmp_path).how == "no-gpu" and env == {"CUDA_VISIBLE_DEVICES": ""}


def test_host_gpus_are_read_from_the_driver_files(tmp_path):
    nvidia = tmp_path / "nvidia"
    for bus in ("0000:17:00.0", "0000:65:00.0"):
        (nvidia / bus).mkdir(parents=True)
    assert host_gpus(nvidia, tmp_path / "none") == ["0", "1"]
    kfd = tmp_path / "kfd"
    for node, gpu_id in (("0", "0"), ("1", "4353"), ("2", "22136")):  # node 0: the CPU
        (kfd / node).mkdir(parents=True)
        (kfd / node / "gpu_id").write_text(gpu_id + "\n")
    assert host_gpus(tmp_path / "none", kfd) == ["0", "1"]
    assert candidate_devices({"CONVBENCH_GPUS": "2, 3"}) == (["2", "3"], "CONVBENCH_GPUS")


_CLAIM = textwrap.dedent("""
    import importlib.util, sys
    spec = importlib.util.spec_from_file_location("devices", sys.argv[2])   # devices.py alone: no torch to import
    devices = sys.modules["devices"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(devices)
    env = {"CONVBENCH_GPUS": "0,1,2"}
    assigned = devices.assign_device(env, sys.argv[1])
    print(assigned.how, env["CUDA_VISIBLE_DEVICES"], env["HIP_VISIBLE_DEVICES"], flush=True)
    sys.stdin.read()                       # hold the slot until the test lets go
""")


def test_parallel_workers_take_distinct_slots_and_the_extra_one_shares(tmp_path):
    """Four processes, three GPUs: three own one each, the fourth shares (and says so)."""
    workers = [subprocess.Popen([sys.executable, "-c", _CLAIM, str(tmp_path), devices.__file__], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True) for _ in range(4)]
    try:
        lines = [w.stdout.readline().split() for w in workers]
    finally:
        for w in workers:
            w.communicate("", timeout=60)
    owned = sorted(device for how, device, hip in lines if how == "slot")
    assert owned == ["0", "1", "2"]
    assert [how for how, *_ in lines].count("shared") == 1
    assert all(device == hip for _, device, hip in lines)
    # the slots are free again once their processes are gone
    env = {"CONVBENCH_GPUS": "0,1,2"}
    assert assign_device(env, tmp_path).device == "0"


def test_jobs_of_the_basic_launcher_and_single_runs_are_left_alone(monkeypatch):
    monkeypatch.setattr(devices, "_assigned", None)
    monkeypatch.setenv("CONVBENCH_GPUS", "0,1")
    assert devices.isolate_job_device(in_sweep=False, runs_the_sweep=False) is None
    assert devices.isolate_job_device(in_sweep=True, runs_the_sweep=True) is None
