"""Tracking-store passwords: never printed, never written in clear. The one masking rule of convbench.

A password belongs in MLflow's own variables, MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or
MLFLOW_TRACKING_TOKEN), not in ``tracking.uri``: Hydra writes every override and the composed config to
disk (multirun.yaml, .hydra/). A password given in the URI anyway is lifted out of the config before Hydra
writes anything (experiments/harness/password.py): the config keeps ``user:***@host`` and the password
moves to MLFLOW_TRACKING_PASSWORD, which the jobs inherit. ``store_uri`` puts it back into the URI that
opens the store, and nowhere else; for a database store (postgresql://, mysql://, mssql://) it also
adds MLflow's variables to a URI without a password (MLflow reads them itself for HTTP stores only).

``mask`` is the one rule for every text convbench prints or writes:

* every password convbench was given (``remember``; the variables above are always known) is replaced,
  wherever it appears, in the forms a text may hold it: as given, percent-encoded, JSON- or
  Python-escaped, with Hydra's backslash escapes;
* in any ``scheme://user:password@host`` the password is replaced even when it is unknown. The user
  part ends at the first ``:``, the password at the last ``@`` of the URI, so a password may hold any
  character, ``/``, ``@``, ``:`` and ``%`` included (a path holding an ``@`` is masked too much, never
  too little). In free text a URI ends at a space or a line's end: a password with spaces is masked there only
  when it is known, which every password convbench was given is.

Everything here is plain string search (str.find/split/replace), linear in the text: no regular
expression, so no backtracking on a long value.
"""
from __future__ import annotations

import json
import os
from functools import lru_cache
from urllib.parse import quote, quote_plus, unquote

MASK = "***"
USERNAME_ENV = "MLFLOW_TRACKING_USERNAME"
PASSWORD_ENV = "MLFLOW_TRACKING_PASSWORD"
TOKEN_ENV = "MLFLOW_TRACKING_TOKEN"
DATABASE_SCHEMES = ("postgresql", "mysql", "mssql")
# Shorter secrets are masked inside URIs only: masking every "ab" of a text would garble it.
_MIN_KNOWN = 4

_known: set[str] = set()


def password_span(uri: str) -> tuple[int, int] | None:
    """Where the password of a whole URI ``scheme://user:password@host...`` is (start, end); None if it has
    none. ``sqlite:///path`` never has one."""
    start = uri.find("://")
    if start < 0:
        return None
    start += 3
    at = uri.rfind("@", start)
    colon = uri.find(":", start, at) if at > start and not uri.startswith("/", start) else -1
    return None if colon < 0 else (colon + 1, at)


def split_password(uri: str) -> tuple[str, str | None, str | None]:
    """``uri`` without its password, its user and its password (percent-decoded); (uri, None, None) when it
    names none."""
    span = password_span(uri)
    if span is None:
        return uri, None, None
    begin, end = span
    user_start = uri.find("://") + 3
    user = unquote(uri[user_start:begin - 1])
    return uri[:begin - 1] + uri[end:], user or None, unquote(uri[begin:end])


def with_masked_password(uri: str) -> str:
    """``uri`` with its password, if any, shown as ``***`` (and nothing else masked: a whole URI, not a text)."""
    span = password_span(uri)
    return uri if span is None else uri[:span[0]] + MASK + uri[span[1]:]


def remember(secret: str | None) -> None:
    """Mask ``secret`` in every text of this process from now on."""
    if secret:
        _known.add(secret)


def remember_uri(uri) -> None:
    """Mask the password of ``uri`` (as given and decoded) from now on."""
    span = password_span(str(uri)) if uri is not None else None
    if span is not None:
        remember(str(uri)[span[0]:span[1]])
        remember(split_password(str(uri))[2])


def _known_secrets() -> set[str]:
    secrets = set(_known)
    secrets.update(v for v in (os.environ.get(PASSWORD_ENV), os.environ.get(TOKEN_ENV)) if v)
    return secrets


def _hydra_escaped(secret: str) -> str:
    """How Hydra prints a value in an override (`tracking.uri=http\\://user\\:pw@host`)."""
    return "".join("\\" + c if c in "\\()[]{}:=, '\"" else c for c in secret)


@lru_cache(maxsize=64)
def _forms(secret: str) -> tuple[str, ...]:
    """``secret`` as a text may hold it, longest first."""
    forms = {secret, quote(secret, safe=""), quote(secret), quote_plus(secret), json.dumps(secret)[1:-1],
             json.dumps(secret, ensure_ascii=False)[1:-1], repr(secret)[1:-1], ascii(secret)[1:-1],
             _hydra_escaped(secret)}
    return tuple(sorted((form for form in forms if len(form) >= _MIN_KNOWN), key=len, reverse=True))


def _mask_uris(token: str) -> str:
    """The passwords of the URIs in ``token`` (a text without white space) masked."""
    parts = token.split("://")
    for i in range(1, len(parts)):
        part = parts[i]
        at = part.rfind("@")
        colon = part.find(":", 0, at) if at > 0 and not part.startswith("/") else -1
        if colon >= 0:
            parts[i] = part[:colon + 1] + MASK + part[at:]
    return "://".join(parts)


def mask(text) -> str:
    """``text`` with every password in it replaced by ``***`` (the rule: this module's docstring)."""
    text = str(text)
    for secret in sorted(_known_secrets(), key=len, reverse=True):
        for form in _forms(secret):
            if form in text:
                text = text.replace(form, MASK)
    if "://" not in text:
        return text
    return "".join(" ".join(_mask_uris(word) if "://" in word else word for word in line.split(" "))
                   for line in text.splitlines(keepends=True))


def store_uri(uri: str) -> str:
    """The URI that opens the store, to hand to MLflow and never to print: a password shown as ``***`` (lifted
    by run.py) and, for a database store, a missing one are MLFLOW_TRACKING_PASSWORD's, which MLflow
    itself reads for HTTP stores only (with MLFLOW_TRACKING_USERNAME)."""
    password = os.environ.get(PASSWORD_ENV)
    span = password_span(uri)
    if not password or (span is not None and uri[span[0]:span[1]] != MASK):
        return uri
    if span is not None:
        return uri[:span[0]] + quote(password, safe="") + uri[span[1]:]
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme.split("+", 1)[0].lower() not in DATABASE_SCHEMES:
        return uri
    authority = rest.split("/", 1)[0].split("?", 1)[0]
    user, at, _ = authority.rpartition("@")
    host = rest[len(user) + 1:] if at else rest
    if not at:
        user = quote(os.environ.get(USERNAME_ENV, ""), safe="")
    return f"{scheme}://{user}:{quote(password, safe='')}@{host}"
