"""Bad input refused before any work, with one message naming the key, the bad value and what is valid.

Three hooks: ``check_config`` (types and ranges of a composed job config, the tracking URI, the
energy country; config.job_spec calls it first), ``check_launcher`` (the sweep's launcher settings;
the sweep callback calls it before the parent run exists) and ``bad_input_exits`` (run.py: Hydra's
own errors, an unknown config choice or key or a malformed override, become that one message and
exit 2 instead of Hydra's exit 1).

The YAML files give no types: `seed=abc` composes, `model.batch_size=true` is a bool that Python
takes for 1. TYPED below says what each scalar key must be.
"""
from __future__ import annotations

import errno
import math
import os
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from experiments.tracking.credentials import mask
from experiments.tracking.uri import TrackingUriError, check_tracking_uri, path_too_long

from . import launchers   # registers the resolvers of conf/hydra/launcher/ before any sweep composes
from .errors import ConfigError
from .models import INPUT_SIZE_VALID, is_input_size

EXIT_BAD_INPUT = 2
BASE_PRESET = "base"     # what a group's presets inherit (conf/model/base.yaml...), not a choice of its own


def _int(minimum, maximum=None):
    def check(value):
        return isinstance(value, int) and not isinstance(value, bool) and (minimum is None or value >= minimum) \
            and (maximum is None or value <= maximum)
    if maximum is not None:
        return check, f"an int in [{minimum}, {maximum}]"
    return check, "an int" if minimum is None else f"an int >= {minimum}"


def _number(low, high=None, low_open=False, high_open=True):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        above = value > low if low_open else value >= low
        below = high is None or (value < high if high_open else value <= high)
        return above and below
    brackets = ("(" if low_open else "[") + f"{low:g}, " + ("inf)" if high is None else f"{high:g}"
                                                          + (")" if high_open else "]"))
    return check, f"a finite number in {brackets}"


def _bool():
    return (lambda value: isinstance(value, bool)), "true or false"


def _text():
    return (lambda value: isinstance(value, str) and value.strip() != ""), "a non-empty string"


def _optional(rule):
    check, valid = rule
    return (lambda value: value is None or check(value)), f"{valid} or null"


def _one_of(*choices):
    return (lambda value: value in choices), "one of " + ", ".join("null" if c is None else str(c) for c in choices)


def _list_of(rule):
    check, valid = rule
    return (lambda value: isinstance(value, list) and all(check(item) for item in value)), f"a list, each item {valid}"


def _either(first, second):
    return (lambda value: first[0](value) or second[0](value)), f"{first[1]}, or {second[1]}"


def _count_or(text: str):
    """A positive int, or ``text``; the launcher's schema may hand the int over as a string."""
    def check(value):
        return value == text or (not isinstance(value, bool) and str(value).isdigit() and int(value) >= 1)
    return check, f"an int >= 1, or {text!r}"


