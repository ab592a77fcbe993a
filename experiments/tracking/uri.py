"""Which tracking URIs convbench accepts, checked before anything opens a store.

MLflow takes almost any string: an empty URI or a plain path becomes a file store in the working
directory (in maintenance mode in MLflow 3), and a sqlite path whose directory is missing is
created silently. Here a URI is one of

    sqlite:///PATH          PATH's directory must exist (relative: to the repository root)
    http(s)://HOST[:PORT]   an `mlflow server`
    postgresql://, mysql://, mssql:// (with an optional +driver): a database MLflow stores runs in

and anything else is refused with what would be valid.
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from .credentials import mask, remember_uri
from .mlflow_log import resolve_uri

DATABASE_SCHEMES = ("postgresql", "mysql", "mssql")
VALID = ("sqlite:///PATH (e.g. the default sqlite:///mlflow.db), http(s)://HOST:PORT (an mlflow server), "
         "postgresql://, mysql:// or mssql:// database URIs")


class TrackingUriError(ValueError):
    """A tracking URI that no store can be opened from; the message names it and what is valid."""


def check_tracking_uri(uri, key: str = "tracking.uri") -> str:
    """``uri`` as given when it can hold runs; raises TrackingUriError otherwise, its password masked
    everywhere in the message (from now on, in every message of this process: credentials.py)."""
    text = "" if uri is None else str(uri).strip()
    remember_uri(text)
    try:
        return _check(text, key)
    except TrackingUriError as exc:
        raise TrackingUriError(mask(str(exc))) from None


def _check(text: str, key: str) -> str:
    shown = f"{key}={mask(text)!r}"
    if not text:
        raise TrackingUriError(f"{shown} is empty; valid: {VALID}")
    scheme = text.split(":", 1)[0].lower() if "://" in text else ""
    if scheme == "sqlite":
        return _check_sqlite(text, shown)
    if scheme in ("http", "https"):
        if not urlsplit(text).hostname:
            raise TrackingUriError(f"{shown} names no host; valid: {scheme}://HOST:PORT")
        return text
    if scheme.split("+", 1)[0] in DATABASE_SCHEMES:
        return text
    if scheme == "file" or not scheme:
        path = text[len("file://"):] if scheme == "file" else text
        hint = f"sqlite:///{Path(path) / 'mlflow.db'}" if path else "sqlite:///mlflow.db"
        raise TrackingUriError(f"{shown} is a file store (a folder of files, which MLflow 3 refuses by default), not a "
                               f"database; use e.g. {hint}. Valid: {VALID}")
    raise TrackingUriError(f"{shown}: unknown scheme {scheme + '://'!r}; valid: {VALID}")


def _check_sqlite(uri: str, shown: str) -> str:
    resolved = resolve_uri(uri)
    if not resolved.startswith("sqlite:///"):
        raise TrackingUriError(f"{shown}: a sqlite URI has three slashes and a file path, e.g. "
                               f"sqlite:///mlflow.db (relative to the repository) or sqlite:////abs/path/mlflow.db")
    path = Path(resolved[len("sqlite:///"):].split("?", 1)[0])
    if not path.name or path.name == ":memory:":
        raise TrackingUriError(f"{shown} names no database file (an in-memory store loses every run); "
                               f"e.g. sqlite:///mlflow.db")
    if not path.parent.is_dir():
        raise TrackingUriError(f"{shown}: the directory {path.parent} does not exist (convbench does not "
                               f"create it); create it first or use a path in an existing directory")
    if path.exists() and not path.is_file():
        raise TrackingUriError(f"{shown}: {path} exists and is not a file")
    return uri
