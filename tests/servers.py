"""Helpers of the tests that start servers on 127.0.0.1: `make server` (mlflow) and its REST API."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rest(url: str, body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read().decode()
    return json.loads(text) if text.strip().startswith(("{", "[")) else text


def stop_group(process: subprocess.Popen) -> None:
    """Stop a process started with start_new_session=True, and everything it started."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        except ProcessLookupError:
            pass


def start_server(tmp_path: Path, backend_store_uri: str, port: int, timeout_s: float = 90) -> subprocess.Popen:
    """`make server` with this store on this port of 127.0.0.1, once it answers /health."""
    return _start_make(tmp_path, "server", port, timeout_s, f"BACKEND_STORE_URI={backend_store_uri}",
                       f"ARTIFACTS_DESTINATION={tmp_path / 'artifacts'}", "SERVER_HOST=127.0.0.1", "SERVER_WORKERS=1")


def _start_make(tmp_path: Path, target: str, port: int, timeout_s: float, *variables: str) -> subprocess.Popen:
    log = tmp_path / f"{target}-{time.time():.0f}.log"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    process = subprocess.Popen(
        ["make", "--no-print-directory", "-C", str(REPO), target, *variables, f"SERVER_PORT={port}",
         f"PYTHON={sys.executable}"],
        env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout_s
    while True:
        try:
            if str(rest(f"{url}/health")).strip() == "OK":
                return process
        except OSError:
            pass
        if process.poll() is not None or time.time() > deadline:
            stop_group(process)
            pytest.fail(f"make {target} did not come up: {log.read_text()[-3000:]}")
        time.sleep(0.3)


@contextmanager
def make_server(tmp_path: Path, backend_store_uri: str, timeout_s: float = 90):
    """`make server` with this store on a free port of 127.0.0.1; yields its URL."""
    port = free_port()
    process = start_server(tmp_path, backend_store_uri, port, timeout_s)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_group(process)


@contextmanager
def make_ui(tmp_path: Path, tracking_uri: str, timeout_s: float = 90):
    """`make ui` on this store on a free port of 127.0.0.1; yields its URL."""
    port = free_port()
    process = _start_make(tmp_path, "ui", port, timeout_s, f"TRACKING_URI={tracking_uri}")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_group(process)


def runs_of(url: str, experiment: str) -> list[dict]:
    found = rest(f"{url}/api/2.0/mlflow/experiments/get-by-name?experiment_name={experiment}")
    experiment_id = found["experiment"]["experiment_id"]
    runs, token = [], None
    while True:
        body = {"experiment_ids": [experiment_id], "max_results": 500, **({"page_token": token} if token else {})}
        page = rest(f"{url}/api/2.0/mlflow/runs/search", body)
        runs += page.get("runs", [])
        token = page.get("next_page_token")
        if not token:
            return runs


def tags_of(run: dict) -> dict:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def metrics_of(run: dict) -> dict:
    return {m["key"]: m["value"] for m in run["data"].get("metrics", [])}


@pytest.fixture
def fresh_joblib_workers():
    """joblib keeps its loky worker processes for the next Parallel call of this process; a sweep's
    workers carry its working directory and environment, so each test gets its own and stops them."""
    from joblib.externals.loky import get_reusable_executor
    get_reusable_executor().shutdown(wait=True)
    yield
    get_reusable_executor().shutdown(wait=True)
