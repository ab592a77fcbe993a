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

from .credentials import mask, remember_uri, split_password
from .mlflow_log import resolve_uri

DATABASE_SCHEMES = ("postgresql", "mysql", "mssql")
VALID = ("sqlite:///PATH (e.g. the default sqlite:///mlflow.db), http(s)://HOST:PORT (an mlflow server), "
         "postgresql://, mysql:// or mssql:// database URIs")


NAME_MAX, PATH_MAX = 255, 4096     # Linux's limits (bytes) of a file name and a path


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
    bare = split_password(text)[0]       # a password may hold any character: never parse it
    if scheme in ("http", "https"):
        if not urlsplit(bare).hostname:
            raise TrackingUriError(f"{shown} names no host; valid: {scheme}://HOST:PORT")
        _check_port(bare, shown)
        return text
    if scheme.split("+", 1)[0] in DATABASE_SCHEMES:
        _check_port(bare, shown)
        _check_driver(bare, shown)
        return text
    if scheme == "file" or not scheme:
        path = text[len("file://"):] if scheme == "file" else text
        hint = f"sqlite:///{Path(path) / 'mlflow.db'}" if path else "sqlite:///mlflow.db"
        raise TrackingUriError(f"{shown} is a file store (a folder of files, which MLflow 3 refuses by default), not a "
                               f"database; use e.g. {hint}. Valid: {VALID}")
    raise TrackingUriError(f"{shown}: unknown scheme {scheme + '://'!r}; valid: {VALID}")


def _check_port(uri: str, shown: str) -> None:
    try:
        port = urlsplit(uri).port
    except ValueError:
        port = 0
    if port == 0:
        raise TrackingUriError(f"{shown}: its port is not an int in [1, 65535]; valid: HOST:PORT with such a port, or HOST alone "
                               f"(the scheme's default)")


def _check_driver(uri: str, shown: str) -> None:
    """The SQLAlchemy driver of a database URI must be installed: MLflow would only fail when it opens the store."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError
    try:
        make_url(uri).get_dialect().import_dbapi()
    except (ArgumentError, NoSuchModuleError) as exc:
        raise TrackingUriError(f"{shown}: {exc}; valid: {VALID}") from None
    except ImportError as exc:
        raise TrackingUriError(f"{shown}: its database driver is not installed ({exc}); install it, or name an "
                               f"installed one, e.g. postgresql+psycopg:// (requirements/common.txt)") from None


def path_too_long(path: Path) -> str | None:
    """Why the file system would refuse ``path`` (a name over 255 bytes, a path over 4096), or None."""
    longest = max((part for part in path.parts), key=lambda part: len(part.encode()), default="")
    if len(longest.encode()) > NAME_MAX:
        return f"a name of {len(longest.encode())} bytes in it, over the file system's {NAME_MAX}"
    if len(str(path).encode()) >= PATH_MAX:
        return f"{len(str(path).encode())} bytes long, over the file system's {PATH_MAX - 1}"
    return None


def _check_sqlite(uri: str, shown: str) -> str:
    resolved = resolve_uri(uri)
    if not resolved.startswith("sqlite:///"):
        raise TrackingUriError(f"{shown}: a sqlite URI has three slashes and a file path, e.g. "
                               f"sqlite:///mlflow.db (relative to the repository) or sqlite:////abs/path/mlflow.db")
    path = Path(resolved[len("sqlite:///"):].split("?", 1)[0])
    if path_too_long(path):
        raise TrackingUriError(f"{shown}: the database file's path has {path_too_long(path)}; use a shorter one")
    if not path.name or path.name == ":memory:":
        raise TrackingUriError(f"{shown} names no database file (an in-memory store loses every run); "
                               f"e.g. sqlite:///mlflow.db")
    if not path.parent.is_dir():
        raise TrackingUriError(f"{shown}: the directory {path.parent} does not exist (convbench does not "
                               f"create it); create it first or use a path in an existing directory")
    if path.exists() and not path.is_file():
        raise TrackingUriError(f"{shown}: {path} exists and is not a file")
    return uri
