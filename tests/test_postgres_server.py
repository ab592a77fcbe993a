"""`make server` on a real PostgreSQL (Debian's postgresql package), started by the test on 127.0.0.1:
a sweep of parallel jobs logs to it over HTTP, and the runs are read back by REST and from PostgreSQL.

The cluster is a throwaway one (initdb in a temporary directory, pg_ctl on a free port, trust auth
on loopback only). PostgreSQL refuses to run as root, so as root it runs as the `postgres` user
that the package creates. Without the server binaries the test skips and says why; .ci/run
installs them, so CI runs it.
"""
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from experiments.tracking import contract

from .servers import free_port, fresh_joblib_workers, make_server, metrics_of, runs_of, tags_of  # noqa: F401
from .test_cluster_sweeps import TINY


def _bindir() -> Path | None:
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(Path(d).parent.name), reverse=True)
    found = shutil.which("initdb")
    for directory in [*map(Path, dirs), *([Path(found).resolve().parent] if found else [])]:
        if (directory / "initdb").is_file() and (directory / "pg_ctl").is_file():
            return directory
    return None


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server on 127.0.0.1 with an empty database `mlflow`; yields its URI."""
    bindir = _bindir()
    if bindir is None:
        pytest.skip("PostgreSQL's server binaries (initdb, pg_ctl) are not installed: apt-get install postgresql "
                    "(.ci/run does)")
    as_user = {}
    directory = Path(tempfile.mkdtemp(prefix="convbench-pg-"))   # not pytest's tmp: root-only when run as root
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` user to run PostgreSQL as")
        os.chown(directory, account.pw_uid, account.pw_gid)
        as_user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    data, port = directory / "data", free_port()
    run = dict(cwd=directory, capture_output=True, text=True, timeout=120, **as_user)
    try:
        done = subprocess.run([str(bindir / "initdb"), "-D", str(data), "-U", "convbench", "--auth=trust", "-E", "UTF8",
                               "--locale=C", "--no-sync"], **run)
        assert done.returncode == 0, done.stdout + done.stderr
        options = f"-h 127.0.0.1 -p {port} -k {directory} -c fsync=off -c synchronous_commit=off"
        done = subprocess.run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(directory / "postgres.log"), "-w",
                               "-t", "60", "-o", options, "start"], **run)
        assert done.returncode == 0, done.stdout + done.stderr + (directory / "postgres.log").read_text()
        import psycopg
        with psycopg.connect(host="127.0.0.1", port=port, user="convbench", dbname="postgres",
                             autocommit=True) as connection:
            connection.execute("CREATE DATABASE mlflow")
        yield f"postgresql://convbench@127.0.0.1:{port}/mlflow"
    finally:
        if data.is_dir():
            subprocess.run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], **run)
        shutil.rmtree(directory, ignore_errors=True)


def test_parallel_sweep_through_mlflow_server_on_postgresql(postgres, tmp_path, convbench, capsys,
                                                            fresh_joblib_workers):
    with make_server(tmp_path, postgres) as url:
        code = convbench("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "algo=pytorch,scalar", *TINY,
                         "energy=off", f"tracking.uri={url}", "tracking.experiment=postgres-test")
        out = capsys.readouterr()
        assert code == 0, out.err[-3000:]
        runs = runs_of(url, "postgres-test")
    parents = [r for r in runs if tags_of(r).get(contract.T_RUN_KIND) == "parent"]
    children = [r for r in runs if tags_of(r).get(contract.T_RUN_KIND) == "job"]
    assert len(parents) == 1 and len(children) == 2
    assert all(r["info"]["status"] == "FINISHED" for r in runs)
    assert {tags_of(r)["mlflow.parentRunId"] for r in children} == {parents[0]["info"]["run_id"]}
    for child in children:
        assert {contract.LATENCY_MS, contract.BASELINE_LATENCY_MS, contract.MAX_REL_ERR} <= set(metrics_of(child))
    # the runs are rows of PostgreSQL itself, not of some fallback store
    import psycopg
    with psycopg.connect(postgres) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT r.status, count(*) FROM runs r JOIN experiments e ON r.experiment_id = e.experiment_id "
                       "WHERE e.name = 'postgres-test' GROUP BY r.status")
        assert dict(cursor.fetchall()) == {"FINISHED": 3}
        cursor.execute("SELECT count(*) FROM latest_metrics WHERE key = %s", (contract.LATENCY_MS,))
        assert cursor.fetchone()[0] == 2
