"""A run's life under faults: signals, runs left RUNNING by dead processes, a new store opened by many
processes at once, sweeps sharing a directory, a crashed worker of a parallel launcher."""
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from experiments.tracking import contract
from experiments.tracking import mlflow_log as mlf
from experiments.tracking import stale

from .servers import REPO, fresh_joblib_workers  # noqa: F401 (fixture)
from .test_harness_sweep import SMALL, _runs, _split

QUICK = [*SMALL, "energy=off"]


def _dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def _run_with_process(uri, experiment, name, host, pid, started=None):
    tags = {contract.T_HOST: host, contract.T_PID: str(pid), contract.T_RUN_KIND: "job"}
    if started is not None:
        tags[contract.T_PROCESS_START] = f"{started:.3f}"
    # the client directly: mlf.start_run would count it among this test process's own open runs
    return mlf.client(uri).create_run(mlf.experiment_id(uri, experiment), run_name=name, tags=tags).info.run_id


def _my_start() -> float:
    return float(stale.process_tags()[contract.T_PROCESS_START])


# --- 1. signals and stale runs ------------------------------------------------------------

def _running_jobs(uri):
    try:
        return [r for r in _runs(uri) if r.info.status == "RUNNING" and r.data.tags.get(contract.T_RUN_KIND) == "job"]
    except Exception:     # the store is being created
        return []


def _stop_sweep_while_measuring(tmp_path, launcher: list[str], measuring: int):
    """`kill` (what `timeout` and SLURM send) to run.py once ``measuring`` jobs of 3 measure; returns
    (exit code, stdout, stderr, the store's runs, run.py's pid)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    process = subprocess.Popen(
        [sys.executable, str(REPO / "run.py"), "-m", *launcher, "algo=scalar,pytorch,im2col", *QUICK,
         "bench.model.min_time_s=120", "bench.model.max_time_s=120", f"tracking.uri={uri}",
         f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        cwd=tmp_path, stdout=open(out, "w"), stderr=open(err, "w"))
    try:
        deadline = time.time() + 300
        while len(_running_jobs(uri)) < measuring:
            assert process.poll() is None and time.time() < deadline, err.read_text()[-3000:]
            time.sleep(1)
        time.sleep(2)      # into the measurement
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    return code, out.read_text(), err.read_text(), _runs(uri), process.pid


def test_sigterm_in_the_middle_of_a_sweep_leaves_no_run_running(tmp_path):
    """The in-flight job and the parent are KILLED with the reason, the summary is printed, exit 143,
    no traceback, nothing left RUNNING."""
    code, out, err, runs, pid = _stop_sweep_while_measuring(tmp_path, [], measuring=1)
    assert code == 143, err[-3000:]
    assert "Traceback" not in err + out
    assert "job 1/3 resnet18/scalar/fp32/dense: KILLED (stopped by SIGTERM)" in err
    assert "0 of 3 jobs ok" in err and "(stopped by SIGTERM)" in err.strip().splitlines()[-1]
    assert [r.info.run_name for r in runs if r.info.status == "RUNNING"] == []
    (parent,), (child,) = _split(runs)
    assert parent.info.status == child.info.status == "KILLED"
    assert child.data.tags[contract.T_ERROR] == "stopped by SIGTERM"
    assert child.data.tags[contract.T_STATUS] == "failed"
    assert "stopped by SIGTERM" in parent.data.tags[contract.T_ERROR]
    assert child.data.tags[contract.T_PID] == parent.data.tags[contract.T_PID] == str(pid)
    assert child.data.tags[contract.T_HOST] == socket.gethostname()


@pytest.mark.slow   # two joblib workers: about 60 s on 2 cores
def test_sigterm_in_the_middle_of_a_joblib_sweep_leaves_no_run_running_and_no_process(tmp_path):
    """joblib kills its workers and their job processes: the sweep closes those jobs' runs as KILLED."""
    code, out, err, runs, pid = _stop_sweep_while_measuring(
        tmp_path, ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], measuring=2)
    assert code == 143 and "Traceback" not in err + out, err[-3000:]
    assert [r.info.run_name for r in runs if r.info.status == "RUNNING"] == []
    (parent,), children = _split(runs)
    assert len(children) == 2 and parent.info.status == "KILLED"
    for child in children:
        assert child.info.status == "KILLED"
        assert "stopped by SIGTERM" in child.data.tags[contract.T_ERROR]
        assert not stale.process_alive(child.data.tags)


