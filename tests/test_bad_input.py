"""Bad input, single run or sweep, Hydra's own errors included: exit 2 before any work, one message naming
the key, the bad value and what is valid, never a traceback. (`make bench-bad-inputs` tries them all.)"""
from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from experiments.harness.config import job_spec
from experiments.harness.errors import ConfigError
from experiments.tracking.uri import TrackingUriError, check_tracking_uri

from .servers import REPO

BASE = ["model=digits_cnn", "bench=smoke", "energy=off"]


def _composed(tmp_path, overrides):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("config", overrides=[*BASE, f"tracking.uri=sqlite:///{tmp_path / 'm.db'}", *overrides])


@pytest.mark.parametrize("overrides,named", [
    (["seed=abc"], ["seed='abc'", "an int"]),
    (["model.batch_size=true"], ["model.batch_size=True", "an int >= 1"]),
    (["model.batch_size=0"], ["model.batch_size=0", ">= 1"]),
    (["prune=unstructured", "prune.amount=abc"], ["prune.amount='abc'", "[0, 1)"]),
    (["prune=unstructured", "prune.amount=1.5"], ["prune.amount=1.5", "[0, 1)"]),
    (["bench.model.max_time_s=0"], ["bench.model.max_time_s=0", "(0, inf)"]),
    (["tracking.experiment="], ["tracking.experiment=''", "non-empty"]),
    (["seed=${oops}"], ["seed", "oops"]),
    (["energy=codecarbon", "energy.country_iso_code=XYZ"], ["energy.country_iso_code='XYZ'", "USA"]),
    (["energy=codecarbon", "energy.region=atlantis"], ["energy.region='atlantis'", "california"]),
    (["energy=codecarbon", "energy.country_iso_code=FRA", "energy.region=paris"], ["energy.region='paris'", "null"]),
    (["algo=auto", "tuning.remeasure=maybe"], ["tuning.remeasure='maybe'", "true or false"]),
])
def test_typed_keys_are_refused_naming_key_value_and_what_is_valid(tmp_path, overrides, named):
    with pytest.raises(ConfigError) as error:
        job_spec(_composed(tmp_path, overrides))
    for text in named:
        assert text in str(error.value)


@pytest.mark.parametrize("uri,named", [
    ("", "is empty"),
    ("sqlite:////nonexistent/dir/mlflow.db", "/nonexistent/dir does not exist"),
    ("/nonexistent/mlruns", "file store"),
    ("file:///tmp/mlruns", "file store"),
    ("foo://bar", "unknown scheme 'foo://'"),
    ("http://", "names no host"),
    ("sqlite://", "three slashes"),
])
def test_tracking_uris_that_hold_no_runs_are_refused(uri, named):
    with pytest.raises(TrackingUriError, match="sqlite:///|HOST:PORT") as error:
        check_tracking_uri(uri)
    assert named in str(error.value)


def test_tracking_uris_that_hold_runs_pass(tmp_path):
    for uri in (f"sqlite:///{tmp_path / 'a.db'}", "sqlite:///mlflow.db", "http://head:5000",
                "postgresql://mlflow@db:5432/mlflow", "postgresql+psycopg://mlflow@db/mlflow"):
        assert check_tracking_uri(uri) == uri


def test_a_password_in_a_refused_uri_is_not_repeated():
    with pytest.raises(TrackingUriError) as error:
        check_tracking_uri("foo://user:hunter2@host/x")
    assert "hunter2" not in str(error.value) and "user:***@host" in str(error.value)


@pytest.mark.parametrize("mode", ["single", "sweep"])
@pytest.mark.parametrize("overrides,named", [
    (["algo=im2coll"], "algo='im2coll' is not a choice of algo; valid: auto, im2col, kn2row, pytorch, scalar"),
    (["model=resnet19"], "model='resnet19' is not a choice of model; valid: densenet121, digits_cnn"),
    (["quant=int4"], "quant='int4' is not a choice of quant; valid: fp16, fp32, int8"),
    (["gemm.tiles=16"], "gemm.tiles=16: gemm has no key 'tiles'; its keys: name, tile"),
    (["algo=[im2col"], "cannot parse the override 'algo=[im2col'"),
    (["seed=abc"], "seed='abc' (str): expected an int"),
    (["model.batch_size=true"], "model.batch_size=True (bool): expected an int >= 1"),
    (["tracking.uri=sqlite:////nonexistent/dir/mlflow.db"], "the directory /nonexistent/dir does not exist"),
    (["model=resnet18", "model.batch_size=100000"],            # about 3,600 GiB: no machine has it free
     "model.batch_size=100000: resnet18/im2col/vendor/fp32/dense at 224x224 needs about"),
])
def test_run_py_exits_2_with_one_message_and_no_traceback(tmp_path, convbench, capsys, mode, overrides, named):
    store = tmp_path / "m.db"
    args = [*BASE, f"tracking.uri=sqlite:///{store}", f"hydra.sweep.dir={tmp_path / 'sweep'}",
            f"hydra.run.dir={tmp_path / 'run'}", *overrides]
    code = convbench(*(["-m"] if mode == "sweep" else []), *args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert named in err and "Traceback" not in err
    assert err.count("convbench:") == 1
    assert not store.exists()                      # nothing was logged, not even a store created


@pytest.mark.parametrize("launcher,named", [
    (["hydra/launcher=joblib", "hydra.launcher.n_jobs=0"], "hydra.launcher.n_jobs=0: expected a positive int"),
    (["hydra/launcher=submitit_slurm", "hydra.launcher.timeout_min=1"],
     "hydra.launcher.signal_delay_s=120: SLURM would send its time-limit warning at the jobs' start"),
])
def test_launcher_settings_are_refused_before_the_parent_run(tmp_path, convbench, capsys, launcher, named):
    store = tmp_path / "m.db"
    code = convbench("-m", *launcher, *BASE, f"tracking.uri=sqlite:///{store}", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    err = capsys.readouterr().err
    assert code == 2 and named in err and "Traceback" not in err
    assert not store.exists()


def test_hydra_full_error_still_gives_hydras_traceback(tmp_path, convbench, monkeypatch):
    """A user who set HYDRA_FULL_ERROR asked for the traceback."""
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    from hydra.errors import MissingConfigException
    with pytest.raises(MissingConfigException):
        convbench("algo=im2coll", f"hydra.run.dir={tmp_path / 'run'}")
