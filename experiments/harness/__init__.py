"""The experiment harness: a Hydra job -> checked, timed, energy-measured, logged to MLflow.

    config.py   the composed config -> JobSpec, checked before any work (ConfigError)
    models.py   torchvision models by name, seeded; the input batch
    job.py      one job: setup, float64 check, timing, energy (no MLflow)
    timing.py   the measurement protocol; Measurement with its statistics
    energy.py   CodeCarbon's offline tracker around a fixed-duration loop
    runner.py   run.py's task function: a job -> its MLflow run, failures included
    sweep.py    the Hydra callback: one parent run per multirun, the sweep summary
"""
