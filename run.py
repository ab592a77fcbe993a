"""convbench: run one job, or a sweep of them, from the Hydra configs in conf/.

    python run.py                                   one quick job and its summary
    python run.py -m algo=im2col,kn2row,scalar      a sweep: one MLflow parent run, a child per job
    python run.py -m experiment=course              a whole study (conf/experiment/)
    python run.py --help                            the config groups and their choices
    mlflow ui --backend-store-uri sqlite:///mlflow.db

Exit code: 0 when every job succeeded, 1 when a job failed or its run could not be logged
(the last line says which), 2 on bad input (nothing was run), 143 on SIGTERM and 130 on SIGINT
(the job in flight and the sweep closed as KILLED).
"""
import os
import sys
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")   # before anything imports mlflow
import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from experiments.harness import password, runner, signals, sweep, validate  # noqa: E402
from experiments.tracking import mlflow_log as mlf  # noqa: E402
from experiments.tracking import stale  # noqa: E402
from experiments.tracking.retry import out_of_space, short  # noqa: E402


@hydra.main(version_base="1.3", config_path=str(Path(__file__).resolve().parent / "conf"), config_name="config")
def task(cfg: DictConfig):
    return runner.run_job(cfg)


def main() -> int:
    runner.reset_outcomes()
    with signals.stop_on_signals(), mlf.masked_log_records(), password.lifted_environment(sys.argv[1:]):
        try:
            with validate.bad_input_exits():   # Hydra's own errors: one message, exit 2
                task()
        except BaseException as exc:
            stop = signals.as_stop(exc)
            reason = stop.reason if stop is not None else f"stopped by {type(exc).__name__}"
            sweep.abort_open_sweeps(reason, killed=stop is not None)
            if isinstance(exc, Exception) and out_of_space(exc):   # Hydra writing a job's .hydra/ or log on a full disk
                print(f"convbench: stopped: {short(exc)}; free some space and run again", file=sys.stderr)
                return 1
            if stop is None:
                raise
            stale.close_own_runs(reason)
            return stop.exit_code
    return runner.exit_status()


if __name__ == "__main__":
    sys.exit(main())
