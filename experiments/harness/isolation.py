"""A job of a parallel launcher runs in a child process of its worker, so that its crash fails the job only.

A joblib worker that dies (a segfault in a kernel or a library, ``os._exit``, the kernel's
out-of-memory killer) breaks joblib's whole pool and ends the sweep at the jobs done so far. So the
worker forks, the job runs in the child and sends its report back through a pipe; a child that dies
without one is this job's failure, with the reason (the signal, or the exit code), and the worker
goes on with the next job. A child whose worker dies (the sweep was stopped) gets SIGTERM and closes its
run as KILLED. The fork copies a worker that has done nothing yet but import the
harness and pick its GPU (devices.py): no MLflow client or GPU context crosses it, the worker
never opens one (closing a crashed job's run happens in a child too).
"""
from __future__ import annotations

import os
import pickle
import signal
import sys
from typing import Callable, TypeVar

from .signals import stop_on_signals

T = TypeVar("T")

_PR_SET_PDEATHSIG = 1   # linux/prctl.h

_WHY = {signal.SIGSEGV: "a segmentation fault", signal.SIGBUS: "a bus error", signal.SIGABRT: "an abort",
        signal.SIGFPE: "a floating-point exception", signal.SIGILL: "an illegal instruction",
        signal.SIGKILL: "the out-of-memory killer, or kill -9"}


class ChildDied(RuntimeError):
    def __init__(self, pid: int, reason: str):
        self.pid, self.reason = pid, reason
        super().__init__(reason)


def describe(exit_code: int) -> str:
    """os.waitstatus_to_exitcode's value -> what happened, in words."""
    if exit_code < 0:
        sig = signal.Signals(-exit_code)
        return f"its process died of {sig.name}" + (f" ({_WHY[sig]})" if sig in _WHY else "")
    if exit_code - 128 in (signal.SIGTERM, signal.SIGINT):   # signals.Stopped: the job closed its run as KILLED
        return f"its process was stopped by {signal.Signals(exit_code - 128).name}"
    return f"its process exited with code {exit_code} without a result (os._exit, or a library calling exit)"


WORKER_DIED = signal.SIGUSR1     # what the job's process gets when its worker dies (PR_SET_PDEATHSIG)


def _end_with(worker: int) -> None:
    """WORKER_DIED to this process when the worker dies (killed, out of memory, or a stopped sweep's launcher
    killing its workers, not their children): the job then closes its run as FAILED with the reason
    instead of running on, orphaned."""
    def worker_died(signum, frame):
        from .signals import Stopped
        raise Stopped(signum, f"its worker process {worker} died (killed, or out of memory) while it ran; the "
                              f"launcher runs the sweep's other jobs", status="FAILED")

    signal.signal(WORKER_DIED, worker_died)
    if sys.platform.startswith("linux"):
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, WORKER_DIED)
    if os.getppid() != worker:      # it died before the line above
        os.kill(os.getpid(), WORKER_DIED)


def in_child(call: Callable[[], T]) -> T:
    """``call()`` in a forked child; its return value comes back pickled. Raises ChildDied when the child
    ends without one."""
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    worker = os.getpid()
    pid = os.fork()
    if pid == 0:   # the child: never returns into the worker's code
        os.close(read_fd)
        code = 0
        try:
            _end_with(worker)
            with os.fdopen(write_fd, "wb") as pipe, stop_on_signals():
                pickle.dump(call(), pipe)
        except BaseException as exc:   # SIGTERM/SIGINT closed the run already (runner.run_job)
            code = getattr(exc, "exit_code", 130 if isinstance(exc, KeyboardInterrupt) else 1)
            if code == 1:
                import traceback
                traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        payload = pipe.read()
    _, status = os.waitpid(pid, 0)
    exit_code = os.waitstatus_to_exitcode(status)
    if exit_code != 0 or not payload:
        raise ChildDied(pid, describe(exit_code))
    return pickle.loads(payload)
