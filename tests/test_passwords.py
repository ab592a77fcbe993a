"""No password printed or written by convbench, whatever characters it holds: one masking rule
(experiments/tracking/credentials.py), a password in tracking.uri lifted out of the config before Hydra
writes it, and MLflow's own variables passed through to the store."""
from __future__ import annotations

import base64
import json
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, quote_plus

import pytest

from experiments.tracking import credentials
from experiments.tracking import mlflow_log as mlf
from experiments.tracking.credentials import mask, split_password, store_uri
from experiments.tracking.uri import TrackingUriError, check_tracking_uri

from .servers import make_server, runs_of
from .test_harness_sweep import SMALL

QUICK = [*SMALL, "energy=off", "tracking.retry_s=0"]
# each a character a naive rule trips over; the last two also appear elsewhere in their URI
HOSTILE = ["pa/ss-w0rd", "p@ss@w0rd", "pa:ss:w0rd", "100%-sure", "pass w0rd x", "pässwörd-ß€", "a" * 5000,
           "alice-pw", "127.0.0.1"]


@pytest.fixture
def forgetful(monkeypatch):
    """A process that was never told any password: the masking of unknown URIs alone."""
    monkeypatch.setattr(credentials, "_known", set())
    monkeypatch.delenv(credentials.PASSWORD_ENV, raising=False)
    monkeypatch.delenv(credentials.TOKEN_ENV, raising=False)


def _forms(secret: str) -> set[str]:
    return {secret, quote(secret, safe=""), quote(secret), quote_plus(secret), json.dumps(secret)[1:-1],
            repr(secret)[1:-1]}


def _leaks(text: str, secret: str) -> list[str]:
    return [form for form in _forms(secret) if form in text]


@pytest.mark.parametrize("secret", [s for s in HOSTILE if " " not in s and s not in ("alice-pw", "127.0.0.1")])
def test_a_password_of_an_unknown_uri_is_masked_whatever_it_holds(forgetful, secret):
    for uri in ("http://alice:{}@head:5000/x", "postgresql+psycopg://alice:{}@db:5432/mlflow", "https://alice:{}@head"):
        for given in (secret, quote(secret, safe="")):
            assert mask(f"store {uri.format(given)} unreachable") == f"store {uri.format('***')} unreachable"


@pytest.mark.parametrize("secret", HOSTILE)
def test_a_known_password_is_masked_wherever_and_however_it_appears(forgetful, secret):
    uri = f"http://alice:{secret}@127.0.0.1:5000"
    check_tracking_uri(uri)                                   # every URI convbench is given is checked first
    text = (f"Invalid url {uri}; overrides {json.dumps(['tracking.uri=' + uri])} {quote(secret)} "
            f"{repr(secret)} {credentials._hydra_escaped(uri)}")
    assert not _leaks(mask(text), secret), mask(text)


def test_the_password_is_split_from_the_uri_whatever_it_holds():
    assert split_password("http://alice:p@ss/w:rd@head:5000/x") == ("http://alice@head:5000/x", "alice", "p@ss/w:rd")
    assert split_password("postgresql://u:p%40ss@db/m") == ("postgresql://u@db/m", "u", "p@ss")
    assert split_password("sqlite:////tmp/a@b:c/mlflow.db") == ("sqlite:////tmp/a@b:c/mlflow.db", None, None)
    assert split_password("http://head:5000") == ("http://head:5000", None, None)
    assert mask("sqlite:///mlflow.db http://head:5000") == "sqlite:///mlflow.db http://head:5000"
    assert mask("tracking.uri=http\\://alice\\:s3cr3t@head\\:5000") == "tracking.uri=http\\://alice\\:***@head\\:5000"


def test_masking_a_long_value_takes_milliseconds_not_seconds(forgetful):
    """The regex of the last round backtracked for seconds on a long value; a timing bound far above the
    milliseconds measured (a few ms per MB) and far below the seconds of a backtracking rule."""
    credentials.remember("k" * 1000)
    for text in ("http://u:" + "x" * 2**20, "http://u:" + "x:" * 2**19 + "@h", "a://b:c " * 2**17, "@:" * 2**19):
        started = time.perf_counter()
        mask(text)
        assert time.perf_counter() - started < 1.0


