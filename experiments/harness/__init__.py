"""The experiment harness: a Hydra job -> checked, timed, energy-measured, logged to MLflow.

    config.py   the composed config -> JobSpec, checked before any work (ConfigError)
    models.py   torchvision models by name, seeded; the input batch
    job.py      one job: setup, float64 check, timing, energy (no MLflow)
    (the measurement protocol, Measurement and its statistics, the energy meter: experiments/measure/)
    runner.py   run.py's task function: a job -> its MLflow run, failures included
    results.py  a job's outcome in the contract's terms: metrics, resolved params, layers.csv rows
    artifacts.py  the run's files: config, layers.csv, raw samples, tuning snapshot
    console.py  what the user reads: progress bars, the closing summary
    sweep.py    the Hydra callback: one parent run per multirun, the sweep summary
    signals.py  SIGTERM/SIGINT: the job in flight and the sweep closed as KILLED, exit 143/130
    isolation.py  a parallel launcher's job in a child process: its crash fails that job only
"""

import warnings

# conf/hydra/launcher/ has presets named like the launcher plugins' own configs (joblib, submitit_local,
# submitit_slurm, ray), so `hydra/launcher=joblib` picks ours; Hydra 1.3 then validates ours against the
# plugin's schema (what we want: a misspelt key fails) and warns that this "automatic schema matching"
# is deprecated. Installed here, the filter also reaches job processes (joblib, submitit) before their
# config is composed: they import this package to unpickle the task function.
warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/\w+' is validated against ConfigStore schema",
                        category=UserWarning)
