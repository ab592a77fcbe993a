"""Bad input, single run or sweep, Hydra's own errors included: exit 2 before any work, one message naming
the key, the bad value and what is valid, never a traceback. (`make bench-bad-inputs` tries them all.)"""
from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from experiments.harness import validate
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
    (["model.input_size=inf"], "model.input_size=inf (float): expected a positive int or [height, width]"),
    (["tracking.uri=http://127.0.0.1:99999"], "its port is not an int in [1, 65535]"),
    (["+" + "k" * 300 + "=1"], "a name of 300 bytes, too long for a file name"),    # Hydra opens a file of that name
    (["model=resnet18", "model.name=squeezenet1_1", "model.input_size=16"], "valid: at least 17"),
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
    (["hydra/launcher=joblib", "hydra.launcher.timeout=inf"], "hydra.launcher.timeout=inf (float): expected a finite number in (0, inf) or null"),
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


# --- one schema: every numeric key finite and in range, lists of the right type, before any work ---------------

def _numeric_leaves(node, prefix=""):
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _numeric_leaves(value, name + ".")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield name


def test_every_numeric_key_of_every_preset_is_in_the_one_schema():
    """A numeric key that is not in validate.TYPED takes inf, nan or any range unchecked."""
    from omegaconf import OmegaConf
    leaves = set()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        for group in ("model", "bench", "prune", "quant", "energy", "tuning", "accuracy", "tracking"):
            for preset in sorted(p.stem for p in (REPO / "conf" / group).glob("*.yaml") if p.stem != "base"):
                extra = ["algo=auto"] if group == "tuning" else []
                cfg = compose("config", overrides=[f"{group}={preset}", *extra])
                leaves |= set(_numeric_leaves(OmegaConf.to_container(cfg, resolve=True)))
    assert leaves and leaves <= set(validate.TYPED), sorted(leaves - set(validate.TYPED))


@pytest.fixture(scope="module")
def composed_auto():
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("config", overrides=[*BASE, "algo=auto", "energy=codecarbon", "quant=int8", "prune=unstructured",
                                            "tracking.uri=sqlite:///mlflow.db"])


NUMERIC = [key for key, (check, _) in validate.TYPED.items() if check(1) or check(0.5) or check(2**20)]


@pytest.mark.parametrize("key", NUMERIC)
@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan")])
def test_every_numeric_key_refuses_infinite_and_nan(composed_auto, key, bad):
    from omegaconf import OmegaConf
    cfg = composed_auto.copy()
    OmegaConf.update(cfg, key, bad, force_add=True)
    with pytest.raises(ConfigError) as error:
        validate.check_config(cfg)
    assert str(error.value).startswith(f"{key}={bad!r} (float): expected ") and "finite" in str(error.value) \
        or "int" in str(error.value)


@pytest.mark.parametrize("overrides,named", [
    (["model.input_size=inf"], ["model.input_size=inf (float)", "a positive int or [height, width]"]),
    (["model.input_size=[8,nan]"], ["model.input_size=[8, nan]", "a positive int"]),
    (["bench.flush_mb=inf"], ["bench.flush_mb=inf (float)", "a finite number in [0, inf)"]),
    (["bench.model.max_time_s=inf"], ["bench.model.max_time_s=inf", "finite"]),
    (["tracking.retry_s=nan"], ["tracking.retry_s=nan", "a finite number in [0, inf)"]),
    (["seed=-1"], ["seed=-1", "an int in [0, 18446744073709551615]"]),
    (["quant=int8", "quant.skip=[first,2]"], ["quant.skip=['first', 2]", "each item a non-empty string"]),
    (["algo=auto", "tuning.tiles=[16,a]"], ["tuning.tiles=[16, 'a']", "each item an int >= 1"]),
    (["algo=auto", "tuning.rungs=[1.5]"], ["tuning.rungs=[1.5]", "each item a non-empty string"]),
    (["tracking.experiment=" + "e" * 300], ["tracking.experiment='eeee", "255"]),
    (["+" + "k" * 251 + "=1"], ["k" * 80, "MLflow refuses this key", "250"]),
])
def test_bad_values_are_refused_from_the_one_schema(tmp_path, overrides, named):
    with pytest.raises(ConfigError) as error:
        job_spec(_composed(tmp_path, overrides))
    for text in named:
        assert text in str(error.value), str(error.value)


