"""The Makefile passes user values whole (spaces, quotes) and keeps the store password off the command line."""
from __future__ import annotations

import subprocess

from tests.report_fixtures import sparse_store

from .servers import REPO


def _make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", "-C", str(REPO), "-o", "setup", *args],
                          capture_output=True, text=True, timeout=300)


def test_report_takes_an_experiment_name_with_spaces_and_quotes(tmp_path):
    store = sparse_store(tmp_path)
    done = _make("report", f"TRACKING_URI={store.uri}", "EXPERIMENT=two words, it's")
    assert done.returncode == 2, done.stderr                      # make's code for the report's exit 3
    assert "No experiment named \"two words, it's\"" in done.stderr and "convbench-test" in done.stderr


def test_server_refuses_a_password_in_the_store_uri():
    done = _make("server", "BACKEND_STORE_URI=postgresql://mlflow:hunter2@db:5432/mlflow")
    assert done.returncode != 0
    assert "BACKEND_STORE_URI holds a password" in done.stderr and "PGPASSWORD" in done.stderr
    assert "mlflow server" not in done.stdout                     # refused before the server's command line
