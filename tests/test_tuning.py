"""algo=auto and its tuning database: early dropping, reuse across processes, invalidation when a
kernel source changes, concurrent writers, and a whole run that measures nothing the second time."""
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from experiments.conv import Variant
from experiments.measure.timing import CpuClock
from experiments.runtime import resolve
from experiments.tracking import contract
from experiments.tuning import (TuningDatabase, TuningEntry, TuningKey, build_tuned_model, candidates_for,
                                tune_layer, tune_model, tuning_spec)
from experiments.tuning import autotune
from experiments.tuning.database import on_network_filesystem
from tests.tuner_clock import clock_follows_candidates

REPO = Path(__file__).resolve().parents[1]
TOL = 1e-4


def _small_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1)).eval()


def _inputs(model, x):
    convs = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    captured = {}
    hooks = [m.register_forward_pre_hook(lambda mod, args, n=name: captured.__setitem__(n, args[0].clone()))
             for name, m in convs]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    return convs, captured


def test_candidates_follow_the_runtime_and_the_filter():
    spec = tuning_spec({"db": "x.db", "gemms": ["vendor", "blocked", "sparse"], "rungs": ["blocked", "fold"],
                        "tiles": [8, 32]})
    numpy = [c.label for c in candidates_for(resolve("numpy"), spec, sparse=False)]
    assert numpy == ["im2col/vendor/fp32", "kn2row/vendor/fp32", "scalar/fp32"]          # no kernels: no blocked GEMM
    pruned = [c.label for c in candidates_for(resolve("numpy"), spec, sparse=True)]   # a filter with zeros
    assert pruned == ["im2col/vendor/fp32", "im2col/sparse/fp32", "kn2row/vendor/fp32", "kn2row/sparse/fp32",
                      "scalar/fp32"]
    emulator = [c.label for c in candidates_for(resolve("emulator"), spec, sparse=False)]
    assert emulator == ["im2col/vendor/fp32", "im2col/blocked-t8/fp32", "im2col/blocked-t32/fp32",
                        "im2col/blocked-fold-t8/fp32", "im2col/blocked-fold-t32/fp32", "kn2row/vendor/fp32",
                        "kn2row/blocked-t8/fp32", "kn2row/blocked-t32/fp32", "kn2row/blocked-fold-t8/fp32",
                        "kn2row/blocked-fold-t32/fp32", "scalar/fp32"]
    default = tuning_spec({"db": "x.db"})   # rungs and tiles of conf/tuning/default.yaml
    assert default.rungs == ("blocked", "warptile", "splitk", "fold") and default.tiles == (8, 16, 32)
    assert all(Variant.parse(label).label == label for label in emulator + pruned)
    with pytest.raises(ValueError, match="no candidate on backend 'numpy'"):
        candidates_for(resolve("numpy"), tuning_spec({"db": "x.db", "algos": ["im2col"], "gemms": ["blocked"]}))


@pytest.mark.parametrize("node,message", [
    ({"db": "t.db", "algos": ["im2col", "winograd"]}, "'winograd' is not valid"),
    ({"db": "t.db", "tiles": [12]}, "tiles"),
    ({"db": "t.db", "rungs": ["fastest"]}, "tuning.rungs=.*'fastest' is not valid; choose from naive, blocked"),
    ({"db": "t.db", "gemms": ["auto_sparse"]}, "'auto_sparse' is not valid"),   # a rule, not a candidate
    ({"db": "t.db", "budget_s": 0}, "budget_s"),
    ({"db": "t.db", "journal_mode": "memory"}, "journal_mode"),
    ({"db": ""}, "path is empty"),
    ({"db": "t.db", "bugdet_s": 3}, "unknown keys"),
])
def test_bad_tuning_config_is_named(node, message):
    with pytest.raises(ValueError, match=message):
        tuning_spec(node)


class _ScriptedClock:
    """Every call of a candidate 'takes' its scripted time (the real call still runs, untimed)."""

    name = "scripted"

    def __init__(self, costs):
        self.costs, self.current = costs, None

    def synchronize(self):
        pass

    def time(self, fn):
        fn()
        return self.costs[self.current]


