"""A password given in ``tracking.uri``, taken out of the config before Hydra writes it to disk.

Hydra saves the overrides and the composed config of every run (``multirun.yaml``, ``.hydra/``) right
after run.py's callbacks ``on_run_start``/``on_multirun_start``, which call ``lift_password``: the
config keeps ``user:***@host``, the password goes to MLFLOW_TRACKING_PASSWORD (MLflow's own variable,
inherited by every job process of any launcher) and experiments/tracking/credentials.py's ``store_uri``
puts it back only into the URI that opens the store. ``lifted_environment`` (run.py) gives the variable
back its value when run.py is done.
"""
from __future__ import annotations

import os
from contextlib import contextmanager

from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from experiments.tracking.credentials import MASK, PASSWORD_ENV, mask, remember_uri, split_password, with_masked_password

from .errors import ConfigError

TRACKING_URI = "tracking.uri"
_HINT = (f"give the password in the environment variable {PASSWORD_ENV} (and the user in "
         f"MLFLOW_TRACKING_USERNAME), not in an override: Hydra writes overrides to disk")


def _key(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0].strip()


def _hydra_quoted(value: str) -> str:
    """``value`` as one quoted Hydra override value."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def lift_password(config: DictConfig) -> None:
    """Move tracking.uri's password from ``config`` (and its overrides) to MLFLOW_TRACKING_PASSWORD; refuse
    (ConfigError) a password in any other override, which Hydra would write to disk as given."""
    overrides = list(config.hydra.overrides.task)
    uri = OmegaConf.select(config, TRACKING_URI, default=None)
    if isinstance(uri, str):
        remember_uri(uri)
        _, _, password = split_password(uri)
        if password is not None and password != MASK:
            shown = with_masked_password(uri)
            os.environ[PASSWORD_ENV] = password
            overrides = [o for o in overrides if _key(o) != TRACKING_URI] + [f"{TRACKING_URI}={_hydra_quoted(shown)}"]
            with read_write(config), open_dict(config):
                config.tracking.uri = shown
                config.hydra.overrides.task = overrides
    sweep_params = OmegaConf.select(config, "hydra.sweeper.params", default=None) or {}
    for text in [*overrides, *(f"{k}={v}" for k, v in sweep_params.items())]:
        if split_password(str(text))[2] not in (None, MASK):
            raise ConfigError(f"{mask(text)}: a password in an override that is not one tracking.uri; {_HINT}")


@contextmanager
def lifted_environment(argv: list[str]):
    """Within: the passwords of run.py's arguments masked in every message (even Hydra's errors about
    them). After: MLFLOW_TRACKING_PASSWORD as it was before (run.py's tests run it in-process)."""
    for argument in argv:
        remember_uri(argument.split("=", 1)[-1])
    before = os.environ.get(PASSWORD_ENV)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(PASSWORD_ENV, None)
        else:
            os.environ[PASSWORD_ENV] = before