def test_ctrl_c_closes_the_job_and_the_parent_killed_and_exits_130(convbench, tmp_path, monkeypatch, capsys):
    from experiments.harness import job

    def interrupted(self):
        raise KeyboardInterrupt      # where the default handler raises it (a job process of a launcher)

    monkeypatch.setattr(job.Job, "run", interrupted)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    code = convbench("-m", "algo=scalar,pytorch", *QUICK, f"tracking.uri={uri}")
    err = capsys.readouterr().err
    assert code == 130 and "Traceback" not in err
    assert "0 of 2 jobs ok" in err and "stopped by SIGINT" in err
    (parent,), (child,) = _split(_runs(uri))
    assert parent.info.status == child.info.status == "KILLED"
    assert child.data.tags[contract.T_ERROR] == "stopped by SIGINT"


def test_ctrl_c_in_a_single_run_closes_its_run_killed_and_exits_130(convbench, tmp_path, monkeypatch, capsys):
    from experiments.harness import job

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(job.Job, "run", interrupted)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert convbench("algo=scalar", *QUICK, f"tracking.uri={uri}") == 130
    err = capsys.readouterr().err
    assert "job resnet18/scalar/fp32/dense: KILLED (stopped by SIGINT)" in err and "Traceback" not in err
    (run,) = _runs(uri)
    assert run.info.status == "KILLED" and run.data.tags[contract.T_ERROR] == "stopped by SIGINT"


