"""Logging failures keep the results: retries while the store is unreachable, then the outbox, and
`python -m experiments.tracking.outbox` (make sync) uploading it; no password printed or logged."""
import shutil
import subprocess
import sys
import threading
import time

import pytest

from experiments.tracking import contract
from experiments.tracking import mlflow_log as mlf
from experiments.tracking import outbox

from .servers import REPO, free_port, rest, runs_of, start_server, stop_group, tags_of
from .test_harness_sweep import SMALL, _artifacts, _runs, _split

QUICK = [*SMALL, "energy=off"]
SECRET = "s3cr3t-Pa55"


def _unreachable(*args, **kwargs):
    from mlflow.exceptions import MlflowException
    raise MlflowException("API request to http://127.0.0.1:9/api/2.0/mlflow/runs/log-batch failed with "
                          "exception ConnectionError: Connection refused")


def _complete(client, run, algo):
    """A job run with everything a direct logging gives it."""
    assert run.info.status == "FINISHED" and run.data.tags[contract.T_STATUS] == "ok"
    assert run.data.params[contract.P_ALGO] == algo and run.data.params[contract.P_MODEL] == "resnet18"
    not_measured = {contract.ENERGY_KWH, contract.EMISSIONS_KG, contract.ENERGY_PER_INFERENCE_J,   # energy=off
                    contract.CO2_PER_INFERENCE_MG}
    if algo == "pytorch":   # no workspace of its own; its speedup over itself is 1, without an interval
        not_measured |= {contract.WORKSPACE_BYTES, contract.SPEEDUP_CI95_LOW, contract.SPEEDUP_CI95_HIGH}
    assert set(contract.METRICS) - not_measured <= set(run.data.metrics)
    artifacts = _artifacts(client, run.info.run_id)
    assert {contract.A_CONFIG, contract.A_LAYERS, "harness.json"} <= set(artifacts)
    assert any(a.startswith(contract.A_SAMPLES_DIR + "/") for a in artifacts)


def test_a_flaky_store_is_retried_and_nothing_is_lost(convbench, tmp_path, monkeypatch, capsys):
    real, calls = outbox.upload, []

    def flaky(record, uri=None):
        calls.append(record.run_name)
        if len(calls) <= 2:
            _unreachable()
        return real(record, uri)

    monkeypatch.setattr(outbox, "upload", flaky)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert convbench("algo=im2col", *QUICK, f"tracking.uri={uri}", "tracking.retry_s=30") == 0
    err = capsys.readouterr().err
    assert err.count("logging the results failed (MlflowException: API request") == 2
    assert "retrying in 1 s" in err and "retrying in 2 s" in err
    (run,) = _runs(uri)
    _complete(mlf.client(uri), run, "im2col")
    assert not list(tmp_path.rglob(outbox.OUTBOX_DIR))


