"""`make sync` (python -m experiments.tracking.outbox) is idempotent and whole: a sync stopped half-way
and run again makes no second run, a sweep synced into another store keeps its shape, a damaged entry
is skipped with one line and the others are uploaded."""
from __future__ import annotations

import shutil
import subprocess
import sys
import uuid

import pytest

from experiments.tracking import contract
from experiments.tracking import mlflow_log as mlf
from experiments.tracking import outbox

from .servers import REPO


@pytest.fixture
def store(whole_store, tmp_path):
    db = tmp_path / "mlflow.db"
    shutil.copy(whole_store, db)
    return f"sqlite:///{db}"


def _record(uri, tmp_path, name, **fields) -> outbox.RunRecord:
    artifacts = tmp_path / f"artifacts-{name}"
    artifacts.mkdir()
    (artifacts / "layers.csv").write_text("layer,ms\nconv1,1.5\n")
    return outbox.RunRecord(uri, "study", name, params={"algo": name, "model.name": "resnet18"},
                            metrics={"latency_ms": 2.5, "speedup": 1.25}, tags={contract.T_RUN_KIND: "job"},
                            artifacts=str(artifacts), **fields)


def _runs(uri):
    client = mlf.client(uri)
    experiment = client.get_experiment_by_name("study")
    return client.search_runs([experiment.experiment_id]) if experiment else []


def _whole(uri, run, name):
    assert run.info.status == "FINISHED" and run.info.run_name == name
    assert run.data.params == {"algo": name, "model.name": "resnet18"}
    assert run.data.metrics == {"latency_ms": 2.5, "speedup": 1.25}
    assert [a.path for a in mlf.client(uri).list_artifacts(run.info.run_id)] == ["layers.csv"]


# the sync process dies (SIGKILL) right after its first run was created and logged, before it is closed
_KILLED_AFTER_CREATING = """
import os, signal, sys
from experiments.tracking import mlflow_log as mlf
from experiments.tracking import outbox
mlf.finish = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
outbox.main(sys.argv[1:])
"""


def test_a_sync_killed_after_creating_its_run_then_run_again_gives_one_finished_run_per_entry(store, tmp_path):
    sweep = tmp_path / "sweep"
    names = ["im2col", "kn2row", "scalar"]
    for name in names:   # the store was unreachable from the start: no run id yet
        outbox.write(_record(store, tmp_path, name), sweep / outbox.OUTBOX_DIR)
    killed = subprocess.run([sys.executable, "-c", _KILLED_AFTER_CREATING, str(sweep)], cwd=REPO, timeout=120,
                            capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert [run.info.status for run in _runs(store)] == ["RUNNING"]

    assert outbox.main([str(sweep)]) == 0
    runs = sorted(_runs(store), key=lambda run: run.info.run_name)
    assert [run.info.run_name for run in runs] == names
    for run, name in zip(runs, names):
        _whole(store, run, name)
    assert outbox.entries([sweep]) == []


def test_an_upload_that_fails_half_way_is_resumed_not_made_again(store, tmp_path, monkeypatch, capsys):
    sweep = tmp_path / "sweep"
    outbox.write(_record(store, tmp_path, "im2col"), sweep / outbox.OUTBOX_DIR)
    real = mlf.log_artifacts

    def disk_error(*args):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(mlf, "log_artifacts", disk_error)
    assert outbox.main([str(sweep)]) == 1
    assert "Input/output error" in capsys.readouterr().err
    monkeypatch.setattr(mlf, "log_artifacts", real)
    assert outbox.main([str(sweep)]) == 0
    (run,) = _runs(store)
    _whole(store, run, "im2col")


def test_a_sweep_synced_into_another_store_keeps_its_parent_and_its_params(store, tmp_path):
    """The parent's entry sorts after its children's on disk: sync uploads parents first."""
    sweep, old_store = tmp_path / "sweep", "sqlite:////gone/mlflow.db"
    parent = outbox.RunRecord(old_store, "study", "sweep of 2", run_id="f" * 32, status="FAILED",
                              tags={contract.T_RUN_KIND: "parent", contract.T_SWEEP_ID: "s1"},
                              params={contract.P_SWEEP_JOBS: "2", contract.P_SWEEP_OVERRIDES: "algo=im2col,kn2row"},
                              metrics={contract.JOBS_OK: 2})
    outbox.write(parent, sweep / outbox.OUTBOX_DIR)
    for name in ("im2col", "kn2row"):
        child = _record(old_store, tmp_path, name, run_id=uuid.uuid4().hex[:8], parent_run_id=parent.run_id,
                        parent_client_id=parent.client_id)
        outbox.write(child, sweep / outbox.OUTBOX_DIR)
    assert outbox.main([str(sweep), "--tracking-uri", store]) == 0
    runs = _runs(store)
    (new_parent,) = [run for run in runs if run.data.tags[contract.T_RUN_KIND] == "parent"]
    assert new_parent.info.run_id != parent.run_id and new_parent.info.status == "FAILED"
    assert new_parent.data.params == parent.params and new_parent.data.metrics == {contract.JOBS_OK: 2}
    children = [run for run in runs if run.data.tags[contract.T_RUN_KIND] == "job"]
    assert sorted(run.info.run_name for run in children) == ["im2col", "kn2row"]
    assert {run.data.tags[mlf.PARENT_RUN_ID_TAG] for run in children} == {new_parent.info.run_id}


def test_a_damaged_or_partly_written_entry_is_skipped_with_one_line_and_the_others_are_uploaded(store, tmp_path,
                                                                                                capsys):
    sweep = tmp_path / "sweep"
    cut = outbox.write(_record(store, tmp_path, "im2col"), sweep / outbox.OUTBOX_DIR)
    (cut / outbox.RECORD).write_text((cut / outbox.RECORD).read_text()[:90])    # the disk filled up mid-write
    good = outbox.write(_record(store, tmp_path, "kn2row"), sweep / outbox.OUTBOX_DIR)
    partial = sweep / outbox.OUTBOX_DIR / f".{uuid.uuid4().hex}.partial"
    shutil.copytree(good, partial)
    shutil.copytree(good, tmp_path / "kept")
    (partial / outbox.RECORD).unlink()          # its writer was killed while copying the artifacts

    assert outbox.main([str(sweep)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    skipped = [line for line in err.splitlines() if "NOT uploaded" in line]
    assert len(skipped) == 2
    assert any(str(cut) in line and "damaged entry, record.json unreadable" in line for line in skipped)
    assert any(str(partial) in line and "partly written" in line for line in skipped)
    assert "1 run(s) uploaded, 2 left" in err
    (run,) = _runs(store)
    _whole(store, run, "kn2row")
    assert cut.is_dir() and partial.is_dir() and not good.exists()
