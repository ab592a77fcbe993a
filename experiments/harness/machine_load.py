"""Was the machine quiet while a job ran? Its load at the job's start and end, and the other busy processes.

A job's speedup is a ratio inside the job, but a process that loads the CPU (another sweep, a build, a
browser) slows whatever it overlaps, and the PyTorch baseline of one job stops being comparable with the
next one's (experiments/tracking/drift.py). The job records both snapshots and warns when one was not
quiet: another process used at least a tenth of a core over a short sample (on a crowded machine no
process gets much more than its share), or more processes were runnable than there are CPUs (1-minute
load average).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

import psutil

BUSY_CPU_PERCENT = 10.0   # of one core, over the sample: a process this busy competes with the job
SAMPLE_S = 0.2
SHOWN = 3                 # the busiest processes named in words


@dataclass(frozen=True)
class LoadSnapshot:
    load_avg_1min: float
    cpus: int
    busy: tuple[str, ...]        # other processes at BUSY_CPU_PERCENT or more: 'name (pid 123, 97% CPU)'

    @property
    def quiet(self) -> bool:
        return not self.busy and self.load_avg_1min <= self.cpus

    def text(self) -> str:
        head = f"load average {self.load_avg_1min:.2f} on {self.cpus} CPUs"
        more = f" and {len(self.busy) - SHOWN} more" if len(self.busy) > SHOWN else ""
        return head + (f", busy: {', '.join(self.busy[:SHOWN])}{more}" if self.busy else "")


def _own_pids() -> set[int]:
    """This process and its children (a job's forked worker is the job itself)."""
    me = psutil.Process()
    try:
        return {me.pid, *(child.pid for child in me.children(recursive=True))}
    except psutil.Error:
        return {me.pid}


def snapshot(sample_s: float = SAMPLE_S) -> LoadSnapshot:
    """The 1-minute load average and the processes other than this job's busy over ``sample_s`` seconds."""
    own = _own_pids()
    processes = [p for p in psutil.process_iter(["name"]) if p.pid not in own]
    for process in processes:
        try:
            process.cpu_percent(None)     # starts the process's sample
        except psutil.Error:
            pass
    time.sleep(sample_s)
    busy = []
    for process in processes:
        try:
            percent = process.cpu_percent(None)
        except psutil.Error:              # gone meanwhile, or not ours to read
            continue
        if percent >= BUSY_CPU_PERCENT:
            busy.append((percent, f"{process.info['name']} (pid {process.pid}, {percent:.0f}% CPU)"))
    return LoadSnapshot(os.getloadavg()[0], psutil.cpu_count() or 1,
                        tuple(text for _, text in sorted(busy, reverse=True)))


def warning(start: LoadSnapshot | None, end: LoadSnapshot | None) -> str:
    """'' when both snapshots were quiet, else what was busy, for the job's closing line."""
    noisy = [f"{when}: {shot.text()}" for when, shot in (("at start", start), ("at end", end))
             if shot is not None and not shot.quiet]
    if not noisy:
        return ""
    return "machine NOT quiet (" + "; ".join(noisy) + "): timings may be slowed and PyTorch's baseline may drift"