def test_a_sweep_closes_runs_left_running_by_dead_processes_of_this_host(convbench, tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    host = socket.gethostname()
    dead = _run_with_process(uri, "convbench", "dead", host, _dead_pid())
    alive = _run_with_process(uri, "convbench", "alive", host, os.getpid(), _my_start())
    reused = _run_with_process(uri, "convbench", "reused pid", host, os.getpid(), 1.0)   # same pid, older process
    elsewhere = _run_with_process(uri, "convbench", "other host", "elsewhere.example", 1)
    code = convbench("-m", "algo=pytorch", *QUICK, f"tracking.uri={uri}")
    out = capsys.readouterr().out
    assert code == 0
    assert "closed 2 run(s) of experiment 'convbench' as KILLED" in out
    client = mlf.client(uri)
    for run_id in (dead, reused):
        run = client.get_run(run_id)
        assert run.info.status == "KILLED" and "ended without closing it" in run.data.tags[contract.T_ERROR]
    assert client.get_run(alive).info.status == client.get_run(elsewhere).info.status == "RUNNING"
    (parent,), _ = _split(_runs(uri))
    assert parent.data.metrics[contract.STALE_RUNS_CLOSED] == 2


def test_stale_command_closes_other_hosts_runs_older_than_the_age(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    old = _run_with_process(uri, "e", "old", "node7", 4242)
    young = _run_with_process(uri, "e", "young", "node8", 4242)
    mine = _run_with_process(uri, "e", "mine", socket.gethostname(), os.getpid(), _my_start())
    with mlf.client(uri)._tracking_client.store.ManagedSessionMaker() as session:   # started 7 h ago
        from mlflow.store.tracking.dbmodels.models import SqlRun
        session.query(SqlRun).filter(SqlRun.run_uuid.in_([old, mine])).update(
            {SqlRun.start_time: int((time.time() - 7 * 3600) * 1000)})
    assert stale.main(["--older-than", "6h", "--tracking-uri", uri, "--dry-run"]) == 0
    assert "would close 1 RUNNING run(s)" in capsys.readouterr().out
    assert mlf.client(uri).get_run(old).info.status == "RUNNING"
    assert stale.main(["--older-than", "6h", "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    assert f"closed {old} (old) as KILLED" in out and "closed 1 RUNNING run(s)" in out
    client = mlf.client(uri)
    assert client.get_run(old).info.status == "KILLED"
    assert "still RUNNING 7.0 h after its start on node7" in client.get_run(old).data.tags[contract.T_ERROR]
    assert client.get_run(young).info.status == client.get_run(mine).info.status == "RUNNING"
    with pytest.raises(SystemExit):
        stale.main(["--older-than", "six hours", "--tracking-uri", uri])
    assert "'six hours' is not a duration" in capsys.readouterr().err


# --- 2. a new store opened by many processes at once ---------------------------------------

_OPEN_AT_ONCE = """
import sys, time
from experiments.tracking import mlflow_log as mlf
import mlflow.store.tracking.sqlalchemy_store  # imported before the start line: the race is on the store
uri, start_at = sys.argv[1], float(sys.argv[2])
time.sleep(max(0.0, start_at - time.time()))
run_id = mlf.start_run(uri, "race", "job", {})
mlf.log(uri, run_id, metrics={"x": 1})
mlf.finish(uri, run_id, True)
"""


def test_four_processes_starting_at_once_on_a_new_sqlite_store_all_succeed(tmp_path):
    """Without the lock beside the database, MLflow's schema migration runs in all four at once and
    fails (`table _alembic_tmp_... already exists`)."""
    uri = f"sqlite:///{tmp_path / 'new.db'}"
    start_at = time.time() + 15     # every process has imported MLflow by then
    processes = [subprocess.Popen([sys.executable, "-c", _OPEN_AT_ONCE, uri, str(start_at)], cwd=REPO,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(4)]
    outputs = [p.communicate(timeout=240)[0] for p in processes]
    assert [p.returncode for p in processes] == [0] * 4, "\n".join(o[-1500:] for o in outputs)
    runs = _runs(uri, "race")
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    assert (tmp_path / "new.db.lock").is_file()


# --- 4. sweeps sharing a directory ----------------------------------------------------------

def test_a_sweep_rerun_into_the_same_directory_counts_and_attaches_its_own_jobs(convbench, tmp_path, capsys):
    uri, sweep_dir = f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "one-dir"
    assert convbench("-m", "algo=scalar,pytorch", *QUICK, f"tracking.uri={uri}", f"hydra.sweep.dir={sweep_dir}") == 0
    assert "2 of 2 jobs ok" in capsys.readouterr().out
    assert convbench("-m", "algo=pytorch", *QUICK, f"tracking.uri={uri}", f"hydra.sweep.dir={sweep_dir}") == 0
    assert "1 of 1 jobs ok" in capsys.readouterr().out
    parents, children = _split(_runs(uri))
    by_parent = {p.info.run_id: sorted(c.data.params[contract.P_ALGO] for c in children
                                       if c.data.tags["mlflow.parentRunId"] == p.info.run_id) for p in parents}
    assert sorted(by_parent.values()) == [["pytorch"], ["pytorch", "scalar"]]
    assert {p.data.metrics[contract.JOBS_OK] for p in parents} == {1, 2}


@pytest.mark.slow   # two run.py processes at once: about 60 s on 2 cores
def test_two_sweeps_at_once_in_one_directory_each_count_and_attach_their_own_jobs(tmp_path):
    uri, sweep_dir = f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "shared"
    mlf.client(uri)   # the store exists before: this is about the sweep state, not the store's creation
    sweeps = {algos: subprocess.Popen(
        [sys.executable, str(REPO / "run.py"), "-m", f"algo={algos}", *QUICK, f"tracking.uri={uri}",
         f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for algos in ("scalar,pytorch", "pytorch,scalar,im2col")}
    outputs = {algos: p.communicate(timeout=600)[0] for algos, p in sweeps.items()}
    for algos, process in sweeps.items():
        assert process.returncode == 0, outputs[algos][-3000:]
    assert "2 of 2 jobs ok" in outputs["scalar,pytorch"] and "3 of 3 jobs ok" in outputs["pytorch,scalar,im2col"]
    parents, children = _split(_runs(uri))
    assert len(parents) == 2
    attached = sorted(sorted(c.data.params[contract.P_ALGO] for c in children
                             if c.data.tags["mlflow.parentRunId"] == p.info.run_id) for p in parents)
    assert attached == [["im2col", "pytorch", "scalar"], ["pytorch", "scalar"]]


# --- 5. a crashed worker of a parallel launcher ---------------------------------------------

_FAULTS = """
import os, signal
from experiments.harness import job
_run = job.Job.run
def run(self):
    if self.spec.seed == 13:
        os.kill(os.getpid(), signal.SIGSEGV)
    if self.spec.seed == 14:
        os._exit(3)
    if self.spec.seed == 15:
        os.kill(os.getpid(), signal.SIGTERM)     # `kill` of this one job's process
    if self.spec.seed == 16:
        os.kill(os.getpid(), signal.SIGKILL)     # what the out-of-memory killer sends
    return _run(self)
job.Job.run = run
"""


@pytest.mark.slow   # a joblib sweep, two workers: about 60 s on 2 cores
def test_a_crashed_joblib_job_fails_with_the_reason_and_the_sweep_goes_on(tmp_path, convbench, monkeypatch, capsys,
                                                                        fresh_joblib_workers):
    """Jobs seed=13 (segfault), 14 (os._exit) and 16 (SIGKILL, as from the OOM killer) die in the middle
    of their work, seed=15 is sent SIGTERM (its run: KILLED); the other jobs, before and after them on
    the same workers, finish."""
    faults = tmp_path / "faults"
    faults.mkdir()
    (faults / "sitecustomize.py").write_text(_FAULTS)       # imported by every worker process at its start
    monkeypatch.setenv("PYTHONPATH", f"{faults}{os.pathsep}{REPO}")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    code = convbench("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "algo=pytorch", "seed=0,13,1,14,2,15,16",
                     *QUICK, f"tracking.uri={uri}")
    err = capsys.readouterr().err
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert "3 of 7 jobs ok" in last and "FAILED 4" in last, err[-3000:]
    assert "crashed: its process died of SIGKILL (the out-of-memory killer, or kill -9)" in last
    assert "crashed: its process died of SIGSEGV (a segmentation fault)" in last
    assert "crashed: its process exited with code 3" in last
    assert "crashed: its process was stopped by SIGTERM" in last
    parents, children = _split(_runs(uri))
    assert len(children) == 7 and parents[0].info.status == "FAILED"
    by_seed = {c.data.params["seed"]: c for c in children}
    assert {s for s, c in by_seed.items() if c.info.status == "FINISHED"} == {"0", "1", "2"}
    assert by_seed["13"].info.status == by_seed["14"].info.status == by_seed["16"].info.status == "FAILED"
    assert "SIGSEGV" in by_seed["13"].data.tags[contract.T_ERROR]
    assert "exited with code 3" in by_seed["14"].data.tags[contract.T_ERROR]
    assert by_seed["15"].info.status == "KILLED"        # closed by the job itself, with the reason
    assert by_seed["15"].data.tags[contract.T_ERROR] == "stopped by SIGTERM"


def test_the_report_closes_runs_left_running_by_dead_processes_and_says_how_many(tmp_path, capsys):
    from analysis.report import main
    from tests.report_fixtures import SyntheticStore, timing

    store = SyntheticStore(tmp_path)
    store.parent("s1")
    store.job("im2col", metrics=timing(2.0))
    left = store.client.create_run(store.experiment_id, run_name="left running", tags={
        contract.T_RUN_KIND: "job", contract.T_HOST: socket.gethostname(), contract.T_PID: str(_dead_pid())})
    assert main(["--tracking-uri", store.uri, "--out", str(tmp_path / "reports")]) == 0
    assert "report: closed 1 run(s) left RUNNING by processes that are gone" in capsys.readouterr().out
    assert store.client.get_run(left.info.run_id).info.status == "KILLED"
    markdown = "".join(p.read_text() for p in (tmp_path / "reports").glob("*.md"))
    assert "1 run(s) left RUNNING by processes of this host that are gone were closed as KILLED" in markdown
