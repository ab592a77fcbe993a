"""Sweeps beyond one process: joblib workers against one `make server`, submitit's local executor,
and the SLURM preset's batch script. Tiny jobs: resnet18 at 32x32, batch 1, smoke protocol, numpy."""
import os
import sqlite3

import pytest

from experiments.tracking import contract

from .servers import REPO, fresh_joblib_workers, make_server, metrics_of, runs_of, tags_of  # noqa: F401 (fixture)

TINY = ["model=resnet18", "model.input_size=32", "backend=numpy", "gemm=vendor", "bench=smoke",
        "bench.model.warmup=1", "bench.model.min_samples=3", "bench.layer.warmup=1", "bench.layer.min_samples=1"]


@pytest.mark.slow   # about 40 s on 2 cores (four worker processes); CI runs test_postgres_server's 2-job joblib sweep
def test_joblib_sweep_of_four_parallel_jobs_against_one_server(tmp_path, convbench, monkeypatch, capsys,
                                                              fresh_joblib_workers):
    """Four jobs at once (algo=auto, so all four also share one tuning database) log to one server:
    no run lost, every metric there, one parent; each worker took a GPU slot of its own."""
    monkeypatch.setenv("CONVBENCH_GPUS", "0,1,2,3")                 # as on a 4-GPU machine
    monkeypatch.setenv("CONVBENCH_SLOT_DIR", str(tmp_path / "slots"))
    tuning_db = tmp_path / "tuning.db"
    with make_server(tmp_path, f"sqlite:///{tmp_path / 'server.db'}") as url:
        code = convbench("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=4", "algo=auto", "seed=0,1,2,3", *TINY,
                         "energy=codecarbon", "bench.energy_s=0.2", f"tuning.db={tuning_db}", "tuning.budget_s=1",
                         f"tracking.uri={url}", "tracking.experiment=joblib-test")
        out = capsys.readouterr()
        assert code == 0, out.err[-3000:]
        assert "4 of 4 jobs ok" in out.out
        runs = runs_of(url, "joblib-test")
    parents = [r for r in runs if tags_of(r).get(contract.T_RUN_KIND) == "parent"]
    children = [r for r in runs if tags_of(r).get(contract.T_RUN_KIND) == "job"]
    assert len(parents) == 1 and len(children) == 4
    parent_id = parents[0]["info"]["run_id"]
    assert parents[0]["info"]["status"] == "FINISHED" and metrics_of(parents[0])["jobs_ok"] == 4
    seeds = set()
    for child in children:
        tags, metrics = tags_of(child), metrics_of(child)
        params = {p["key"]: p["value"] for p in child["data"]["params"]}
        seeds.add(params["seed"])
        assert child["info"]["status"] == "FINISHED" and tags[contract.T_STATUS] == "ok"
        assert tags["mlflow.parentRunId"] == parent_id
        missing = (set(contract.METRICS) | set(contract.AUTO_METRICS)) - set(metrics)
        assert not missing, missing
        assert metrics[contract.TUNING_MEASURED] + metrics[contract.TUNING_REUSED] == 20   # resnet18's conv layers
        assert tags[contract.T_VISIBLE_DEVICES] in {"0", "1", "2", "3"}
        assert tags[contract.T_BEST_SINGLE] in {"im2col/vendor", "kn2row/vendor", "scalar"}
    assert seeds == {"0", "1", "2", "3"}
    # four writers, one consistent database: one entry per distinct layer shape of resnet18 at 32x32
    with sqlite3.connect(tuning_db) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        shapes = [row[0] for row in db.execute("SELECT shape FROM tuning")]
    assert len(shapes) == len(set(shapes)) == 11


