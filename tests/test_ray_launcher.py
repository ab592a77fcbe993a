"""The ray preset: no GPU asked of a machine that has none, a local Ray on 127.0.0.1 only, and a real
2-job CPU sweep through Ray where it is installed (`make setup-ray`; skipped otherwise)."""
from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from experiments.harness import launchers
from experiments.harness.errors import ConfigError
from experiments.tracking import contract

from .servers import REPO


def _ray_preset(tmp_path, *overrides):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=ray", f"hydra.sweep.dir={tmp_path}", *overrides],
                      return_hydra_config=True)
    return cfg.hydra.launcher


def test_a_local_ray_listens_on_loopback_and_asks_gpus_only_where_there_are(tmp_path, monkeypatch):
    monkeypatch.setattr(launchers, "local_gpus", lambda: 0)
    ray = OmegaConf.to_container(_ray_preset(tmp_path).ray, resolve=True)
    assert ray["init"]["_node_ip_address"] == "127.0.0.1" and ray["init"]["include_dashboard"] is False
    assert ray["remote"]["num_gpus"] == 0
    monkeypatch.setattr(launchers, "local_gpus", lambda: 4)
    assert OmegaConf.to_container(_ray_preset(tmp_path).ray, resolve=True)["remote"]["num_gpus"] == 1
    joining = OmegaConf.to_container(_ray_preset(tmp_path, "hydra.launcher.ray.init.address=auto").ray, resolve=True)
    assert joining["init"]["_node_ip_address"] is None          # a cluster's node address is Ray's to choose


def test_a_gpu_per_job_on_a_local_ray_without_gpus_is_refused_at_once(tmp_path, monkeypatch):
    monkeypatch.setattr(launchers, "local_gpus", lambda: 0)
    with pytest.raises(ConfigError, match=r"num_gpus=1: this machine \(a local Ray\) has 0 GPUs, so Ray would "
                                          r"wait forever; use 0"):
        launchers.check_ray(_ray_preset(tmp_path, "hydra.launcher.ray.remote.num_gpus=1"))


def _ray_installed() -> bool:
    try:
        import hydra_plugins.hydra_ray_launcher  # noqa: F401
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _ray_installed(), reason="Ray is not installed (`make setup-ray`)")
def test_a_two_job_cpu_sweep_through_ray(tmp_path):
    """Each job a Ray task with one core: both land, and the tuning database keys them by that one thread."""
    store, tuning = tmp_path / "mlflow.db", tmp_path / "tuning.db"
    command = [sys.executable, "run.py", "-m", "hydra/launcher=ray", "algo=auto", "seed=0,1", "model=digits_cnn",
               "backend=numpy", "bench=smoke", "energy=off", "tuning.budget_s=0.5", f"tuning.db={tuning}",
               f"tracking.uri=sqlite:///{store}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    if os.geteuid() == 0 and shutil.which("unshare"):   # a network namespace of its own: loopback only
        command = ["unshare", "-n", "sh", "-c", 'ip link set lo up 2>/dev/null; exec "$@"', "-", *command]
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_DISABLE_TELEMETRY": "true", "RAY_AUTH_MODE": "disabled"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "2 of 2 jobs ok" in out and "Traceback" not in out
    with sqlite3.connect(store) as db:
        statuses = db.execute("SELECT r.status FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid AND t.key = ? "
                              "AND t.value = 'job'", (contract.T_RUN_KIND,)).fetchall()
    assert sorted(statuses) == [("FINISHED",), ("FINISHED",)]
    with sqlite3.connect(tuning) as db:
        devices = {row[0] for row in db.execute("SELECT device FROM tuning")}
    assert devices and all(device.endswith("[1 threads]") for device in devices), devices