# The one schema of convbench's scalar and list keys: key -> (check, what is valid). A key a preset leaves out
# is not checked. Numbers are finite (no inf, no nan) everywhere.
TYPED = {
    "seed": _int(0, 2**64 - 1),          # numpy's and torch's generators both take it
    "model.batch_size": _int(1),
    "model.input_size": (is_input_size, INPUT_SIZE_VALID),
    "model.download": _bool(),
    "prune.amount": _number(0, 1),
    "prune.steps": _int(1),
    "prune.finetune_epochs": _int(0),
    "quant.calibration_images": _int(1),
    "quant.percentile": _number(0, 100, low_open=True, high_open=False),
    "quant.max_cost": _optional(_number(0, low_open=True)),
    "quant.skip": _either(_text(), _list_of(_text())),
    "accuracy.eval_images": _int(1),
    "accuracy.max_images": _int(1),
    "bench.flush_mb": _number(0),
    "bench.energy_s": _number(0),
    "bench.progress_s": _number(0),
    "bench.kernel_timeout_s": _number(0, low_open=True),
    "gemm.source": _optional(_text()),
    "gemm.function": _optional(_text()),
    "gemm.tile_macro": _text(),
    "gemm.batched": _bool(),
    "bench.model.warmup": _int(0),
    "bench.model.min_samples": _int(1),
    "bench.model.min_time_s": _number(0),
    "bench.model.max_time_s": _number(0, low_open=True),
    "bench.layer.warmup": _int(0),
    "bench.layer.min_samples": _int(1),
    "bench.layer.min_time_s": _number(0),
    "bench.layer.max_time_s": _number(0, low_open=True),
    "energy.measure_power_secs": _number(0, low_open=True),
    "tracking.experiment": _text(),
    "tracking.retry_s": _number(0),
    "tuning.budget_s": _number(0),
    "tuning.warmup": _int(0),
    "tuning.first_samples": _int(1),
    "tuning.drop_margin": _number(0),
    "tuning.remeasure": _bool(),
    "tuning.algos": _list_of(_text()),
    "tuning.gemms": _list_of(_text()),
    "tuning.rungs": _list_of(_text()),
    "tuning.kernels": _optional(_list_of(_text())),
    "tuning.tiles": _list_of(_int(1)),
}
# The same for the launchers' settings, by the launcher's class (hydra.launcher._target_'s last name): the ones
# a launcher would only trip over after the sweep's parent run exists, or never (a job that waits forever).
LAUNCHER_TYPED = {
    "JoblibLauncher": {
        "timeout": _optional(_number(0, low_open=True)),
        "batch_size": _count_or("auto"),
        "verbose": _int(0),
        "backend": _one_of(None, "loky", "multiprocessing", "threading"),
        "prefer": _one_of(None, "processes", "threads"),
        "mmap_mode": _one_of(None, "r", "r+", "w+", "c"),
    },
    "LocalLauncher": {
        "timeout_min": _int(1), "cpus_per_task": _optional(_int(1)), "gpus_per_node": _optional(_int(0)),
        "tasks_per_node": _int(1), "mem_gb": _optional(_int(1)), "nodes": _int(1),
    },
    "SlurmLauncher": {
        "timeout_min": _int(1), "cpus_per_task": _optional(_int(1)), "gpus_per_node": _optional(_int(0)),
        "tasks_per_node": _int(1), "mem_gb": _optional(_int(1)), "nodes": _int(1),
        "gpus_per_task": _optional(_int(0)), "cpus_per_gpu": _optional(_int(1)), "signal_delay_s": _int(0),
        "max_num_timeout": _int(0), "array_parallelism": _int(1),
    },
    "RayLauncher": {"ray.remote.num_gpus": _optional(_number(0)), "ray.remote.num_cpus": _optional(_number(0))},
}
_ABSENT = object()


def _value(cfg: DictConfig, key: str):
    try:
        return OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=True)
    except OmegaConfBaseException as exc:   # a broken interpolation (${...}) or a missing value (???)
        raise ConfigError(f"{key}: {_first_line(str(exc))}") from None


def _check_keys(cfg: DictConfig, schema: dict, prefix: str = "") -> None:
    for key, (check, valid) in schema.items():
        value = _value(cfg, key)
        if value is _ABSENT:
            continue
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=True)
        if not check(value):
            raise ConfigError(f"{prefix}{key}={value!r} ({type(value).__name__}): expected {valid}")


def check_config(cfg: DictConfig) -> None:
    """Raise ConfigError for the first key of ``cfg`` whose value has the wrong type or range."""
    _check_keys(cfg, TYPED)
    check_names(cfg)
    try:
        check_tracking_uri(_value(cfg, "tracking.uri"))
    except TrackingUriError as exc:
        raise ConfigError(str(exc)) from None
    if _value(cfg, "energy.name") == "codecarbon":
        check_energy_location(_value(cfg, "energy.country_iso_code"), _value(cfg, "energy.region"))
    if _value(cfg, "algo.name") == "auto":
        check_tuning_file(_value(cfg, "tuning.db"))