def test_clearly_slower_candidates_are_dropped_early_and_the_runner_up_is_named(monkeypatch):
    clock = _ScriptedClock({"im2col/vendor/fp32": 1.02e-3, "kn2row/vendor/fp32": 9e-3, "scalar/fp32": 1.0e-3})
    clock_follows_candidates(monkeypatch, clock)
    conv = nn.Conv2d(4, 8, 3, padding=1).eval()
    spec = tuning_spec({"db": "unused.db", "gemms": ["vendor"], "first_samples": 2, "warmup": 0})
    with torch.no_grad():
        entry = tune_layer(conv, "conv", torch.randn(1, 4, 8, 8), resolve("numpy"),
                           candidates_for(resolve("numpy"), spec), spec, clock, TOL, budget_s=60)
    assert entry.choice == "scalar/fp32" and entry.runner_up == "im2col/vendor/fp32"
    assert entry.choice_s == pytest.approx(1.0e-3) and entry.runner_up_s == pytest.approx(1.02e-3)
    kn2row = entry.results["kn2row/vendor/fp32"]
    assert kn2row["status"] == "dropped" and kn2row["round"] == 1 and kn2row["n"] == 2   # after its first round
    assert entry.results["scalar/fp32"]["round"] == entry.results["im2col/vendor/fp32"]["round"] == 2
    assert entry.results["scalar/fp32"]["n"] == 2 + 4                                          # samples doubled


def test_a_candidate_with_a_wrong_answer_is_never_chosen(monkeypatch):
    real_module = autotune.candidate_module

    def module(self, conv, name, runtime):
        inner = real_module(self, conv, name, runtime)
        return (lambda x: inner(x) * 1.01) if self.algo == "scalar" else inner
    monkeypatch.setattr(autotune, "candidate_module", module)
    conv = nn.Conv2d(4, 8, 3, padding=1).eval()
    spec = tuning_spec({"db": "unused.db", "algos": ["scalar", "im2col"], "gemms": ["vendor"]})
    with torch.no_grad():
        entry = tune_layer(conv, "conv", torch.randn(1, 4, 8, 8), resolve("numpy"),
                           candidates_for(resolve("numpy"), spec), spec, CpuClock(), TOL, budget_s=5)
    assert entry.choice == "im2col/vendor/fp32" and entry.runner_up is None
    failed = entry.results["scalar/fp32"]
    assert failed["status"] == "failed" and "above the tolerance" in failed["error"]


_REUSE = textwrap.dedent("""
    import json, sys, torch
    sys.path.insert(0, {tests!r})
    from test_tuning import _small_model, _inputs
    from experiments.measure.timing import CpuClock
    from experiments.runtime import resolve
    from experiments.tuning import tune_model, tuning_spec
    model = _small_model()
    convs, inputs = _inputs(model, torch.randn(1, 3, 12, 12))
    out = tune_model(model, convs, inputs, resolve("numpy"), tuning_spec({{"db": {db!r}}}), "fp32", CpuClock(), 1e-4)
    print(json.dumps({{"measured": out.measured, "reused": out.reused - out.reused_from_run,
                      "choices": [layer.entry.choice for layer in out.layers]}}))
""")


def test_another_process_reuses_the_database_and_measures_nothing(tmp_path):
    model = _small_model()
    convs, inputs = _inputs(model, torch.randn(1, 3, 12, 12))
    db = tmp_path / "tuning.db"
    spec = tuning_spec({"db": str(db), "budget_s": 2})
    first = tune_model(model, convs, inputs, resolve("numpy"), spec, "fp32", CpuClock(), TOL)
    assert (first.measured, first.reused) == (2, 1)      # the last two layers have one shape: measured once
    assert [layer.source for layer in first.layers] == ["measured", "measured", "reused"]
    assert first.reused_from_run == 1
    assert first.best_single is not None and first.best_single.label in first.single_conv_s()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", _REUSE.format(tests=str(REPO / "tests"), db=str(db))],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)   # this checkout
    assert done.returncode == 0, done.stderr
    second = json.loads(done.stdout.strip().splitlines()[-1])
    assert second == {"measured": 0, "reused": 3, "choices": [layer.entry.choice for layer in first.layers]}
    again = tune_model(model, convs, inputs, resolve("numpy"), tuning_spec({"db": str(db), "remeasure": True}),
                       "fp32", CpuClock(), TOL)
    assert (again.measured, again.reused) == (2, 1)       # remeasure: every shape once more


def test_a_kernel_source_change_invalidates_its_entries(tmp_path, monkeypatch):
    """On a runtime that runs the kernels (the emulator), the key holds the hash of hip/: an edit of
    a kernel makes every layer measured again; the old entries stay until pruned."""
    from experiments.runtime import sources
    hip = tmp_path / "hip"
    shutil.copytree(sources.HIP_DIR, hip, ignore=shutil.ignore_patterns("*.o", "*.so"))
    monkeypatch.setattr(sources, "HIP_DIR", hip)       # what kernel_source_hash() reads
    model = _small_model()
    convs, inputs = _inputs(model, torch.randn(1, 3, 6, 6))
    db = tmp_path / "tuning.db"
    spec = tuning_spec({"db": str(db), "algos": ["im2col", "scalar"], "gemms": ["vendor"], "budget_s": 1,
                        "first_samples": 1, "warmup": 0})
    runtime = resolve("emulator")

    def tune():
        return tune_model(model, convs, inputs, runtime, spec, "fp32", CpuClock(), TOL)
    assert (tune().measured, tune().measured) == (2, 0)
    with open(hip / "scalar_conv.hip", "a") as f:
        f.write("\n// an edit\n")
    changed = tune()
    assert (changed.measured, changed.reused) == (2, 1)
    with TuningDatabase(db) as database:
        hashes = {key.kernel_hash for key, _ in database.entries()}
        assert len(hashes) == 2 and sources.kernel_source_hash() in hashes
        assert database.delete_stale("emulator/emulated", sources.kernel_source_hash()) == 2
        assert {key.kernel_hash for key, _ in database.entries()} == {sources.kernel_source_hash()}


