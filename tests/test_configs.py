"""Every config composes (Hydra's compose API); bad input gives a clear error before any work."""
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf

from experiments.conv import Variant
from experiments.harness.config import job_spec
from experiments.harness.errors import ConfigError
from experiments.runtime import gpu_available
from experiments.tracking import contract
from experiments.tracking.mlflow_log import REPO_ROOT, flatten, resolve_uri

CONF = REPO_ROOT / "conf"
GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir())
BASES = {"base"}   # what a group's presets inherit (defaults: [base]), not a choice of its own
CHOICES = [(group, p.stem) for group in GROUPS for p in sorted((CONF / group).glob("*.yaml")) if p.stem not in BASES]
EXPERIMENTS = [choice for group, choice in CHOICES if group == "experiment"]
NO_GPU = not gpu_available()


@pytest.fixture(scope="module")
def hydra_conf():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        yield


def _compose(*overrides, hydra=False):
    return compose("config", overrides=list(overrides), return_hydra_config=hydra)


def test_groups_of_the_design_are_there():
    assert {"model", "algo", "gemm", "backend", "bench", "tracking", "energy", "experiment", "quant", "prune"} <= set(GROUPS)
    assert {"resnet18", "resnet50", "vgg16", "mobilenet_v2", "shufflenet_v2_x1_0", "resnext50_32x4d",
            "squeezenet1_1", "densenet121"} <= {c for g, c in CHOICES if g == "model"}
    assert {c for g, c in CHOICES if g == "algo"} == {"pytorch", "im2col", "kn2row", "scalar", "auto"}
    assert {c for g, c in CHOICES if g == "backend"} == {"auto", "gpu", "emulator", "numpy"}
    assert {c for g, c in CHOICES if g == "bench"} == {"smoke", "default", "paper"}


def _needs_kernels(cfg) -> bool:
    return cfg.gemm.name == "blocked" and cfg.algo.name in ("im2col", "kn2row") and cfg.backend.name in ("auto", "numpy")


@pytest.mark.parametrize("group,choice", CHOICES)
def test_every_choice_composes_and_checks(hydra_conf, group, choice):
    cfg = _compose(f"{group}={choice}")
    if group not in ("experiment", "tracking"):
        assert cfg[group].name == choice
    flat = flatten(OmegaConf.to_container(cfg, resolve=True))
    for name in (contract.P_MODEL, contract.P_BATCH, contract.P_INPUT_SIZE, contract.P_ALGO, contract.P_GEMM,
                 contract.P_TILE, contract.P_BACKEND, contract.P_QUANT, contract.P_PRUNE, contract.P_PRUNE_AMOUNT,
                 contract.P_BENCH, contract.P_CACHE_MODE):
        assert name in flat, name
    if cfg.gemm.name == "custom":   # needs the user's kernel file (tests/test_custom_kernel.py runs one)
        with pytest.raises(ConfigError, match="gemm=custom needs your kernel file: gemm.source=PATH"):
            job_spec(cfg)
    elif (cfg.backend.name == "gpu" and NO_GPU) or (_needs_kernels(cfg) and NO_GPU):
        with pytest.raises(ConfigError):
            job_spec(cfg)
    else:
        spec = job_spec(cfg)
        assert spec.tolerance == {"fp32": 1e-4, "fp16": 1e-2, "int8": 1e-1}[cfg.quant.name]


def test_defaults_run_anywhere(hydra_conf):
    spec = job_spec(_compose())
    assert (spec.model, spec.variant, spec.backend, spec.energy) == ("resnet18", Variant("im2col", "vendor"), "auto",
                                                                    "codecarbon")
    assert spec.name == "resnet18/im2col/vendor/fp32/dense"
    assert spec.tracking_uri == contract.DEFAULT_TRACKING_URI
    assert spec.model_protocol.warmup >= 10 and spec.layer_protocol.warmup >= 10


def test_hydra_settings(hydra_conf):
    cfg = _compose(hydra=True)
    assert cfg.hydra.job.chdir is False
    assert "convbench_sweep" in cfg.hydra.callbacks


def test_run_names_follow_the_contract(hydra_conf):
    blocked = job_spec(_compose("gemm=blocked", "gemm.tile=32", "backend=emulator"))
    assert blocked.name == "resnet18/im2col/blocked-t32/fp32/dense"
    assert blocked.variant == Variant("im2col", "blocked", 32, "fp32", "blocked")
    fold = job_spec(_compose("gemm=blocked", "gemm.rung=fold", "backend=emulator"))
    assert fold.name == "resnet18/im2col/blocked-fold-t16/fp32/dense" and fold.variant.rung == "fold"
    assert fold.variant.params()["variant.rung"] == "fold"
    vendor = job_spec(_compose("gemm=vendor", "gemm.rung=fold", "backend=numpy"))   # a rung of blocked only
    assert vendor.name == "resnet18/im2col/vendor/fp32/dense" and vendor.variant.rung is None
    assert job_spec(_compose("algo=scalar", "backend=numpy")).name == "resnet18/scalar/fp32/dense"
    assert job_spec(_compose("algo=pytorch", "gemm=blocked")).name == "resnet18/pytorch/fp32/dense"