def check_names(cfg: DictConfig) -> None:
    """What MLflow or the file system would refuse only when the job logs: every key of the config becomes
    a run's param (a key added with +KEY=... too), the experiment names a folder of artifacts."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import _validate_experiment_name, _validate_param

    from experiments.tracking.mlflow_log import artifact_folder, flatten
    task = OmegaConf.masked_copy(cfg, [key for key in cfg.keys() if key != "hydra"])   # what the job logs
    for key, value in flatten(OmegaConf.to_container(task, resolve=False)).items():     # names, not values
        try:
            _validate_param(key, value)
        except MlflowException as exc:
            raise ConfigError(f"{key}={value[:80]!r}: MLflow refuses this key as a run's param: "
                              f"{_first_line(exc.message)}") from None
    experiment = _value(cfg, "tracking.experiment")
    if isinstance(experiment, str):
        try:
            _validate_experiment_name(experiment)
        except MlflowException as exc:
            raise ConfigError(f"tracking.experiment={experiment[:80]!r}...: {_first_line(exc.message)}") from None
        reason = path_too_long(Path(artifact_folder(experiment)))
        if reason:
            raise ConfigError(f"tracking.experiment={experiment[:80]!r}...: it names the folder of its artifacts, "
                              f"which has {reason}; valid: a shorter name")


def check_tuning_file(db) -> None:
    """algo=auto writes its choices to tuning.db: an existing file there must be a convbench tuning database."""
    from experiments.tuning import TuningSpec
    from experiments.tuning.database import ForeignDatabaseError, check_ours
    if not isinstance(db, str) or not db.strip():
        raise ConfigError(f"tuning.db={db!r}: expected a file path, e.g. tuning.db")
    path = TuningSpec(db).db_path
    if path_too_long(path):
        raise ConfigError(f"tuning.db={db[:80]!r}...: the path has {path_too_long(path)}; valid: a shorter path")
    if path.exists():
        try:
            check_ours(path)
        except ForeignDatabaseError as exc:
            raise ConfigError(str(exc)) from None


def check_energy_location(country, region) -> None:
    """The country (and region) must be ones CodeCarbon has carbon-intensity data for: with any other it
    logs an error and still reports emissions of its default."""
    from codecarbon.input import DataSource, DataSourceException
    data = DataSource()
    countries = data.get_global_energy_mix_data()
    if not isinstance(country, str) or country not in countries:
        close = [c for c in countries if isinstance(country, str) and c.startswith(country.upper()[:2])]
        raise ConfigError(f"energy.country_iso_code={country!r}: not a country CodeCarbon has data for; valid: an "
                          f"ISO 3166-1 alpha-3 code in upper case, e.g. USA, FRA, DEU, CAN"
                          + (f" (close: {', '.join(close[:6])})" if close else ""))
    if region in (None, _ABSENT):
        return
    try:
        regions = [r for r in data.get_country_emissions_data(country.lower()) if not r.startswith("_")]
    except DataSourceException:
        raise ConfigError(f"energy.region={region!r}: CodeCarbon has no regions for {country} (only for USA and "
                          f"CAN); use energy.region=null") from None
    if str(region).lower() not in regions:
        raise ConfigError(f"energy.region={region!r} is not a region of {country} CodeCarbon knows; valid: "
                          f"{', '.join(regions)}, or null")


def check_launcher(config: DictConfig) -> None:
    """The launcher settings a sweep would only trip over after its parent run exists (joblib raises on
    n_jobs=0 at launch; Ray waits forever for a GPU no node has)."""
    launcher = config.hydra.launcher
    target = str(launcher.get("_target_", ""))
    _check_keys(launcher, LAUNCHER_TYPED.get(target.rpartition(".")[2], {}), "hydra.launcher.")
    if target.endswith("JoblibLauncher"):
        n_jobs = launcher.get("n_jobs")
        if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0:
            raise ConfigError(f"hydra.launcher.n_jobs={n_jobs!r}: expected a positive int (worker processes) or "
                              f"a negative one (-1: one per CPU core, -2: all but one...)")
    elif target.endswith("RayLauncher"):
        launchers.check_ray(launcher)
    elif target.endswith("SlurmLauncher"):
        limit_s, delay_s = 60 * (launcher.get("timeout_min") or 0), launcher.get("signal_delay_s")
        if limit_s and isinstance(delay_s, (int, float)) and delay_s >= limit_s:
            raise ConfigError(f"hydra.launcher.signal_delay_s={delay_s}: SLURM would send its time-limit warning at "
                              f"the jobs' start (timeout_min is {limit_s:g} s); valid: under {limit_s:g}")


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def hydra_error_message(exc: BaseException) -> str:
    """Hydra's composition and override errors as one message: key, bad value, what is valid."""
    from hydra.errors import MissingConfigException, OverrideParseException
    if isinstance(exc, MissingConfigException) and exc.missing_cfg_file and exc.options is not None:
        group, _, choice = exc.missing_cfg_file.rpartition("/")
        options = [o for o in exc.options if o != BASE_PRESET]
        return f"{group}={choice!r} is not a choice of {group}; valid: {', '.join(options)}"
    cause = exc.__cause__
    key = getattr(cause, "full_key", None)
    if key:
        value = _override_value(key)
        shown = f"{key}={value}" if value is not None else key
        parent_node = getattr(cause, "parent_node", None)
        if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and isinstance(parent_node, DictConfig):
            known = ", ".join(str(k) for k in parent_node.keys())
            parent = key.rpartition(".")[0] or "the config"
            return (f"{shown}: {parent} has no key {key.rpartition('.')[2]!r}; its keys: {known} "
                    f"(to add a new key on purpose: +{key}=...)")
        return f"{shown}: {_first_line(getattr(cause, 'msg', '') or str(cause))}"
    if isinstance(exc, OverrideParseException):
        return f"cannot parse the override {exc.override!r}: {_first_line(exc.message)} (form: key=value)"
    lines = [_first_line(str(exc))] + ([_first_line(str(cause))] if cause is not None else [])
    return ": ".join(line for line in lines if line)