@pytest.mark.parametrize("uri,named", [
    ("http://head:99999", "its port is not an int in [1, 65535]"),
    ("http://head:0", "its port is not an int in [1, 65535]"),
    ("https://head:port", "its port is not an int in [1, 65535]"),
    ("postgresql+psycopg://u@db:70000/mlflow", "its port is not an int in [1, 65535]"),
    ("mysql://u@db/mlflow", "its database driver is not installed (No module named 'MySQLdb')"),
    ("postgresql+psycopg2://u@db/mlflow", "its database driver is not installed (No module named 'psycopg2')"),
    ("postgresql+nodriver://u@db/mlflow", "Can't load plugin"),
    ("sqlite:////tmp/" + "d" * 256 + ".db", "a name of 259 bytes in it, over the file system's 255"),
])
def test_uris_a_store_would_fail_on_later_are_refused(uri, named):
    with pytest.raises(TrackingUriError) as error:
        check_tracking_uri(uri)
    assert named in str(error.value)


@pytest.mark.parametrize("model,size,smallest", [("squeezenet1_1", (16, 16), 17), ("alexnet", (32, 64), 63),
                                                 ("vit_b_16", (32, 32), None)])
def test_an_input_size_too_small_for_the_model_is_refused_with_the_smallest_it_takes(model, size, smallest):
    """The shape check on the meta device: what the model's pooling would refuse after minutes of setup."""
    from experiments.harness.memory import _meta_forward_fails, check_input_size
    with pytest.raises(ConfigError) as error:
        check_input_size(model, size)
    assert f"model.input_size={list(size)}: {model} cannot take" in str(error.value)
    if smallest is None:
        assert "valid: 224" in str(error.value)
    else:
        assert f"valid: at least {smallest}" in str(error.value)
        assert _meta_forward_fails(model, (smallest - 1,) * 2) and not _meta_forward_fails(model, (smallest,) * 2)
    check_input_size(model, (224, 224))


def test_the_cold_cache_flush_buffer_counts_in_the_memory_estimate(tmp_path):
    from experiments.harness.memory import check_job
    cold = ["bench.cache_mode=cold", "bench.flush_mb=100000000"]     # 95 TiB: no machine has it free
    with pytest.raises(ConfigError) as error:
        check_job(job_spec(_composed(tmp_path, cold)))
    assert "bench.flush_mb=1e+08: the cold-cache flush buffer" in str(error.value)
    assert "bench.cache_mode=hot" in str(error.value)
    check_job(job_spec(_composed(tmp_path, ["bench.cache_mode=hot", "bench.flush_mb=100000000"])))   # not allocated


@pytest.mark.parametrize("launcher,named", [
    (["hydra/launcher=joblib", "hydra.launcher.timeout=inf"], "hydra.launcher.timeout=inf (float): expected a finite number in (0, inf) or null"),
    (["hydra/launcher=joblib", "hydra.launcher.timeout=-5"], "hydra.launcher.timeout=-5.0 (float)"),
    (["hydra/launcher=joblib", "hydra.launcher.batch_size=0"], "hydra.launcher.batch_size='0' (str): expected an int >= 1"),
    (["hydra/launcher=submitit_slurm", "hydra.launcher.timeout_min=0"], "hydra.launcher.timeout_min=0 (int): expected"),
    (["hydra/launcher=submitit_slurm", "hydra.launcher.array_parallelism=0"], "hydra.launcher.array_parallelism=0"),
    (["hydra/launcher=submitit_local", "hydra.launcher.nodes=0"], "hydra.launcher.nodes=0 (int): expected an int >= 1"),
])
def test_launcher_settings_are_checked_from_the_launchers_schema(launcher, named):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[*BASE, *launcher], return_hydra_config=True)
    with pytest.raises(ConfigError) as error:
        validate.check_launcher(cfg)
    assert named in str(error.value)