def test_submitit_local_sweep_completes_and_logs_its_runs(tmp_path, convbench, monkeypatch, capsys):
    """The submitit path (jobs pickled to a folder, each run by its own `python -m submitit...`)."""
    monkeypatch.setenv("PYTHONPATH", str(REPO))      # the job processes unpickle run.task (run.py: not installed)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = convbench("-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5", "algo=pytorch,scalar",
                     *TINY, "energy=off", f"tracking.uri={uri}", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    out = capsys.readouterr()
    assert code == 0, out.err[-3000:]
    assert "2 of 2 jobs ok" in out.out
    logs = list((tmp_path / "sweep" / ".submitit").rglob("*_log.out"))
    assert len(logs) == 2                                                  # each job ran in submitit's process
    assert any("resnet18/scalar/fp32/dense (numpy reference on the CPU, not the HIP kernels): latency" in p.read_text()
               for p in logs)
    from mlflow.tracking import MlflowClient
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("convbench").experiment_id])
    parents = [r for r in runs if r.data.tags[contract.T_RUN_KIND] == "parent"]
    children = [r for r in runs if r.data.tags[contract.T_RUN_KIND] == "job"]
    assert len(parents) == 1 and len(children) == 2
    assert {r.data.params[contract.P_ALGO] for r in children} == {"pytorch", "scalar"}
    for run in runs:
        assert run.info.status == "FINISHED"
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert {contract.LATENCY_MS, contract.BASELINE_LATENCY_MS, contract.SPEEDUP_VS_BASELINE,
                contract.CONV_LATENCY_MS, contract.MAX_REL_ERR, contract.COMPILE_S} <= set(child.data.metrics)


@pytest.mark.parametrize("preset,target", [("joblib", "JoblibLauncher"), ("submitit_local", "LocalLauncher"),
                                           ("submitit_slurm", "SlurmLauncher"), ("ray", "RayLauncher")])
def test_every_launcher_preset_composes(preset, target, tmp_path):
    from hydra import compose, initialize_config_dir
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"hydra/launcher={preset}", f"hydra.sweep.dir={tmp_path}"],
                      return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith(target)


def test_site_cluster_settings_come_from_an_optional_untracked_local_config(tmp_path):
    """conf/local/submitit_slurm.yaml (untracked) overrides the tracked preset; without it the preset composes."""
    import shutil

    from hydra import compose, initialize_config_dir
    conf = tmp_path / "conf"
    shutil.copytree(REPO / "conf", conf, ignore=shutil.ignore_patterns("local"))   # as in a fresh clone
    overrides = ["hydra/launcher=submitit_slurm", f"hydra.sweep.dir={tmp_path}"]
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        assert compose("config", overrides=overrides, return_hydra_config=True).hydra.launcher.partition is None
    (conf / "local").mkdir()
    shutil.copy(REPO / "conf" / "local" / "submitit_slurm.yaml.example", conf / "local" / "submitit_slurm.yaml")
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        site = compose("config", overrides=overrides, return_hydra_config=True).hydra.launcher
    assert (site.partition, site.account, site.timeout_min, site.gpus_per_task) == ("gpu", "my-project", 120, 1)
    assert "conf/local/*.yaml" in (REPO / ".gitignore").read_text()


def test_slurm_preset_gives_each_job_one_gpu_in_a_job_array(tmp_path, monkeypatch):
    """The submitit_slurm preset composes, submitit accepts every key, and its batch script asks for
    one GPU per job and an array (rendered, not submitted: no SLURM here)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf
    from submitit import AutoExecutor
    from submitit.slurm.slurm import SlurmExecutor

    fake = tmp_path / "bin"                                   # submitit looks for srun before writing the script
    fake.mkdir()
    (fake / "srun").write_text("#!/bin/sh\nexit 1\n")
    (fake / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu",
                                           f"hydra.sweep.dir={tmp_path}"], return_hydra_config=True)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    assert launcher["_target_"].endswith("SlurmLauncher") and launcher["gpus_per_task"] == 1
    # what the launcher does with its config (hydra_submitit_launcher's BaseSubmititLauncher.launch)
    params = {k: v for k, v in launcher.items() if k not in ("_target_", "submitit_folder", "max_num_timeout")}
    params["name"] = "convbench"
    base = {"timeout_min", "cpus_per_task", "gpus_per_node", "tasks_per_node", "mem_gb", "nodes", "name",
            "stderr_to_stdout"}
    executor = AutoExecutor(folder=tmp_path / "submitit", cluster="slurm")
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    slurm: SlurmExecutor = executor._executor
    slurm.parameters["map_count"] = 20                      # as map_array does for a sweep of 20 jobs
    script = slurm._make_submission_file_text("python -m submitit.core._submit", "uid")
    assert "#SBATCH --array=0-19%8" in script                 # one array, array_parallelism jobs at once
    assert "#SBATCH --gpus-per-task=1" in script
    assert "#SBATCH --partition=gpu" in script
    assert "#SBATCH --ntasks-per-node=1" in script and "#SBATCH --time=60" in script
