"""`make report` when the store cannot give it what it needs: clear messages, non-zero exits."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from analysis.report import main
from analysis.store import NoRunsError, StoreUnreachableError
from tests.report_fixtures import SyntheticStore, sparse_store, timing

REPO = Path(__file__).resolve().parents[1]


def test_empty_store_says_how_to_make_runs(tmp_path, capsys):
    store = SyntheticStore(tmp_path)  # an experiment, no runs
    code = main(["--tracking-uri", store.uri, "--out", str(tmp_path / "reports")])
    message = capsys.readouterr().err
    assert code == NoRunsError.exit_code != 0
    assert "No runs" in message and "make run" in message
    assert not (tmp_path / "reports" / "report.md").exists()


def test_missing_sqlite_file_is_not_created(tmp_path, capsys):
    db = tmp_path / "nothing-here.db"
    code = main(["--tracking-uri", f"sqlite:///{db}", "--out", str(tmp_path / "reports")])
    assert code == NoRunsError.exit_code
    assert "make run" in capsys.readouterr().err
    assert not db.exists()


def test_unknown_experiment_names_the_ones_there(tmp_path, capsys):
    store = sparse_store(tmp_path)
    code = main(["--tracking-uri", store.uri, "--experiment", "nope", "--out", str(tmp_path / "r")])
    message = capsys.readouterr().err
    assert code == NoRunsError.exit_code
    assert "'nope'" in message and "convbench-test" in message


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the with-block ends


def test_unreachable_server_fails_fast_with_a_clear_error(tmp_path):
    uri = f"http://127.0.0.1:{_closed_port()}"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("MLFLOW_HTTP_REQUEST_MAX_RETRIES", None)  # the CLI must cap retries itself
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "analysis.report", "--tracking-uri", uri, "--out", str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - started
    assert result.returncode == StoreUnreachableError.exit_code
    assert f"Cannot reach the MLflow tracking store at {uri}" in result.stderr
    assert "Traceback" not in result.stderr
    assert elapsed < 60  # without the retry cap MLflow retries with back-off for minutes


def test_older_runs_without_spread_energy_or_layers_still_report(tmp_path):
    store = sparse_store(tmp_path)
    out = tmp_path / "reports"
    assert main(["--tracking-uri", store.uri, "--out", str(out)]) == 0
    e2e = pd.read_csv(next((out / "tables").glob("end-to-end_*.csv")))
    assert list(e2e.columns) == ["technique", "median [ms]", "PyTorch same job [ms]",
                                 "speedup vs PyTorch [×]", "protocol", "run"]
    assert e2e.set_index("technique").loc["im2col+vendor", "speedup vs PyTorch [×]"] == pytest.approx(2.0)
    markdown = (out / "report.md").read_text()
    assert "`latency_p90_ms` was not logged by these runs" in markdown
    assert "Pruning" not in markdown and "Quantization" not in markdown
    assert "Per-layer" not in markdown and "Roofline" not in markdown


@pytest.mark.parametrize("uri,named", [("foo://bar", "unknown scheme 'foo://'"), ("file:///tmp/mlruns", "file store"),
                                       ("", "is empty")])
def test_a_uri_no_store_can_be_read_from_exits_2_with_one_message(tmp_path, capsys, uri, named):
    code = main(["--tracking-uri", uri, "--out", str(tmp_path / "reports")])
    err = capsys.readouterr().err
    assert code == 2 and named in err and err.count("\n") == 1


@pytest.mark.parametrize("content,named", [(b"SQLite format 3\x00" + bytes(range(256)) * 16, "not a readable SQLite"),
                                           (None, "not an MLflow store (tables: invoices)")], ids=["corrupt", "foreign"])
def test_a_corrupt_or_foreign_sqlite_file_exits_2_and_is_left_untouched(tmp_path, capsys, content, named):
    import hashlib
    import sqlite3
    db = tmp_path / "store.db"
    if content is None:
        with sqlite3.connect(db) as connection:
            connection.execute("CREATE TABLE invoices (id INTEGER)")
        connection.close()
    else:
        db.write_bytes(content)
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    code = main(["--tracking-uri", f"sqlite:///{db}", "--out", str(tmp_path / "reports")])
    err = capsys.readouterr().err
    assert code == 2 and named in err and str(db) in err and "Traceback" not in err
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before


def test_header_counts_the_unfinished_runs_its_notes_skip(tmp_path):
    store = sparse_store(tmp_path)
    crashed = store.job("kn2row", "vendor", status="running", metrics=timing(4.0, spread=False))
    store.client.update_run(crashed, status="RUNNING")     # a job that died before logging its result
    out = tmp_path / "reports"
    assert main(["--tracking-uri", store.uri, "--out", str(out)]) == 0
    markdown = (out / "report.md").read_text()
    assert "3 job runs (2 ok, 0 failed, 1 unfinished)" in markdown
    assert "1 unfinished run(s) were skipped" in markdown
