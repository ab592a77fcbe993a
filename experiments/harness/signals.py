"""SIGTERM and SIGINT end the current job and the sweep cleanly.

SIGTERM is what `timeout`, `kill` and a SLURM time limit send; SIGINT is Ctrl-C. While run.py runs,
either raises ``Stopped`` in the main thread: the job in flight closes its run as KILLED with the
reason (runner.run_job), the sweep closes its parent as KILLED and prints its summary
(sweep.abort_open_sweeps), and run.py exits 128 + the signal's number (143, 130), without a
traceback. A second signal during that clean-up ends the process at once; what it leaves RUNNING
is closed as KILLED by the next sweep (experiments/tracking/stale.py).

``Stopped`` is a BaseException, like KeyboardInterrupt: the ``except Exception`` that keeps a failed
job from stopping a sweep must not catch it, and neither does Hydra's error reporting.
"""
from __future__ import annotations

import os
import signal
from contextlib import contextmanager

SIGNALS = (signal.SIGTERM, signal.SIGINT)

_stopping = False


class Stopped(BaseException):
    """``status``: how the job's run is closed, KILLED (stopped on purpose) or FAILED (its process was lost)."""

    def __init__(self, signum: int, reason: str | None = None, status: str = "KILLED"):
        self.signum, self.status = signum, status
        self.reason = reason or f"stopped by {signal.Signals(signum).name}"
        super().__init__(self.reason)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def as_stop(exc: BaseException) -> Stopped | None:
    """The stop an exception stands for: Stopped itself, or a KeyboardInterrupt raised where our
    handler was not installed (a job process of a launcher); None for anything else."""
    if isinstance(exc, Stopped):
        return exc
    if isinstance(exc, KeyboardInterrupt):
        return Stopped(signal.SIGINT)
    return None


def _raise_stopped(signum, frame) -> None:
    global _stopping
    if _stopping:   # the user insists: no more clean-up
        os.write(2, f"\nconvbench: {signal.Signals(signum).name} again: quitting without closing the runs\n".encode())
        os._exit(128 + signum)
    _stopping = True
    os.write(2, f"\nconvbench: {signal.Signals(signum).name}: stopping; closing the runs as KILLED\n".encode())
    raise Stopped(signum)


@contextmanager
def stop_on_signals():
    """Within: SIGTERM and SIGINT raise Stopped (main thread only; elsewhere nothing changes)."""
    global _stopping
    import threading
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in SIGNALS}
    _stopping = False
    for signum in SIGNALS:
        signal.signal(signum, _raise_stopped)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
