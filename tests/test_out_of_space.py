"""Out of space: the tracking store and the sweep directory fill up during a sweep. Nothing is retried
in vain, no traceback, each job's measurements are kept (in the spare outbox), and once space is back
`make sync` leaves no run RUNNING."""
from __future__ import annotations

import errno
from pathlib import Path

from experiments.harness import runner
from experiments.harness.sweep import SweepState
from experiments.tracking import contract
from experiments.tracking import mlflow_log as mlf
from experiments.tracking import outbox

from .test_harness_sweep import SMALL

QUICK = [*SMALL, "energy=off"]


def test_a_store_and_sweep_directory_full_mid_sweep_keep_every_measurement_and_leave_nothing_running(
        convbench, tmp_path, monkeypatch, capsys):
    uri, sweep_dir, spare = f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "sweep", tmp_path / "spare"
    full = []

    def store_full(*args, **kwargs):
        from mlflow.exceptions import MlflowException
        raise MlflowException("(raised as a result of Query-invoked autoflush; consider using a session.no_autoflush "
                              "block if this flush is occurring prematurely)\n(sqlite3.OperationalError) database "
                              "or disk is full\n[SQL: INSERT INTO runs ...]")

    def unless_full(real, on_the_sweep_disk=lambda *args: True):
        def call(*args, **kwargs):
            if full and on_the_sweep_disk(*args):
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(*args, **kwargs)
        return call

    real_start, real_upload, real_run = outbox.start, outbox.upload, runner.Job.run

    def measured_then_disks_fill(job):
        real_run(job)
        full.append(True)
        monkeypatch.setattr(outbox, "start", store_full)
        monkeypatch.setattr(outbox, "upload", store_full)

    monkeypatch.setattr(runner.Job, "run", measured_then_disks_fill)
    monkeypatch.setattr(SweepState, "write_result", unless_full(SweepState.write_result))
    monkeypatch.setattr(outbox, "write", unless_full(outbox.write, lambda record, where: sweep_dir in Path(where).parents))
    monkeypatch.setattr(outbox, "spare_outbox", lambda: spare / outbox.OUTBOX_DIR)

    code = convbench("-m", "algo=scalar,pytorch", *QUICK, f"tracking.uri={uri}", "tracking.retry_s=60",
                     f"hydra.sweep.dir={sweep_dir}")
    out = capsys.readouterr()
    assert code == 1
    assert "Traceback" not in out.err and "retrying in" not in out.err      # a full disk is not waited for
    assert "out of disk space (" in out.err and "database or disk is full" in out.err
    assert f"upload it with `make sync OUTBOX={spare}`" in out.err
    kept = {outbox.read(entry).run_name: outbox.read(entry) for entry in outbox.entries([spare])}
    assert len(kept) == 3                       # both jobs and the parent's closing
    jobs = [record for record in kept.values() if record.tags.get(contract.T_RUN_KIND) == "job"]
    assert len(jobs) == 2 and all(record.metrics[contract.LATENCY_MS] > 0 for record in jobs)

    monkeypatch.setattr(outbox, "start", real_start)   # space is back
    monkeypatch.setattr(outbox, "upload", real_upload)
    assert outbox.main([str(spare)]) == 0
    client = mlf.client(uri)
    runs = client.search_runs([client.get_experiment_by_name("convbench").experiment_id])
    status = {run.data.tags[contract.T_RUN_KIND] + " " + run.info.run_name: run.info.status for run in runs}
    assert sorted(status.values()) == ["FAILED", "FINISHED", "FINISHED"], status    # nothing RUNNING
    (parent,) = [run for run in runs if run.data.tags[contract.T_RUN_KIND] == "parent"]
    assert parent.info.status == "FAILED" and "2 jobs left no result" in parent.data.tags[contract.T_ERROR]