def _override_value(key: str) -> str | None:
    for argument in sys.argv[1:]:
        name, sep, value = argument.lstrip("+~").partition("=")
        if sep and name == key:
            return value
    return None


@contextmanager
def bad_input_exits():
    """Around Hydra's main: its own errors (composition, overrides) exit 2 with one message.

    Hydra prints such an error and exits 1, the code run.py keeps for a failed job; with
    HYDRA_FULL_ERROR it raises instead, and the error is caught here. A user who set
    HYDRA_FULL_ERROR asked for Hydra's traceback and gets it."""
    from hydra.errors import HydraException
    asked = "HYDRA_FULL_ERROR" in os.environ
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    try:
        yield
    except (HydraException, OmegaConfBaseException) as exc:
        if asked:
            raise
        print(f"convbench: {mask(hydra_error_message(exc))}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT) from None
    except OSError as exc:
        if asked or exc.errno != errno.ENAMETOOLONG:
            raise
        # Hydra looks a config group up by a key's name: a key too long for a file name ends here
        name = Path(str(exc.filename)).name
        print(f"convbench: {name[:80]}...: a name of {len(name.encode())} bytes, too long for a file name (the "
              f"file system's limit is 255); valid: a shorter key or value", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT) from None
    except Exception:   # not the user's input (a launcher's crash): what Hydra itself does, traceback and exit 1
        if asked:
            raise
        traceback.print_exc()
        raise SystemExit(1) from None
    finally:
        if not asked:
            os.environ.pop("HYDRA_FULL_ERROR", None)