def test_a_refused_uri_is_named_without_its_password(forgetful):
    for uri in ("foo://user:hunter2/x@host/x", "file://user:hunter2@host/x", "sqlite://u:hunter2@/x"):
        with pytest.raises(TrackingUriError) as error:
            check_tracking_uri(uri)
        assert "hunter2" not in str(error.value) and ":***@" in str(error.value)


def test_the_store_gets_the_password_from_mlflows_variable(monkeypatch):
    monkeypatch.setenv(credentials.PASSWORD_ENV, "p@ss/w rd")
    monkeypatch.setenv(credentials.USERNAME_ENV, "bob")
    assert store_uri("http://alice:***@head:5000") == "http://alice:p%40ss%2Fw%20rd@head:5000"
    assert store_uri("http://head:5000") == "http://head:5000"         # MLflow reads both variables itself
    assert store_uri("postgresql://db:5432/mlflow") == "postgresql://bob:p%40ss%2Fw%20rd@db:5432/mlflow"
    assert store_uri("postgresql://u:given@db/m") == "postgresql://u:given@db/m"
    assert store_uri("sqlite:///mlflow.db") == "sqlite:///mlflow.db"


class _Recorder(BaseHTTPRequestHandler):
    """An MLflow server that refuses everyone (401) and keeps the Authorization headers it was sent."""
    seen: list[str] = []

    def _refuse(self):
        self.seen.append(self.headers.get("Authorization", ""))
        body = b'{"error_code": "UNAUTHENTICATED", "message": "You are not authenticated."}'
        self.send_response(401)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _refuse

    def log_message(self, *args):
        pass


@pytest.fixture
def recorder():
    _Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], _Recorder.seen
    server.shutdown()
    server.server_close()