@pytest.mark.parametrize("overrides, message", [
    (("gemm=blocked", "gemm.rung=fastest", "backend=emulator"), "gemm.rung='fastest' is not supported; valid: naive"),
    (("gemm=blocked", "gemm.rung=fold", "quant=fp16", "backend=emulator"), "'fold' is a float32 rung"),
])
def test_bad_gemm_rung_is_named(hydra_conf, overrides, message):
    with pytest.raises(ConfigError, match=message):
        job_spec(_compose(*overrides))


def test_the_deprecated_gemm_kernel_key_still_names_the_rung(hydra_conf):
    """gemm.kernel (the key's former name) is read as gemm.rung, with a warning that names the new key."""
    with pytest.warns(FutureWarning, match=r"gemm.kernel is deprecated.*gemm.rung=fold"):
        fold = job_spec(_compose("gemm=blocked", "gemm.kernel=fold", "backend=emulator"))
    assert fold.variant.rung == "fold"


def test_experiment_presets_sweep_the_course_grid(hydra_conf):
    cfg = _compose("experiment=course", hydra=True)
    params = cfg.hydra.sweeper.params
    assert params.algo == "pytorch,im2col,kn2row,scalar" and params["gemm.tile"] == "8,16,32"
    assert cfg.tracking.experiment == "course-project"


@pytest.mark.parametrize("preset", EXPERIMENTS)
def test_every_experiment_preset_expands_to_jobs_that_all_check(hydra_conf, preset):
    """Each study's whole sweep, job by job, as run.py -m would check it (kernels on the emulator here)."""
    from experiments.harness.sweep import check_jobs, plan_overrides
    cfg = _compose(f"experiment={preset}", "backend=emulator", hydra=True)
    jobs = plan_overrides(cfg)
    assert jobs and all(f"experiment={preset}" in job for job in jobs)
    plan = check_jobs(cfg, jobs)                       # raises ConfigError naming any bad job
    assert len(plan) == len(jobs) and len({job["name"] for job in plan if job["duplicate_of"] is None}) > 1


def test_presets_inherit_their_group_base(hydra_conf):
    for group in ("model", "prune"):
        base = OmegaConf.load(CONF / group / "base.yaml")
        for choice in (c for g, c in CHOICES if g == group):
            text = (CONF / group / f"{choice}.yaml").read_text()
            assert "- base" in text, f"{group}/{choice}.yaml does not inherit {group}/base.yaml"
            assert set(_compose(f"{group}={choice}")[group]) == set(base), f"{group}/{choice}"
    assert _compose("bench=smoke").bench.cache_mode == _compose("bench=default").bench.cache_mode


def test_course_sweep_plan_skips_what_it_would_measure_twice(hydra_conf):
    from experiments.harness.sweep import check_jobs, plan_overrides
    cfg = _compose("experiment=course", "backend=emulator", hydra=True)
    jobs = plan_overrides(cfg)
    assert len(jobs) == 3 * 4 * 2 * 3
    plan = check_jobs(cfg, jobs)
    kept = [job["name"] for job in plan if job["duplicate_of"] is None]
    # per model: pytorch, scalar, and blocked x 3 tiles + vendor for im2col and kn2row
    assert len(kept) == 3 * (1 + 1 + 2 * 4) and len(set(kept)) == len(kept)


# --- bad input ---------------------------------------------------------------------------

def test_unknown_model_lists_the_close_matches(hydra_conf):
    with pytest.raises(ConfigError, match="resnet50") as info:
        job_spec(_compose("model.name=resnt50"))
    assert "not a torchvision classification model" in str(info.value)


def test_any_torchvision_classification_model_by_name(hydra_conf):
    assert job_spec(_compose("model.name=efficientnet_b0", "algo=pytorch")).model == "efficientnet_b0"


@pytest.mark.parametrize("tile", [7, 12, 64])
def test_unsupported_tile(hydra_conf, tile):
    with pytest.raises(ConfigError, match=f"gemm.tile={tile} is not supported; valid: 8, 16, 32"):
        job_spec(_compose("gemm=blocked", f"gemm.tile={tile}", "backend=emulator"))