_WRITER = textwrap.dedent("""
    import importlib.util, sys
    # database.py alone (no torch): the writers start in a fraction of a second, and overlap
    spec = importlib.util.spec_from_file_location("tuning_database", sys.argv[3])
    database = sys.modules["tuning_database"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(database)
    writer = int(sys.argv[1])
    with database.TuningDatabase(sys.argv[2]) as db:
        for i in range(200):
            key = database.TuningKey("dev", "numpy/cpu", "none", f"shape{i % 20}", "fp32", 1, "a,b")
            label = f"writer{writer}-{i}"
            db.put(key, database.TuningEntry(label, writer + i / 1000, "runner", 1.0,
                                             {label: {"status": "chosen", "writer": writer, "median_s": writer + i / 1000}}))
            entry = db.get(key)
            assert entry is not None and entry.choice in entry.results, entry
    print("done", writer)
""")



def test_concurrent_writers_leave_the_database_consistent(tmp_path):
    db = tmp_path / "shared.db"
    source = REPO / "experiments" / "tuning" / "database.py"
    writers = [subprocess.Popen([sys.executable, "-c", _WRITER, str(n), str(db), str(source)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=REPO) for n in range(4)]
    for writer in writers:
        out, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
    with TuningDatabase(db) as database:
        assert database.integrity_check() == "ok"
        entries = database.entries()
    assert sorted(key.shape for key, _ in entries) == sorted(f"shape{i}" for i in range(20))   # one row per key
    for key, entry in entries:      # every row whole: its fields all from one write
        (label, result), = entry.results.items()
        assert label == entry.choice and entry.choice_s == result["median_s"]
        assert entry.choice.startswith(f"writer{result['writer']}-")


def test_network_file_systems_use_the_rollback_journal(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text("/dev/sda1 / ext4 rw 0 0\nserver:/home /home nfs4 rw 0 0\n"
                      "tmpfs /home/fast tmpfs rw 0 0\n")
    assert on_network_filesystem("/home/alice/tuning.db", mounts)
    assert not on_network_filesystem("/home/fast/tuning.db", mounts)
    assert not on_network_filesystem("/work/tuning.db", mounts)
    with TuningDatabase(tmp_path / "local.db") as local:
        assert local.journal_mode == "wal"
    with TuningDatabase(tmp_path / "forced.db", journal_mode="delete") as forced:
        forced.put(TuningKey("d", "r", "h", "s", "fp32", 1, "c"), TuningEntry("a", 1.0, None, None, {}))
        assert forced.get(TuningKey("d", "r", "h", "s", "fp32", 1, "c")).choice == "a"


SMALL = ["model=resnet18", "model.input_size=32", "backend=numpy", "bench=smoke", "bench.model.warmup=1",
         "bench.model.min_samples=3", "bench.layer.warmup=1", "bench.layer.min_samples=1", "energy=off"]


def test_algo_auto_run_records_choices_and_a_second_run_measures_nothing(convbench, tmp_path, capsys):
    from mlflow.tracking import MlflowClient
    uri, db = f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "tuning.db"
    for _ in range(2):
        assert convbench("algo=auto", *SMALL, f"tuning.db={db}", "tuning.budget_s=2", f"tracking.uri={uri}") == 0
    out = capsys.readouterr().out
    # the first run on an empty database: repeated shapes come from this run, none from the database
    assert "tuning 11 layers measured, 9 reused from this run (same shape as an earlier layer), 0 reused from " \
           "the database" in out
    assert "tuning 0 layers measured, 0 reused from this run (same shape as an earlier layer), 20 reused from " \
           "the database" in out
    client = MlflowClient(uri)
    first, second = sorted(client.search_runs([client.get_experiment_by_name("convbench").experiment_id]),
                           key=lambda r: r.info.start_time)
    # resnet18 at 32x32: 20 conv layers of 11 shapes; the first run measures each shape once
    assert (first.data.metrics[contract.TUNING_MEASURED], first.data.metrics[contract.TUNING_REUSED]) == (11, 9)
    assert (second.data.metrics[contract.TUNING_MEASURED], second.data.metrics[contract.TUNING_REUSED]) == (0, 20)
    for run in (first, second):
        metrics = run.data.metrics
        assert set(contract.AUTO_METRICS) <= set(metrics)
        assert metrics[contract.SPEEDUP_VS_BEST_SINGLE] == pytest.approx(
            metrics[contract.BEST_SINGLE_LATENCY_MS] / metrics[contract.LATENCY_MS])
        assert run.data.tags[contract.T_BEST_SINGLE] in {"im2col/vendor/fp32", "kn2row/vendor/fp32", "scalar/fp32"}
        assert run.data.tags[contract.T_TIMING] == "measured" and run.info.run_name == "resnet18/auto/fp32/dense"
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {contract.A_LAYERS, contract.A_TUNING_DB} <= artifacts
    layers = pd.read_csv(client.download_artifacts(second.info.run_id, contract.A_LAYERS, str(tmp_path)))
    assert list(layers.columns) == list(contract.LAYER_COLUMNS) and len(layers) == 20
    assert layers["choice"].notna().all() and layers["runner_up"].notna().all()
    assert (layers["tuning"] == "reused").all()
    assert (layers["choice"] != layers["runner_up"]).all()
    snapshot = client.download_artifacts(second.info.run_id, contract.A_TUNING_DB, str(tmp_path / "snap"))
    with TuningDatabase(snapshot) as copy:
        assert len(copy.entries()) == 11 and copy.integrity_check() == "ok"


def test_algo_auto_on_the_emulator_is_tagged_emulated(convbench, tmp_path):
    from mlflow.tracking import MlflowClient
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    code = convbench("algo=auto", "backend=emulator", "model=resnet18", "model.input_size=16", "bench=smoke",
                     "bench.model.warmup=0", "bench.model.min_samples=1", "bench.layer.warmup=0",
                     "bench.layer.min_samples=1", "energy=off", "tuning.algos=[im2col,scalar]", "tuning.gemms=[blocked]",
                     "tuning.tiles=[16]", "tuning.rungs=[blocked,fold]", "tuning.warmup=0",
                     "tuning.first_samples=1", "tuning.budget_s=1", f"tuning.db={tmp_path}/t.db", f"tracking.uri={uri}")
    assert code == 0
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("convbench").experiment_id])
    assert run.data.tags[contract.T_TIMING] == "emulated" and run.data.tags[contract.T_BACKEND] == "emulator"
    with TuningDatabase(tmp_path / "t.db") as database:
        assert {key.runtime for key, _ in database.entries()} == {"emulator/emulated"}
        assert {key.kernel_hash for key, _ in database.entries()} != {"none"}
        results = [entry.results for _, entry in database.entries()]
    assert all({"im2col/blocked-t16/fp32", "im2col/blocked-fold-t16/fp32"} <= set(r) for r in results)   # both rungs


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_tuning_on_the_gpu_measures_blocked_tiles_by_device_events(tmp_path):
    from experiments.measure.timing import EventClock
    from experiments.runtime import gpu_available
    if not gpu_available():
        pytest.skip("no GPU visible to CuPy")
    model = _small_model().cuda()
    convs, inputs = _inputs(model, torch.randn(2, 3, 32, 32, device="cuda"))
    runtime = resolve("gpu")
    spec = tuning_spec({"db": str(tmp_path / "t.db"), "budget_s": 5})
    outcome = tune_model(model, convs, inputs, runtime, spec, "fp32", EventClock("torch"), TOL)
    assert (outcome.measured, outcome.reused) == (2, 1)
    results = outcome.layers[0].entry.results
    assert {"im2col/blocked-t8/fp32", "im2col/blocked-t16/fp32", "im2col/blocked-t32/fp32", "scalar/fp32",
            "im2col/blocked-fold-t16/fp32", "kn2row/blocked-splitk-t8/fp32"} <= set(results)
    assert all(r["status"] != "failed" for r in results.values()), results
    key = outcome.layers[0].key
    assert key.runtime.startswith("gpu/") and key.kernel_hash != "none" and key.batch == 2
    tuned = build_tuned_model(model, outcome, runtime)
    x = torch.randn(2, 3, 32, 32, device="cuda")
    with torch.no_grad():
        torch.testing.assert_close(tuned(x), model(x), rtol=1e-4, atol=1e-4)


def test_the_deprecated_tuning_kernels_key_still_names_the_rungs():
    with pytest.warns(FutureWarning, match="tuning.kernels is deprecated.*tuning.rungs"):
        spec = tuning_spec({"db": "t.db", "kernels": ["fold"]})
    assert spec.rungs == ("fold",)
