"""Errors of the harness that a user must fix."""
from __future__ import annotations

from hydra.errors import CompactHydraException


class ConfigError(ValueError, CompactHydraException):
    """A bad choice in the configuration, found before any work.

    A ValueError for callers; a CompactHydraException so that Hydra prints the message alone,
    without a traceback, and exits non-zero.
    """


class ToleranceError(RuntimeError):
    """The output of an algorithm is further from the float64 reference than its dtype allows."""
