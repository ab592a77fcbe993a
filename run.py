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
