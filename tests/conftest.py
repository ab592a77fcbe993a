"""Shared fixtures. Tests run in run.py's process environment (MLflow telemetry off, short thread
spins), set by importing it before anything loads mlflow, torch or numpy."""
import socket
import sys

import pytest

import run  # noqa: F401  (sets os.environ first)

_LOCAL_HOSTS = {"127.0.0.1", "::1", "localhost", "0.0.0.0"}


@pytest.fixture
def network_attempts(monkeypatch):
    """Refuses and records every connection or name lookup that would leave this machine."""
    attempts: list = []
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def connect(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if self.family != socket.AF_UNIX and host not in _LOCAL_HOSTS:
            attempts.append(address)
            raise ConnectionRefusedError(f"test refused a network connection to {address}")
        return real_connect(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if host not in _LOCAL_HOSTS and host is not None:
            attempts.append(host)
            raise socket.gaierror(f"test refused a name lookup of {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return attempts


@pytest.fixture
def convbench(monkeypatch, tmp_path):
    """Runs ``python run.py ARGS`` in this process, in tmp_path; returns the exit code."""
    from hydra.core.global_hydra import GlobalHydra

    monkeypatch.chdir(tmp_path)

    def invoke(*args: str) -> int:
        GlobalHydra.instance().clear()
        monkeypatch.setattr(sys, "argv", ["run.py", *args])
        try:
            return run.main()
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else 1
        finally:
            GlobalHydra.instance().clear()
    return invoke


@pytest.fixture
def one_tap_off_numpy(monkeypatch):
    """The numpy path reads tap (0, 0) of channel 0 from (0, 1): every algorithm and depthwise use it."""
    from experiments.conv import reference   # here, not at the top: run's environment comes first
    right = reference._shifted_planes

    def wrong(padded, g, kh, kw):
        planes = right(padded, g, kh, kw)
        if (kh, kw) == (0, 0) and g.kernel_w > 1:
            planes = planes.copy()
            planes[:, 0] = right(padded, g, 0, 1)[:, 0]
        return planes
    monkeypatch.setattr(reference, "_shifted_planes", wrong)


@pytest.fixture(scope="session")
def whole_store(tmp_path_factory):
    """A new, empty sqlite store made once per session (its creation takes seconds): copy it to start from one."""
    from experiments.tracking import mlflow_log as mlf
    db = tmp_path_factory.mktemp("whole-store") / "mlflow.db"
    mlf.client(f"sqlite:///{db}")
    return db