def test_a_store_down_for_good_keeps_whole_runs_in_the_outbox_and_sync_uploads_them(convbench, tmp_path, monkeypatch,
                                                                                     capsys):
    real = outbox.upload
    monkeypatch.setattr(outbox, "upload", _unreachable)   # from the first job's results on: parent created already
    uri, sweep_dir = f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "sweep"
    code = convbench("-m", "algo=scalar,pytorch", *QUICK, f"tracking.uri={uri}", "tracking.retry_s=0",
                     f"hydra.sweep.dir={sweep_dir}")
    out = capsys.readouterr()
    assert code == 1
    assert "2 of 2 jobs ok; 2 run(s) NOT LOGGED, kept in the outbox" in out.err.strip().splitlines()[-2]
    assert "could not close the parent run" in out.err and "make sync" in out.err
    entries = outbox.entries([sweep_dir])
    assert len(entries) == 3          # two jobs, and the parent's closing
    spare = tmp_path / "spare"
    shutil.copytree(sweep_dir, spare)
    monkeypatch.setattr(outbox, "upload", real)

    assert outbox.main([str(sweep_dir)]) == 0      # into the store the runs were started in: completed there
    assert "3 run(s) uploaded, 0 left" in capsys.readouterr().out
    assert outbox.entries([sweep_dir]) == []
    parents, children = _split(_runs(uri))
    client = mlf.client(uri)
    for child in children:
        _complete(client, child, child.data.params[contract.P_ALGO])
        assert child.data.tags[contract.T_OUTBOX].startswith(str(sweep_dir))
    assert parents[0].info.status == "FINISHED" and parents[0].data.metrics[contract.JOBS_OK] == 2
    assert parents[0].data.metrics[contract.JOBS_IN_OUTBOX] == 2
    assert outbox.main([str(sweep_dir)]) == 0      # nothing left: nothing done twice
    assert len(_runs(uri)) == 3

    other = f"sqlite:///{tmp_path}/other.db"       # a store that never saw them: created with everything
    assert outbox.main([str(spare), "--tracking-uri", other]) == 0
    parents, children = _split(_runs(other))
    assert len(parents) == 1 and len(children) == 2
    for child in children:
        _complete(mlf.client(other), child, child.data.params[contract.P_ALGO])


def test_a_store_unreachable_from_the_start_measures_anyway_and_prints_no_password(convbench, tmp_path, capsys):
    port = free_port()    # nothing listens there
    code = convbench("algo=pytorch", *QUICK, f"tracking.uri=http://alice:{SECRET}@127.0.0.1:{port}",
                     "tracking.retry_s=0")
    out = capsys.readouterr()
    assert code == 1
    assert SECRET not in out.out + out.err
    assert f"the tracking store http://alice:***@127.0.0.1:{port} is unreachable" in out.err
    assert "NOT LOGGED" in out.out and "make sync" in out.out
    (entry,) = outbox.entries([tmp_path / "outputs"])
    record = outbox.read(entry)
    assert record.run_id is None and SECRET not in (entry / outbox.RECORD).read_text()
    assert record.metrics[contract.LATENCY_MS] > 0 and (entry / outbox.ARTIFACTS / contract.A_CONFIG).is_file()
    assert SECRET not in (entry / outbox.ARTIFACTS / contract.A_CONFIG).read_text()


# --- against a real `mlflow server` -----------------------------------------------------------

class _Restarting:
    """Kills the server when the first job starts logging its results; starts it again, same port and
    store, after ``down_s`` (None: never)."""

    def __init__(self, monkeypatch, tmp_path, store, port, process, down_s):
        self.tmp_path, self.store, self.port, self.process, self.down_s = tmp_path, store, port, process, down_s
        self.restarted, self.fired = None, False
        real = outbox.deliver

        def deliver(record, *args, **kwargs):
            if not self.fired:
                self.fired = True
                stop_group(self.process)
                if down_s is not None:
                    threading.Thread(target=self._restart, daemon=True).start()
            return real(record, *args, **kwargs)

        monkeypatch.setattr(outbox, "deliver", deliver)

    def _restart(self):
        time.sleep(self.down_s)
        self.restarted = start_server(self.tmp_path, self.store, self.port)


