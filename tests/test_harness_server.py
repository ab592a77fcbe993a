"""A sweep logged to a real `mlflow server` on 127.0.0.1, listed by its REST API."""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from experiments.tracking import contract

SMALL = ["model.input_size=32", "backend=numpy", "bench=smoke", "bench.model.warmup=1", "bench.layer.warmup=1",
         "bench.layer.min_samples=1", "energy=off"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()


@pytest.fixture
def mlflow_server(tmp_path):
    port = _free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    server = subprocess.Popen(
        [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path}/server.db", "--artifacts-destination", str(tmp_path / "art")],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "server.log", "w"))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                if _get(f"{url}/health").strip() == "OK":
                    break
            except OSError:
                pass
            if server.poll() is not None or time.time() > deadline:
                pytest.fail(f"mlflow server did not start: {(tmp_path / 'server.log').read_text()[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_sweep_logged_to_an_mlflow_server_is_listed_by_its_rest_api(mlflow_server, convbench):
    code = convbench("-m", "algo=pytorch,scalar", *SMALL, f"tracking.uri={mlflow_server}",
                     "tracking.experiment=server-test")
    assert code == 0
    experiment = json.loads(_get(f"{mlflow_server}/api/2.0/mlflow/experiments/get-by-name?experiment_name=server-test"))
    experiment_id = experiment["experiment"]["experiment_id"]
    runs = json.loads(_get(f"{mlflow_server}/api/2.0/mlflow/runs/search",
                           {"experiment_ids": [experiment_id], "max_results": 100}))["runs"]
    tags = [{t["key"]: t["value"] for t in run["data"].get("tags", [])} for run in runs]
    parents = [t for t in tags if t.get(contract.T_RUN_KIND) == "parent"]
    children = [t for t in tags if t.get(contract.T_RUN_KIND) == "job"]
    assert len(parents) == 1 and len(children) == 2
    parent_id = [r["info"]["run_id"] for r, t in zip(runs, tags) if t.get(contract.T_RUN_KIND) == "parent"][0]
    assert all(t["mlflow.parentRunId"] == parent_id and t[contract.T_STATUS] == "ok" for t in children)
    assert all(r["info"]["status"] == "FINISHED" for r in runs)
    child = next(r for r, t in zip(runs, tags) if t.get(contract.T_RUN_KIND) == "job")
    metrics = {m["key"] for m in child["data"]["metrics"]}
    assert {contract.LATENCY_MS, contract.BASELINE_LATENCY_MS, contract.MAX_REL_ERR} <= metrics
    listed = json.loads(_get(f"{mlflow_server}/api/2.0/mlflow/artifacts/list?run_id={child['info']['run_id']}"))
    assert {contract.A_CONFIG, contract.A_LAYERS} <= {f["path"] for f in listed.get("files", [])}
