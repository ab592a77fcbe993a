"""hydra-joblib-launcher, whose sweep survives the loss of a worker process.

When one of joblib's (loky's) worker processes dies (killed, or the kernel's out-of-memory killer),
loky breaks its whole pool: it kills the other workers with their jobs and raises
TerminatedWorkerError, which would end the sweep with a traceback. Here:

- the job the dead worker held ends FAILED with the reason: its process (isolation.py) gets
  isolation.WORKER_DIED when its worker dies, closes its run and writes its result;
- the jobs loky killed with the other workers are closed as KILLED (their processes are gone), and
  every job without a result is launched again, under its own job number, in a new pool;
- a job in flight at two losses is not launched a third time: it is FAILED with the reason.

conf/hydra/launcher/joblib.yaml names this class; its settings are the plugin's. It lives in the
hydra_plugins namespace package because Hydra instantiates launchers from there only.
"""
from __future__ import annotations

import sys
from typing import Sequence

from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_joblib_launcher import _core
from hydra_plugins.hydra_joblib_launcher import joblib_launcher as plugin

from experiments.tracking import mlflow_log as mlf
from experiments.tracking import stale
from experiments.tracking.retry import short

from experiments.harness import sweep

_LOSSES_PER_JOB = 2


class JoblibLauncher(plugin.JoblibLauncher):
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from joblib.externals.loky.process_executor import TerminatedWorkerError
        jobs = {initial_job_idx + i: list(overrides) for i, overrides in enumerate(job_overrides)}
        returns: dict[int, JobReturn] = {}
        losses = {num: 0 for num in jobs}
        todo = sorted(jobs)
        while todo:
            try:
                returns.update(self._launch_numbered({num: jobs[num] for num in todo}))
                break
            except TerminatedWorkerError as exc:
                state = sweep.open_sweep()
                if state is None:      # not a convbench sweep: nothing to recover from
                    raise
                todo = _after_worker_loss(state, todo, losses, exc)
        return [returns.get(num) or _completed(overrides) for num, overrides in jobs.items()]

    def _launch_numbered(self, jobs: dict[int, list[str]]) -> dict[int, JobReturn]:
        """The plugin's launch, each job under the number given (the plugin numbers them from one start)."""
        if sorted(jobs) == list(range(min(jobs), min(jobs) + len(jobs))):
            return dict(zip(sorted(jobs), _core.launch(self, [jobs[num] for num in sorted(jobs)], min(jobs))))
        from hydra.core.singleton import Singleton
        from hydra.core.utils import setup_globals
        from joblib import Parallel, delayed
        setup_globals()
        joblib_cfg = self.joblib
        joblib_cfg["backend"] = "loky"
        _core.process_joblib_cfg(joblib_cfg)
        state = Singleton.get_state()
        runs = Parallel(**joblib_cfg)(
            delayed(_core.execute_job)(num, overrides, self.hydra_context, self.config, self.task_function, state)
            for num, overrides in jobs.items())
        return dict(zip(jobs, runs))


def _after_worker_loss(state: sweep.SweepState, todo: list[int], losses: dict[int, int], exc: Exception) -> list[int]:
    """Close what the broken pool left RUNNING, fail the jobs lost too often; the jobs to launch again."""
    print(f"[convbench] a joblib worker process died ({str(exc).splitlines()[0][:200]}); its job fails, "
          f"the jobs of the other workers run again", file=sys.stderr, flush=True)
    try:   # waits for the dead worker's job to close its own run (FAILED, with the reason)
        stale.close_dead_local_runs(state.tracking_uri, [state.experiment],
                                    extra_filter=f"tags.`{mlf.PARENT_RUN_ID_TAG}` = '{state.parent_run_id}'",
                                    reason="its process was killed with its joblib worker when another worker "
                                           "died; the job was launched again", wait_s=30)
    except Exception as exc:
        print(f"convbench: could not close the runs the lost workers left: {short(exc)}", file=sys.stderr)
    done = {int(path.stem) for path in state.results_dir.glob("*.json")} if state.results_dir.is_dir() else set()
    again = []
    for num in todo:
        if num in done:
            continue
        losses[num] += 1
        if losses[num] < _LOSSES_PER_JOB:
            again.append(num)
            continue
        planned = state.jobs[num] if num < len(state.jobs) else {}
        state.write_result(num, {"num": num, "name": planned.get("name", f"#{num}"), "status": "failed",
                                 "error": f"its joblib worker process died {losses[num]} times while it ran",
                                 "run_id": None, "outbox": None, "run_name": planned.get("run_name"),
                                 "what_ran": "", "metrics": {}})
    return again


def _completed(overrides: list[str]) -> JobReturn:
    """What Hydra's sweeper reads of a job whose worker died: its result is in the sweep state."""
    ret = JobReturn(overrides=overrides, status=JobStatus.COMPLETED)
    ret.return_value = None
    return ret
