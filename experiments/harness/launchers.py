"""What the launcher presets (conf/hydra/launcher/) compute from the machine rather than hard-code.

Two OmegaConf resolvers, registered on import (sweep.py imports this module, so every process that
composes or launches a convbench sweep has them):

    ${convbench_gpus_per_job:}         1 when the Ray cluster (or, before Ray starts, this machine)
                                       has a GPU, else 0: a CPU-only machine runs the ray preset as it
                                       is, instead of Ray waiting forever for a GPU no node has
    ${convbench_ray_node_ip:ADDRESS}   127.0.0.1 for a local Ray (ADDRESS null), so that it listens on
                                       loopback only; null (Ray's choice) when joining a cluster
"""
from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from .errors import ConfigError

LOOPBACK = "127.0.0.1"


def local_gpus() -> int:
    import torch
    return torch.cuda.device_count()


def gpus_per_job() -> int:
    try:
        import ray
        if ray.is_initialized():   # the launcher resolves its remote options after ray.init
            return 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    except ImportError:
        pass
    return 1 if local_gpus() else 0


def ray_node_ip(address) -> str | None:
    return LOOPBACK if address in (None, "", "null") else None


OmegaConf.register_new_resolver("convbench_gpus_per_job", gpus_per_job, replace=True)
OmegaConf.register_new_resolver("convbench_ray_node_ip", ray_node_ip, replace=True)


def check_ray(launcher: DictConfig) -> None:
    """Refuse at once what Ray would wait for forever: more GPUs per job than a local Ray has."""
    ray = launcher.get("ray") or {}
    remote = ray.get("remote") or {}
    address = (ray.get("init") or {}).get("address")
    for key in ("num_gpus", "num_cpus"):
        value = remote.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
            raise ConfigError(f"hydra.launcher.ray.remote.{key}={value!r}: expected a number >= 0")
    wanted = remote.get("num_gpus") or 0
    if address in (None, "") and wanted > local_gpus():
        raise ConfigError(f"hydra.launcher.ray.remote.num_gpus={wanted}: this machine (a local Ray) has "
                          f"{local_gpus()} GPUs, so Ray would wait forever; use 0, or the preset's default "
                          f"${{convbench_gpus_per_job:}} (a GPU per job when there is one)")
    try:
        import hydra_plugins.hydra_ray_launcher  # noqa: F401
    except ImportError:
        raise ConfigError("hydra/launcher=ray needs the Ray launcher, which `make setup` does not install: "
                          "`make setup-ray` (conf/hydra/launcher/ray.yaml says what it installs)") from None
