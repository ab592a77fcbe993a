"""A sweep logged to a real `mlflow server` on 127.0.0.1, listed by its REST API."""
import pytest

from experiments.tracking import contract
from tests.servers import make_server, rest, runs_of, tags_of

SMALL = ["model.input_size=32", "backend=numpy", "bench=smoke", "bench.model.warmup=1", "bench.layer.warmup=1",
         "bench.layer.min_samples=1", "energy=off"]


@pytest.fixture
def mlflow_server(tmp_path):
    with make_server(tmp_path, f"sqlite:///{tmp_path}/server.db") as url:
        yield url


def test_sweep_logged_to_an_mlflow_server_is_listed_by_its_rest_api(mlflow_server, convbench):
    code = convbench("-m", "algo=pytorch,scalar", *SMALL, f"tracking.uri={mlflow_server}",
                     "tracking.experiment=server-test")
    assert code == 0
    runs = runs_of(mlflow_server, "server-test")
    tags = [tags_of(run) for run in runs]
    parents = [t for t in tags if t.get(contract.T_RUN_KIND) == "parent"]
    children = [t for t in tags if t.get(contract.T_RUN_KIND) == "job"]
    assert len(parents) == 1 and len(children) == 2
    parent_id = [r["info"]["run_id"] for r, t in zip(runs, tags) if t.get(contract.T_RUN_KIND) == "parent"][0]
    assert all(t["mlflow.parentRunId"] == parent_id and t[contract.T_STATUS] == "ok" for t in children)
    assert all(r["info"]["status"] == "FINISHED" for r in runs)
    child = next(r for r, t in zip(runs, tags) if t.get(contract.T_RUN_KIND) == "job")
    metrics = {m["key"] for m in child["data"]["metrics"]}
    assert {contract.LATENCY_MS, contract.BASELINE_LATENCY_MS, contract.MAX_REL_ERR} <= metrics
    listed = rest(f"{mlflow_server}/api/2.0/mlflow/artifacts/list?run_id={child['info']['run_id']}")
    assert {contract.A_CONFIG, contract.A_LAYERS} <= {f["path"] for f in listed.get("files", [])}