class _Guard(BaseHTTPRequestHandler):
    """A proxy that lets through to an `mlflow server` only the requests with the right password: the
    authenticated path of a real deployment (a reverse proxy with basic auth)."""
    upstream, expected, refused = "", b"", []

    def _forward(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic ") or base64.b64decode(header[6:]) != self.expected:
            self.refused.append(self.path)
            status, payload, kind = 401, b'{"error_code": "UNAUTHENTICATED"}', "application/json"
        else:
            request = urllib.request.Request(self.upstream + self.path, data=body or None, method=self.command,
                                             headers={k: v for k, v in self.headers.items()
                                                      if k.lower() in ("content-type", "content-length")})
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    status, payload, kind = response.status, response.read(), response.headers.get("Content-Type")
            except urllib.error.HTTPError as error:
                status, payload, kind = error.code, error.read(), error.headers.get("Content-Type")
        self.send_response(status)
        self.send_header("Content-Type", kind or "application/octet-stream")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

    def log_message(self, *args):
        pass


def _written(root) -> str:
    return "\n".join(p.read_bytes().decode("utf-8", "replace") for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("secret,in_env", [("p@ss/w0rd:100% ü x", False), ("127.0.0.1", False), ("s3cr3t w0rd", True)])
def test_a_sweep_never_prints_or_writes_the_password_and_sends_it_to_the_store(
        convbench, capsys, tmp_path, monkeypatch, recorder, secret, in_env):
    """tracking.uri with the password in it, or MLflow's variables: the server gets the password, no output
    stream and no file of the sweep directory holds it (sweep.json, multirun.yaml, .hydra/, the outbox)."""
    port, seen = recorder
    if in_env:
        monkeypatch.setenv(credentials.USERNAME_ENV, "alice")
        monkeypatch.setenv(credentials.PASSWORD_ENV, secret)
        uri = f"http://127.0.0.1:{port}"
    else:
        monkeypatch.delenv(credentials.PASSWORD_ENV, raising=False)
        uri = f"http://alice:{secret}@127.0.0.1:{port}"
    monkeypatch.setattr(credentials, "_known", set())
    mlf.client.cache_clear()
    code = convbench("-m", "algo=pytorch", *QUICK, f"tracking.uri='{uri}'", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    out = capsys.readouterr()
    assert code == 2 and "cannot create the sweep's parent run" in out.err    # refused by the server: 401
    sent = {f"alice:{secret}".encode(encoding) for encoding in ("utf-8", "latin-1")}   # requests: latin-1
    assert seen and all(base64.b64decode(h.split()[1]) in sent for h in seen), seen
    assert not _leaks(out.out + out.err, secret), out.err[-2000:]
    assert not (tmp_path / "sweep").exists() or not _leaks(_written(tmp_path / "sweep"), secret)
    assert (credentials.PASSWORD_ENV in __import__("os").environ) == in_env     # run.py gave it back


def test_a_sweep_through_an_authenticating_proxy_logs_everything_and_nothing_holds_the_password(
        convbench, capsys, tmp_path, monkeypatch):
    """A password with every hostile character, in tracking.uri of a sweep of two joblib worker processes:
    the jobs reach the store through a proxy that checks the password; no output, no file of the sweep,
    of the server's database or of its artifacts holds the password in any form."""
    secret = "p@ss/w0rd:100% ü x"
    monkeypatch.delenv(credentials.PASSWORD_ENV, raising=False)
    mlf.client.cache_clear()
    with make_server(tmp_path, f"sqlite:///{tmp_path}/server.db") as upstream:
        _Guard.upstream, _Guard.expected, _Guard.refused = upstream, f"alice:{secret}".encode("latin-1"), []
        guard = ThreadingHTTPServer(("127.0.0.1", 0), _Guard)
        threading.Thread(target=guard.serve_forever, daemon=True).start()
        try:
            uri = f"http://alice:{secret}@127.0.0.1:{guard.server_address[1]}"
            code = convbench("-m", "algo=pytorch,scalar", *QUICK, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                             f"tracking.uri='{uri}'", "tracking.experiment=guarded",
                             f"hydra.sweep.dir={tmp_path / 'sweep'}")
            out = capsys.readouterr()
            runs = runs_of(upstream, "guarded") if code == 0 else []
        finally:
            guard.shutdown()
            guard.server_close()
    assert code == 0, out.err[-3000:]
    assert len(runs) == 3 and {r["info"]["status"] for r in runs} == {"FINISHED"} and not _Guard.refused
    assert "alice:***@127.0.0.1" in _written(tmp_path / "sweep")          # multirun.yaml, .hydra/: masked
    assert f"in the UI: http://alice@127.0.0.1:{guard.server_address[1]}/#/experiments/" in out.out  # a link that opens
    assert not _leaks(out.out + out.err, secret), out.err[-2000:]
    assert not _leaks(_written(tmp_path), secret)       # sweep dir, server.db (params, tags), artifacts


def test_a_single_run_keeps_the_password_off_disk_and_out_of_its_outbox(convbench, capsys, tmp_path, monkeypatch,
                                                                       recorder):
    port, seen = recorder
    secret = "p@ss/w0rd:100% ü x"
    monkeypatch.delenv(credentials.PASSWORD_ENV, raising=False)
    mlf.client.cache_clear()
    code = convbench("algo=pytorch", *QUICK, f"tracking.uri='http://alice:{secret}@127.0.0.1:{port}'",
                     f"hydra.run.dir={tmp_path / 'run'}")
    out = capsys.readouterr()
    assert code == 1 and "NOT LOGGED" in out.out           # measured, kept in the outbox: the server refused
    assert seen and not _leaks(out.out + out.err, secret)
    written = _written(tmp_path / "run")
    assert "outbox" in written or list((tmp_path / "run").rglob("record.json"))
    assert "alice:***@127.0.0.1" in written and not _leaks(written, secret)


def test_a_password_in_another_override_is_refused(convbench, capsys, tmp_path):
    code = convbench("-m", "algo=pytorch", *QUICK, f"tracking.uri=sqlite:///{tmp_path / 'm.db'}",
                     "+extra=http://bob:hunter2@elsewhere", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    err = capsys.readouterr().err
    assert code == 2 and "MLFLOW_TRACKING_PASSWORD" in err and "hunter2" not in err
    assert not (tmp_path / "sweep").exists() or "hunter2" not in _written(tmp_path / "sweep")