@pytest.mark.skipif(not NO_GPU, reason="a GPU is visible")
def test_gpu_backend_without_a_gpu(hydra_conf):
    for algo in ("im2col", "pytorch"):
        with pytest.raises(ConfigError, match="backend='gpu' needs a CUDA or ROCm device"):
            job_spec(_compose("backend=gpu", f"algo={algo}"))


def test_blocked_gemm_on_the_numpy_backend(hydra_conf):
    with pytest.raises(ConfigError, match="backend 'numpy' runs no kernels"):
        job_spec(_compose("gemm=blocked", "backend=numpy"))
    job_spec(_compose("gemm=blocked", "backend=numpy", "algo=scalar"))   # scalar has no GEMM: fine


@pytest.mark.parametrize("override,message", [
    ("model.input_size=-3", "model.input_size"),
    ("model.input_size=[32,32,3]", "model.input_size"),
    ("model.batch_size=0", "model.batch_size"),
    ("model.weights=IMAGENET1K_V9", "unknown weights for resnet18"),
    ("bench.cache_mode=lukewarm", "bench.cache_mode='lukewarm' is not supported; valid: hot, cold"),
    ("bench.model.warmup=-1", "bench.model"),
])
def test_bad_values(hydra_conf, override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        job_spec(_compose(override))


def test_weights_must_be_cached_not_downloaded(hydra_conf, monkeypatch, tmp_path):
    import torch
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(ConfigError, match="not in the torch hub cache.*model.download=true"):
        job_spec(_compose("model.weights=DEFAULT"))
    # asked to download: the check passes, torchvision fetches the file when the job builds the model
    assert str(job_spec(_compose("model.weights=DEFAULT", "model.download=true")).weights).startswith("ResNet18_Weights")
    with pytest.raises(ConfigError, match="model.download='yes'"):
        job_spec(_compose("model.weights=DEFAULT", "model.download=yes"))


@pytest.mark.parametrize("override,message", [
    ("quant.calibration=minmax", "quant.calibration='minmax' is not supported; valid: max, percentile"),
    ("quant.percentile=0", "quant.percentile=0 (int): expected a finite number in (0, 100]"),
    ("quant.percentile=nan", "quant.percentile=nan (float): expected a finite number in (0, 100]"),
    ("quant.percentile=abc", "quant.percentile='abc' (str): expected a finite number"),
    ("quant.max_cost=-1", "quant.max_cost=-1 (int): expected a finite number in (0, inf) or null"),
    ("quant.max_cost=inf", "quant.max_cost=inf (float): expected a finite number in (0, inf) or null"),
    ("quant.skip=3", "quant.skip=3 (int): expected a non-empty string, or a list, each item a non-empty string"),
    ("quant.skip=[first,2]", "quant.skip=['first', 2] (list): expected a non-empty string, or a list"),
])
def test_bad_quant_options(hydra_conf, override, message):
    with pytest.raises(ConfigError) as error:
        job_spec(_compose("quant=int8", override))
    assert message in str(error.value)


def test_quant_options_reach_the_job(hydra_conf):
    options = job_spec(_compose("quant=int8", "quant.calibration=percentile", "quant.percentile=99.9",
                                "quant.skip=[depthwise,features.0.*]", "quant.max_cost=0.5")).compression.quantization
    assert (options.calibration, options.percentile, options.skip, options.max_cost) == \
        ("percentile", 99.9, ("depthwise", "features.0.*"), 0.5)
    default = job_spec(_compose("quant=fp16")).compression.quantization
    assert (default.calibration, default.skip, default.max_cost) == ("max", (), None)


@pytest.mark.parametrize("override", ["algo=winograd", "gemm=cutlass", "backend=tpu", "bench=fast"])
def test_unknown_group_choice_lists_the_choices(hydra_conf, override):
    with pytest.raises((MissingConfigException, ConfigCompositionException), match="Available options"):
        _compose(override)


def test_single_run_with_bad_input_exits_2_before_any_work(convbench, tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert convbench("model.name=resnet81", "energy=off", f"tracking.uri={uri}") == 2
    assert "did you mean resnet18" in capsys.readouterr().err.lower()
    assert not (tmp_path / "mlflow.db").exists()


def test_relative_sqlite_uri_is_relative_to_the_repository():
    assert resolve_uri("sqlite:///mlflow.db") == f"sqlite:///{REPO_ROOT}/mlflow.db"
    assert resolve_uri("sqlite:////abs/x.db") == "sqlite:////abs/x.db"
    assert resolve_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert Path(REPO_ROOT / "run.py").is_file()
