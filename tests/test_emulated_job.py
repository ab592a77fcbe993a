"""An emulated job (backend=emulator) checks correctness in full and times each target once: its timing
is not performance, so it is neither spent on nor logged as a distribution."""
from __future__ import annotations

import csv
from pathlib import Path

import mlflow

from experiments.conv.tolerance import RELATIVE_TOLERANCE
from experiments.measure.timing import ONE_CALL, Measurement, measure
from experiments.tracking import contract


def test_one_call_protocol_times_exactly_one_call_without_warmup():
    calls = []

    class Clock:
        name = "scripted"

        def synchronize(self):
            pass

        def time(self, fn):
            fn()
            return 0.5

    m = measure(lambda: calls.append(1), ONE_CALL, Clock(), "emulated/model")
    assert len(calls) == 1 and m.n == 1 and m.warmup == 0 and m.median == 0.5


def test_a_single_call_has_no_spread_in_its_stats_row():
    row = Measurement("emulated/model", (0.25,)).stats()
    assert row["n"] == 1 and row["median_ms"] == 250.0
    assert row["p10_ms"] is row["p90_ms"] is row["iqr_rel"] is row["std_ms"] is row["noisy"] is None
    spread = Measurement("x", (1.0, 2.0, 3.0)).stats()
    assert spread["p10_ms"] < spread["median_ms"] < spread["p90_ms"] and spread["iqr_rel"] > 0


def test_an_emulated_job_checks_every_layer_and_times_each_target_once(convbench, tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    # the protocol asks for warmup and many samples: the emulator times one call anyway
    code = convbench("model=digits_cnn", "model.input_size=8", "backend=emulator", "algo=im2col", "gemm=blocked",
                     "gemm.tile=8", "bench=smoke", "bench.model.warmup=3", "bench.model.min_samples=9",
                     "bench.layer.warmup=3", "bench.layer.min_samples=9", "energy=off", f"tracking.uri={uri}")
    assert code == 0
    out = capsys.readouterr().out
    assert "one timed call" in out and "emulated: not a performance number" in out
    assert "faster" not in out and "slower" not in out and "p10" not in out

    client = mlflow.tracking.MlflowClient(uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    metrics = run.data.metrics
    assert run.data.tags[contract.T_TIMING] == "emulated"
    assert metrics[contract.LATENCY_SAMPLES] == 1 and metrics[contract.LATENCY_MS] > 0
    for spread in (contract.LATENCY_P10_MS, contract.LATENCY_P90_MS, contract.LATENCY_IQR_REL,
                   contract.SPEEDUP_CI95_LOW, contract.SPEEDUP_CI95_HIGH):
        assert spread not in metrics, spread
    assert metrics[contract.MAX_REL_ERR] <= RELATIVE_TOLERANCE["fp32"]

    artifacts = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / "artifacts")))
    with open(artifacts / contract.A_LAYERS) as f:
        layers = list(csv.DictReader(f))
    assert len(layers) >= 2   # every conv layer checked alone against float64, and within the tolerance
    assert all(0 <= float(row["max_rel_err"]) <= RELATIVE_TOLERANCE["fp32"] for row in layers)
    with open(artifacts / contract.A_SAMPLES_DIR / "summary.csv") as f:
        timed = list(csv.DictReader(f))
    # ours and PyTorch's: the model and every layer, each one call, no warm-up
    assert len(timed) == 2 + 2 * len(layers)
    assert all(row["n"] == "1" and row["warmup"] == "0" and row["p10_ms"] == "" for row in timed)
