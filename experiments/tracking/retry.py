"""Calls to a tracking store, retried with backoff while the store is unreachable.

A server restarting, a network hiccup or a busy sqlite file is worth waiting for (up to
``tracking.retry_s``, 120 s by default); a request the store refuses (a bad value, a missing run,
wrong credentials) is not: it fails at once.
"""
from __future__ import annotations

import errno
import sys
import time
from typing import Callable, TypeVar

from .credentials import mask

T = TypeVar("T")

DEFAULT_RETRY_S = 120.0
_FIRST_DELAY_S, _MAX_DELAY_S = 1.0, 15.0

# MLflow error codes that mean "this request is wrong", not "the store is not there right now"
_REFUSED = {"INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST", "INVALID_STATE",
            "BAD_REQUEST", "PERMISSION_DENIED", "UNAUTHENTICATED", "INVALID_REQUEST", "NOT_FOUND"}


def retry_seconds(value) -> float:
    """tracking.retry_s, checked: seconds >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"tracking.retry_s={value!r}: expected the seconds to keep retrying an unreachable "
                         f"tracking store, a number >= 0 (default {DEFAULT_RETRY_S:g})")
    return float(value)


_FULL = ("database or disk is full", "no space left on device", "disk quota exceeded")


def out_of_space(exc: BaseException) -> bool:
    """Whether a full disk (or quota) caused the exception, or one it was raised from."""
    seen: BaseException | None = exc
    for _ in range(20):         # a chain of causes, never a cycle
        if seen is None:
            return False
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(words in str(seen).lower() for words in _FULL):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def transient(exc: Exception) -> bool:
    """Whether retrying later may succeed: not for a request the store refuses, a broken store or a full disk
    (waiting would only delay the message)."""
    from mlflow.exceptions import MlflowException

    from .sqlite_store import BrokenStoreError
    refused = isinstance(exc, MlflowException) and exc.error_code in _REFUSED or isinstance(exc, BrokenStoreError)
    return not (refused or out_of_space(exc))


def short(exc: Exception, limit: int = 200) -> str:
    """An exception in one line, its URIs' passwords masked; a full disk said as such (MLflow's first line
    is SQLAlchemy's 'raised as a result of Query-invoked autoflush')."""
    text = mask(str(exc)).strip().splitlines()
    line = text[0] if text else ""
    if out_of_space(exc):
        said = [part for part in text if any(words in part.lower() for words in _FULL)]
        line = f"out of disk space ({said[0].strip() if said else line})"
    first = f"{type(exc).__name__}: {line}"
    return first if len(first) <= limit else first[: limit - 3] + "..."


def retrying(call: Callable[[], T], retry_s: float, what: str, *, sleep=time.sleep, clock=time.monotonic) -> T:
    """``call()``, tried again after 1, 2, 4, 8, 15, 15... s while it fails transiently and fewer than
    ``retry_s`` seconds have passed since the first try; then its last exception is raised."""
    deadline, delay = clock() + retry_s, _FIRST_DELAY_S
    while True:
        try:
            return call()
        except Exception as exc:
            if not transient(exc) or clock() + delay > deadline:
                raise
            print(f"[convbench] {what} failed ({short(exc)}); retrying in {delay:g} s, for up to {retry_s:g} s "
                  f"in all (tracking.retry_s)", file=sys.stderr, flush=True)
            sleep(delay)
            delay = min(2 * delay, _MAX_DELAY_S)
