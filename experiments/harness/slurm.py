"""Sweeps on SLURM (hydra/launcher=submitit_slurm): every job's end is known and recorded, whatever ended it.

Hydra's submitit launcher waits for each job's result file and raises at the first job that left
none, which ends the whole sweep; and submitit learns a job's state from ``sacct``, which needs
SLURM's accounting database: on a cluster without one it never learns that a job was cancelled
and waits forever. ``install(state)`` (the sweep callback, for SLURM sweeps) gives submitit the job
class below: as ``SlurmExecutor.job_class`` and as its module's ``SlurmJob``, from which it builds
the jobs of an array:

- ``QueueWatcher`` asks ``sacct`` where the cluster keeps accounting and ``squeue --states=all``
  (which remembers finished jobs for MinJobAge, 300 s by default) where it does not;
- ``RecordedSlurmJob`` turns a job that ended without a result (``scancel``, its time limit, a
  node failure) into a failed job of the sweep: its MLflow run is closed KILLED with SLURM's state
  as the reason, its result file says so, and the sweep goes on to the next job. A job that
  submitit stopped at SLURM's time-limit warning (it logs itself failed) is closed KILLED too.
"""
from __future__ import annotations

import subprocess
import time
from functools import lru_cache

from submitit.core.utils import UncompletedJobError
from submitit.slurm import slurm as submitit_slurm

from experiments.tracking import contract
from experiments.tracking import mlflow_log as mlf

# submitit's handler of SLURM's warning signal (USR2, signal_delay_s before the time limit) raises this in
# the job, which the job logs as its error: the job did not fail, its time ran out
SUBMITIT_TIMED_OUT = "Job not requeued because: timed-out"
KILLED_STATES = ("CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY", "DEADLINE", "BOOT_FAIL")


@lru_cache(maxsize=1)
def cluster_keeps_accounting() -> bool:
    done = subprocess.run(["sacct", "--noheader", "-X", "-j", "1"], capture_output=True, text=True)
    return done.returncode == 0


class QueueWatcher(submitit_slurm.SlurmInfoWatcher):
    """submitit's watcher, on ``squeue`` when the cluster keeps no accounting."""

    def _make_command(self):
        command = super()._make_command()
        if command is None or cluster_keeps_accounting():
            return command
        ids = ",".join(command[i + 1] for i, word in enumerate(command) if word == "-j")
        return ["squeue", "--array", "--states=all", "--format=%i|%T|%N", f"--jobs={ids}"]

    def read_info(self, string):
        text = string.decode() if isinstance(string, bytes) else string
        if text.startswith("JOBID|"):   # squeue's header: the names sacct uses
            text = "JobID|State|NodeList" + text[len("JOBID|STATE|NODELIST"):]
        return super().read_info(text)


_SUBMITIT_JOB = submitit_slurm.SlurmJob


class RecordedSlurmJob(_SUBMITIT_JOB):
    """A job that ended without a result is recorded as killed instead of ending the sweep."""

    watcher = QueueWatcher(delay_s=5)
    sweep_state = None          # experiments.harness.sweep.SweepState of the running sweep (install)

    def results(self):
        try:
            self.wait()
            if not self.paths.result_pickle.exists() and self.state.split()[0] in KILLED_STATES:
                raise UncompletedJobError(self.state)   # no result is coming: no need to wait for one
            returned = super().results()
        except UncompletedJobError:
            report = record_killed(self, self.sweep_state)
            from hydra.core.utils import JobReturn, JobStatus
            return [JobReturn(overrides=list(self.submission().args[0]), status=JobStatus.COMPLETED,
                              _return_value=report)]
        report = returned[0].return_value if returned and hasattr(returned[0], "return_value") else None
        if getattr(report, "failed", False) and SUBMITIT_TIMED_OUT in report.error:
            record_time_limit(self, report, self.sweep_state)
        return returned


def install(state) -> None:
    RecordedSlurmJob.sweep_state = state
    submitit_slurm.SlurmExecutor.job_class = submitit_slurm.SlurmJob = RecordedSlurmJob


def _slurm_reason(job) -> str:
    state = job.watcher.get_state(job.job_id, mode="force")
    what = {"CANCELLED": "cancelled (scancel, or the cluster)", "TIMEOUT": "ended by its time limit"}.get(
        state.split()[0] if state else "", f"ended in state {state}")
    return f"SLURM job {job.job_id} {what} before it logged its result"


def record_killed(job, state):
    """Close the job's MLflow run as KILLED with SLURM's reason; write its result to the sweep state."""
    from .results import STATUS_FAILED, JobReport
    deadline = time.monotonic() + 30      # squeue may take a poll to show the final state
    while job.watcher.get_state(job.job_id, mode="force").split()[0] not in KILLED_STATES + ("COMPLETED", "FAILED") \
            and time.monotonic() < deadline:
        time.sleep(1)
    reason = _slurm_reason(job)
    num = int(job.submission().args[2])
    run_id = None
    if state is not None and state.parent_run_id:
        for run in _open_runs(state, num):
            run_id = run.info.run_id
            mlf.log(state.tracking_uri, run_id, tags={contract.T_STATUS: STATUS_FAILED, contract.T_ERROR: reason})
            mlf.finish(state.tracking_uri, run_id, ok=False, status="KILLED")
    planned = state.jobs[num]["name"] if state is not None and num < len(state.jobs) else f"#{num}"
    report = JobReport(planned, STATUS_FAILED, reason, run_id, num)
    if state is not None and not (state.results_dir / f"{num}.json").exists():
        state.write_result(num, {"num": num, "name": report.name, "status": report.status, "error": reason,
                                 "run_id": run_id})
    print(f"[convbench] job {num + 1} {report.name}: KILLED: {reason}", flush=True)
    return report


def record_time_limit(job, report, state) -> None:
    """A job stopped by submitit at SLURM's time-limit warning logged itself FAILED: it was KILLED."""
    report.error = (f"SLURM job {job.job_id} ended by its time limit (hydra.launcher.timeout_min; submitit "
                    f"stopped it at SLURM's warning signal)")
    if state is not None and report.run_id:
        mlf.log(state.tracking_uri, report.run_id, tags={contract.T_ERROR: report.error})
        mlf.finish(state.tracking_uri, report.run_id, ok=False, status="KILLED")
    if state is not None and report.num is not None:
        state.write_result(report.num, {"num": report.num, "name": report.name, "status": report.status,
                                        "error": report.error, "run_id": report.run_id})
    print(f"[convbench] job {report.num + 1 if report.num is not None else '?'} {report.name}: KILLED: "
          f"{report.error}", flush=True)


def _open_runs(state, num: int):
    """The job's run if it started one and did not close it (the job sets the job_num tag)."""
    client = mlf.client(state.tracking_uri)
    experiment = client.get_experiment_by_name(state.experiment)
    if experiment is None:
        return []
    query = (f"tags.`{mlf.PARENT_RUN_ID_TAG}` = '{state.parent_run_id}' and tags.`{contract.T_JOB_NUM}` = '{num}' "
             f"and attributes.status = 'RUNNING'")
    return client.search_runs([experiment.experiment_id], filter_string=query)
