"""convbench: run one job, or a sweep of them, from the Hydra configs in conf/.

    python run.py                                   one quick job and its summary
    python run.py -m algo=im2col,kn2row,scalar      a sweep: one MLflow parent run, a child per job
    python run.py -m experiment=course              a whole study (conf/experiment/)
    python run.py --help                            the config groups and their choices
    mlflow ui --backend-store-uri sqlite:///mlflow.db

Exit code: 0 when every job succeeded, 1 when a job failed (the last line says which),
2 on bad input (nothing was run).
"""
import os
import sys
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")   # before anything imports mlflow
# On the CPU backends a forward alternates torch ops (OpenMP threads) with numpy GEMMs (OpenBLAS
# threads); by default each pool keeps spinning after its work and starves the other (resnet18 at
# 224 with im2col: 216 ms instead of 45 ms on 2 cores; PyTorch alone unchanged, 27 ms). Both
# spins are shortened here, before torch and numpy load; a value set by the user wins.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from experiments.harness import runner, sweep  # noqa: E402


@hydra.main(version_base="1.3", config_path=str(Path(__file__).resolve().parent / "conf"), config_name="config")
def task(cfg: DictConfig):
    return runner.run_job(cfg)


def main() -> int:
    runner.reset_outcomes()
    try:
        task()
    except BaseException as exc:
        sweep.abort_open_sweeps(type(exc).__name__)
        raise
    return runner.exit_status()


if __name__ == "__main__":
    sys.exit(main())
