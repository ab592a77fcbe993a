"""One GPU per job: a job of a parallel launcher sees only its own device.

Called first thing in every job (runner.run_job), before anything initialises CuPy or torch's
CUDA/ROCm context, which read CUDA_VISIBLE_DEVICES / HIP_VISIBLE_DEVICES once, at their start.

Which devices the job may choose from:

    $CONVBENCH_GPUS           a comma list set by the user (e.g. "0,1,2,3"); wins
    $CUDA_VISIBLE_DEVICES     set by a scheduler (SLURM, Ray, submitit_local's gpus_per_node)
    $HIP_VISIBLE_DEVICES      or by the user
    the host's GPUs           /proc/driver/nvidia/gpus (NVIDIA), the kfd topology (AMD): read
                              without initialising any driver

One device: nothing to do (SLURM with gpus_per_task=1 and Ray with num_gpus=1 give each job its
own already). Several: the job takes one of them, its slot, and both variables are set to it:

    under SLURM               slot = $SLURM_LOCALID (tasks of one allocation on one node)
    joblib, submitit_local    slot = the first free of one lock file per device in
                              $CONVBENCH_SLOT_DIR (default /tmp/convbench-gpu-slots-<uid>), held
                              until the process exits: a joblib worker runs job after job on the
                              device its first job took; parallel sweeps on one host share them out

With more parallel jobs than devices no slot is free: the job shares one (by its process id),
says so on stderr and its run is tagged; use n_jobs <= GPUs for numbers worth reporting.
The process that runs the sweep itself (the basic launcher: jobs one after another) and single
runs are left alone. CodeCarbon reads CUDA_VISIBLE_DEVICES too, so a job's energy figure is its
own GPU's (the CPU and RAM share of parallel jobs on one host is not separable).
"""
from __future__ import annotations

import fcntl
import os
import sys
from dataclasses import dataclass
from pathlib import Path

DEVICES_ENV = "CONVBENCH_GPUS"
SLOT_DIR_ENV = "CONVBENCH_SLOT_DIR"
VISIBLE_VARS = ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES")

_held: dict[str, int] = {}            # slot lock files this process holds (path -> fd), kept open
_assigned: "Assignment | None" = None  # one device per process, whatever jobs it runs


@dataclass(frozen=True)
class Assignment:
    device: str | None         # what CUDA_VISIBLE_DEVICES / HIP_VISIBLE_DEVICES now say; None: untouched
    how: str                   # why: "scheduler", "slurm-localid", "slot", "shared", "no-gpu"
    choices: tuple[str, ...] = ()

    @property
    def shared(self) -> bool:
        return self.how == "shared"


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def host_gpus(proc: str | Path = "/proc/driver/nvidia/gpus",
              kfd: str | Path = "/sys/class/kfd/kfd/topology/nodes") -> list[str]:
    """The host's GPU indices, from the drivers' files (no driver is initialised)."""
    proc, kfd = Path(proc), Path(kfd)
    if proc.is_dir():
        count = sum(1 for p in proc.iterdir() if p.is_dir())
        if count:
            return [str(i) for i in range(count)]
    gpus = 0
    if kfd.is_dir():
        for node in kfd.iterdir():
            try:
                gpus += int((node / "gpu_id").read_text().strip() or 0) != 0
            except (OSError, ValueError):
                pass
    return [str(i) for i in range(gpus)]


def candidate_devices(env=os.environ) -> tuple[list[str], str]:
    """The devices this process may choose from, and where that list came from."""
    for var in (DEVICES_ENV, *VISIBLE_VARS):
        if var in env:
            return _split(env[var]), var
    return host_gpus(), "host"


def claim_slot(slots: int, directory: str | Path) -> int | None:
    """The first of ``slots`` lock files in ``directory`` that no other process holds (kept until
    this process exits); None when all are taken."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for slot in range(slots):
        path = str(directory / f"gpu{slot}.lock")
        if path in _held:
            return slot
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        _held[path] = fd
        return slot
    return None


def default_slot_dir() -> Path:
    return Path(os.environ.get(SLOT_DIR_ENV) or f"/tmp/convbench-gpu-slots-{os.getuid()}")


def assign_device(env=os.environ, slot_dir: str | Path | None = None) -> Assignment:
    """Narrow ``env``'s visible devices to one (see the module's docstring); returns what was done."""
    devices, source = candidate_devices(env)
    if not devices:
        return Assignment(None, "no-gpu")
    if len(devices) == 1:
        if source == DEVICES_ENV:
            for var in VISIBLE_VARS:
                env[var] = devices[0]
            return Assignment(devices[0], "slot", tuple(devices))
        return Assignment(env.get(source, devices[0]), "scheduler", tuple(devices))
    if env.get("SLURM_LOCALID", "").isdigit():
        device, how = devices[int(env["SLURM_LOCALID"]) % len(devices)], "slurm-localid"
    else:
        slot = claim_slot(len(devices), slot_dir or default_slot_dir())
        device, how = (devices[slot], "slot") if slot is not None else (devices[os.getpid() % len(devices)], "shared")
    for var in VISIBLE_VARS:
        env[var] = device
    return Assignment(device, how, tuple(devices))


def isolate_job_device(in_sweep: bool, runs_the_sweep: bool) -> Assignment | None:
    """In a job process of a parallel launcher, once per process: one device for this process."""
    global _assigned
    if not in_sweep or runs_the_sweep:
        return None
    if _assigned is None:
        _assigned = assign_device()
        if _assigned.shared:
            print(f"[convbench] warning: more parallel jobs than GPUs ({', '.join(_assigned.choices)}): this job "
                  f"shares GPU {_assigned.device}; its timings are not clean (set the launcher's n_jobs to the "
                  f"number of GPUs)", file=sys.stderr, flush=True)
    return _assigned