@pytest.mark.slow   # two server starts and a 20 s outage: about 90 s on 2 cores
def test_server_killed_and_restarted_within_60_s_loses_nothing(convbench, tmp_path, monkeypatch, capsys):
    store, port = f"sqlite:///{tmp_path / 'server.db'}", free_port()
    restarting = _Restarting(monkeypatch, tmp_path, store, port, start_server(tmp_path, store, port), down_s=20)
    url = f"http://alice:{SECRET}@127.0.0.1:{port}"
    try:
        code = convbench("-m", "algo=im2col,pytorch", *QUICK, f"tracking.uri={url}", "tracking.experiment=restart")
        out = capsys.readouterr()
        assert code == 0, out.err[-3000:]
        assert "2 of 2 jobs ok" in out.out and "retrying in" in out.err
        assert SECRET not in out.out + out.err
        runs = runs_of(f"http://127.0.0.1:{port}", "restart")
    finally:
        if restarting.restarted is not None:
            stop_group(restarting.restarted)
    assert not list(tmp_path.rglob(outbox.OUTBOX_DIR))
    parents = [r for r in runs if tags_of(r)[contract.T_RUN_KIND] == "parent"]
    children = [r for r in runs if tags_of(r)[contract.T_RUN_KIND] == "job"]
    assert len(parents) == 1 and len(children) == 2
    assert {r["info"]["status"] for r in runs} == {"FINISHED"}
    for child in children:
        metrics = {m["key"] for m in child["data"]["metrics"]}
        assert {contract.LATENCY_MS, contract.MAX_REL_ERR, contract.BASELINE_LATENCY_MS} <= metrics
        params = {p["key"]: p["value"] for p in child["data"]["params"]}
        assert params["tracking.uri"] == f"http://alice:***@127.0.0.1:{port}"
        assert not any(SECRET in str(v) for v in [*params.values(), *tags_of(child).values()])
    for run, artifact in [(children[0], contract.A_CONFIG), (parents[0], "multirun.yaml")]:
        text = rest(f"http://127.0.0.1:{port}/get-artifact?path={artifact}&run_uuid={run['info']['run_id']}")
        assert "alice:***@127.0.0.1" in text.replace("\\", "") and SECRET not in text


@pytest.mark.slow   # two server starts: about 60 s on 2 cores
def test_server_down_for_good_the_outbox_uploads_complete_runs_later(convbench, tmp_path, monkeypatch, capsys):
    store, port = f"sqlite:///{tmp_path / 'server.db'}", free_port()
    _Restarting(monkeypatch, tmp_path, store, port, start_server(tmp_path, store, port), down_s=None)
    url, sweep_dir = f"http://alice:{SECRET}@127.0.0.1:{port}", tmp_path / "sweep"
    code = convbench("-m", "algo=im2col,pytorch", *QUICK, f"tracking.uri={url}", "tracking.experiment=down",
                     "tracking.retry_s=3", f"hydra.sweep.dir={sweep_dir}")
    out = capsys.readouterr()
    assert code == 1
    assert "NOT LOGGED, kept in the outbox" in out.err and SECRET not in out.out + out.err
    entries = outbox.entries([sweep_dir])
    assert entries and not any(SECRET in (e / outbox.RECORD).read_text() for e in entries)
    server = start_server(tmp_path, store, port)
    try:
        refused = subprocess.run([sys.executable, "-m", "experiments.tracking.outbox", str(sweep_dir)], cwd=REPO,
                                 capture_output=True, text=True)
        assert refused.returncode == 1 and "give --tracking-uri" in refused.stderr
        synced = subprocess.run([sys.executable, "-m", "experiments.tracking.outbox", str(sweep_dir),
                                 "--tracking-uri", url], cwd=REPO, capture_output=True, text=True)
        assert synced.returncode == 0, synced.stderr
        assert SECRET not in synced.stdout + synced.stderr
        runs = runs_of(f"http://127.0.0.1:{port}", "down")
    finally:
        stop_group(server)
    assert outbox.entries([sweep_dir]) == []
    assert {r["info"]["status"] for r in runs} == {"FINISHED"} and len(runs) == 3
    for child in (r for r in runs if tags_of(r)[contract.T_RUN_KIND] == "job"):
        assert {m["key"] for m in child["data"]["metrics"]} >= {contract.LATENCY_MS, contract.MAX_REL_ERR}
        assert tags_of(child)[contract.T_STATUS] == "ok" and contract.T_OUTBOX in tags_of(child)
        listed = rest(f"http://127.0.0.1:{port}/api/2.0/mlflow/artifacts/list?run_id={child['info']['run_id']}")
        assert {f["path"] for f in listed["files"]} >= {contract.A_CONFIG, contract.A_LAYERS, contract.A_SAMPLES_DIR}
