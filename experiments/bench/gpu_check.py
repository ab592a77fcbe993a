"""make gpu-check: the first thing to run on a GPU machine, fitted to a short slot (--budget-s, 420 s by
default; sized from the parts' protocols, not yet timed on a GPU). The parts run in the order of what
they tell, each in its own process group, each stopped at its share of the budget:

    1. tests:  every kernel's correctness on the device (pytest -m gpu)
    2. sweep:  the product card's sweep (algo=im2col,kn2row,scalar) on the GPU into a fresh MLflow store
    3. ladder: bench-ladder --quick, every rung and tile of the GEMM ladder against cuBLAS FP32 (TF32 off)
               at 4096^3 and on resnet18's and vgg16's im2col GEMMs at batch 1 and 32; im2col, the
               shift-add and depthwise as fractions of the device-to-device copy bandwidth
    4. layers: bench-layers --quick on resnet18, vgg16 and mobilenet_v2 at batch 1, then 32: every conv
               layer by every variant against PyTorch, the blocked GEMM at every tile against cuBLAS

A part's share is the time left times its weight over the weights of the parts still to run, so time a
part leaves unused goes to the next ones. At its share a part gets SIGTERM (run.py closes its MLflow runs
as KILLED), then SIGKILL after a grace period; the benchmarks rewrite their tables after every row, so a
stopped part keeps what it measured. The results file, results/<date>-gpu-check-<device>.md, is
rewritten before the first part, after every part and on SIGTERM or Ctrl-C (its parts ended first,
nothing left running); the parts' tables, logs and MLflow store (`mlflow ui --backend-store-uri
sqlite:///...`) are in the folder of the same name beside it. Progress is printed as it goes.

Each part runs with this interpreter (``make gpu-check PYTHON=python3`` runs from an existing GPU
environment, installing nothing); a part whose packages are missing is skipped with a note. Without a
GPU that CuPy and torch both see it stops at once (exit 2), saying how to rehearse.

--rehearse runs every part on the emulator runtime at tiny sizes, through the same code (the parts'
commands differ only in backend and sizes), into <date>-gpu-check-rehearsal.md: what CI runs so that
a line only a GPU would run cannot crash unseen on the first GPU.

    python -m experiments.bench.gpu_check [--budget-s 420] [--out-dir results] [--parts tests sweep ladder layers]
    python -m experiments.bench.gpu_check --rehearse [--out-dir DIR] [--budget-s 1200]

Exit: 0 when no part failed (a part stopped at its share is not a failure: the file says what it cut),
1 when one failed, 2 for no GPU or a bad option, 128 + the signal when stopped by SIGTERM or SIGINT.
"""
from __future__ import annotations

import argparse
import collections
import datetime
import importlib.util
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from experiments.bench import document
from experiments.harness.signals import Stopped

EXIT_NO_GPU = 2
EXIT_FAILED = 1
DEFAULT_BUDGET_S = 420
REHEARSAL_BUDGET_S = 1200   # the emulator on a busy CPU: minutes; a rehearsal is not fitted to a slot
PARTS = ("tests", "sweep", "ladder", "layers")   # the order they run in: what each tells first
WEIGHTS = {"tests": 2, "sweep": 3, "ladder": 2, "layers": 3}   # of the budget still left when a part starts
GRACE_S = 10.0          # from a part's SIGTERM to its SIGKILL, at most (and at most a tenth of its share)
OUTPUT_TAIL = 40        # lines of a part's output kept in the results file
REPO = Path(__file__).resolve().parents[2]
GPU_MARK = "pytest.mark.gpu"


@dataclass(frozen=True)
class Sizes:
    """What the parts run on: the GPU's sizes, or the rehearsal's tiny ones on the emulator."""
    backend: str
    layer_models: tuple[str, ...]
    layer_batches: tuple[int, ...]
    ladder_models: tuple[str, ...]
    ladder_batches: tuple[int, ...]
    extra_layers: tuple[str, ...] = ()   # bench-layers options beyond the shared ones
    extra_ladder: tuple[str, ...] = ()
    extra_sweep: tuple[str, ...] = ()    # Hydra overrides beyond backend and store


GPU = Sizes("gpu", ("resnet18", "vgg16", "mobilenet_v2"), (1, 32), ("resnet18", "vgg16"), (1, 32))
# mobilenet_v2's first two distinct layers: a dense one and a depthwise one (no GEMM of its own)
REHEARSAL = Sizes("emulator", ("mobilenet_v2",), (1, 2), ("resnet18",), (1, 2),
                  extra_layers=("--input-size", "16", "--max-layers", "2", "--gemm-size", "24"),
                  extra_ladder=("--input-size", "16", "--max-layers", "1", "--size", "16", "--copy-mb", "4"),
                  extra_sweep=("model=digits_cnn", "bench=smoke", "bench.energy_s=0.5"))


@dataclass(frozen=True)
class Part:
    group: str                  # one of PARTS
    name: str
    command: tuple[str, ...]
    needs: tuple[str, ...]      # importable modules
    markdown: Path | None = None  # where the part writes its tables (--out), if it does
    weight: float = 1.0         # its group's weight, split among the group's parts


@dataclass
class PartResult:
    part: Part
    status: str = "pending"     # pending, running, done, stopped, skipped, not run
    returncode: int | None = None
    seconds: float = 0.0
    allowance_s: float | None = None
    note: str = ""              # why skipped / stopped / not run
    tail: list[str] = field(default_factory=list)
    log: Path | None = None


def parts(python: str, work: Path, sizes: Sizes = GPU) -> list[Part]:
    """The check's parts in the order they run; tables, logs and the sweep's store go into ``work``."""
    backend = sizes.backend
    plan = [Part("tests", "GPU tests", (python, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
                                        *gpu_test_files()),
                 ("pytest", "hypothesis"))]
    plan.append(Part("sweep", "the card's sweep",
                     (python, "run.py", "-m", "algo=im2col,kn2row,scalar", f"backend={backend}",
                      f"tracking.uri=sqlite:///{work / 'mlflow.db'}", f"hydra.sweep.dir={work / 'multirun'}",
                      *sizes.extra_sweep),
                     ("hydra", "mlflow", "codecarbon")))
    plan.append(Part("ladder", "bench-ladder",
                     (python, "-m", "experiments.bench.ladder", "--backend", backend, "--quick",
                      "--models", *sizes.ladder_models, "--batches", *map(str, sizes.ladder_batches),
                      *sizes.extra_ladder, "--out", str(work / "ladder.md")),
                     ("pandas", "tabulate"), work / "ladder.md"))
    plan += [Part("layers", f"bench-layers, batch {batch}",
                  (python, "-m", "experiments.bench.layers", "--backend", backend, "--quick", "--batch", str(batch),
                   "--models", *sizes.layer_models, *sizes.extra_layers, "--out", str(work / f"layers-b{batch}.md")),
                  ("pandas", "tabulate"), work / f"layers-b{batch}.md")
             for batch in sizes.layer_batches]
    count = collections.Counter(part.group for part in plan)
    return [replace(part, weight=WEIGHTS[part.group] / count[part.group]) for part in plan]


def gpu_test_files() -> list[str]:
    """The test files that mark tests gpu: collecting only those saves the slot the rest's imports."""
    return sorted(str(path.relative_to(REPO)) for path in (REPO / "tests").glob("test_*.py")
                  if GPU_MARK in path.read_text())


def missing_modules(part: Part) -> list[str]:
    return [name for name in part.needs if importlib.util.find_spec(name) is None]


def allowance(budget_left_s: float, part: Part, to_run: list[Part]) -> float:
    """The part's share of what is left: its weight over the weights of the parts still to run (itself
    included), so time an earlier part left unused goes to the later ones."""
    return max(0.0, budget_left_s) * part.weight / sum(p.weight for p in to_run)


def grace(share_s: float) -> float:
    return min(GRACE_S, 0.1 * share_s)


def end_group(process: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM to the part's process group, SIGKILL to what is left of it after ``grace_s``; also reaps
    what the part left behind when it exited by itself (a server it started, a worker)."""
    def signal_group(signum):
        try:
            os.killpg(process.pid, signum)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    if process.poll() is None:
        signal_group(signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    signal_group(signal.SIGKILL)   # the leader's group outlives it while any member lives
    process.wait()


class Runner:
    """Runs the parts one after the other within the budget and keeps the results file current."""

    def __init__(self, plan: list[Part], budget_s: float, out: Path, heading: str, work: Path):
        self.results = [PartResult(part) for part in plan]
        self.budget_s, self.out, self.heading, self.work = budget_s, out, heading, work
        self.started = time.monotonic()
        self.process: subprocess.Popen | None = None

    def left_s(self) -> float:
        return self.budget_s - (time.monotonic() - self.started)

    def run(self) -> None:
        self.write()
        for i, result in enumerate(self.results):
            to_run = [r.part for r in self.results[i:]]
            self.run_part(result, allowance(self.left_s(), result.part, to_run))
            self.write()

    def run_part(self, result: PartResult, share_s: float) -> None:
        part = result.part
        missing = missing_modules(part)
        if missing:
            result.status, result.note = "skipped", f"this Python lacks {', '.join(missing)}"
            say(f"{part.name}: skipped ({result.note})")
            return
        if share_s < 1.0:
            result.status, result.note = "not run", "the budget was spent"
            say(f"{part.name}: not run, the budget was spent")
            return
        result.status, result.allowance_s = "running", share_s
        result.log = self.work / f"{re.sub(r'[^a-z0-9]+', '-', part.name.lower()).strip('-')}.log"
        say(f"{part.name}: started, {share_s:.0f} s of {self.left_s():.0f} s left: {' '.join(part.command)}")
        self.write()
        start = time.monotonic()
        tail: collections.deque[str] = collections.deque(maxlen=OUTPUT_TAIL)
        process = None
        try:
            with open(result.log, "w") as log:
                process = self.process = subprocess.Popen(
                    part.command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                    errors="replace", start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
                reader = threading.Thread(target=_relay, args=(process.stdout, log, tail, part.group), daemon=True)
                reader.start()
                try:
                    process.wait(timeout=share_s - grace(share_s))
                except subprocess.TimeoutExpired:
                    result.status, result.note = "stopped", f"at its share of the budget ({share_s:.0f} s)"
                    say(f"{part.name}: stopped {result.note}; SIGTERM to its processes")
                end_group(process, grace(share_s))
                reader.join(timeout=5)
        finally:   # also when a signal interrupts the part: the caller's stop() ends its group
            result.seconds, result.tail = time.monotonic() - start, list(tail)
            if process is not None:
                result.returncode = process.returncode
        if result.status == "running":
            result.status = "done"
        self.process = None
        say(f"{part.name}: {result.status}, exit {result.returncode}, {result.seconds:.0f} s")

    def stop(self, reason: str) -> None:
        """On SIGTERM or SIGINT: the results file first (the sender may not wait long), then the part in
        flight ended with its whole process group, then the file again with what it left."""
        for result in self.results:
            if result.status == "running":
                result.status, result.note = "stopped", reason
            elif result.status == "pending":
                result.status, result.note = "not run", reason
        self.write()
        if self.process is not None:
            end_group(self.process, min(GRACE_S, 5.0))
        self.write()

    def write(self) -> None:
        document.save(report(self.heading, self.results, self.budget_s, time.monotonic() - self.started,
                             self.work), self.out)

    def failed(self) -> bool:
        return any(r.status == "done" and r.returncode != 0 for r in self.results)


def _relay(stream, log, tail, group: str) -> None:
    """A part's output, line by line: into its log, the results file's tail, and our stderr (progress)."""
    for line in stream:
        if not log.closed:   # closed: the part was interrupted, its last lines still go to the terminal
            log.write(line)
            log.flush()
        tail.append(line.rstrip("\n"))
        sys.stderr.write(f"  [{group}] {line}")
        sys.stderr.flush()


def say(message: str) -> None:
    print(f"[gpu-check {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def device_slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def nested(markdown: str) -> str:
    """A part's document inside the results file: its headings one level down."""
    return re.sub(r"^(#+) ", r"#\1# ", markdown, flags=re.MULTILINE)


def report(heading: str, results: list[PartResult], budget_s: float, elapsed_s: float, work: Path) -> str:
    lines = [heading, "",
             f"budget {budget_s:.0f} s, {elapsed_s:.0f} s used so far; the parts' tables, logs and MLflow store: "
             f"{work}", "",
             "| part | status | exit | seconds | share s | command |", "|---|---|---|---|---|---|"]
    for r in results:
        exit_code = "" if r.returncode is None else str(r.returncode)
        share = "" if r.allowance_s is None else f"{r.allowance_s:.0f}"
        status = r.status + (f": {r.note}" if r.note else "")
        lines.append(f"| {r.part.name} | {status} | {exit_code} | {r.seconds:.0f} | {share} | "
                     f"`{' '.join(r.part.command)}` |")
    for r in results:
        if r.status in ("pending", "not run", "skipped"):
            continue
        lines += ["", f"## {r.part.name}", ""]
        if r.part.markdown is not None and r.part.markdown.is_file():
            lines.append(nested(r.part.markdown.read_text().strip()))
        if r.tail:
            lines += ["", f"Last lines of its output ({r.log}):", "", "```", *r.tail, "```"]
    return "\n".join(lines) + "\n"


def software_facts(rehearse: bool) -> str:
    import torch
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else \
        f"ROCm {torch.version.hip}" if torch.version.hip else "CPU build"
    facts = f"torch {torch.__version__} ({build}); Python {sys.version.split()[0]}"
    if importlib.util.find_spec("cupy") is not None:
        import cupy
        facts += f"; CuPy {cupy.__version__}"
        if not rehearse:
            facts += f"; driver API {cupy.cuda.runtime.driverGetVersion()}"
    return facts


def _raise_stopped(signum, frame):
    raise Stopped(signum)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", default="results")
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS,
                        help="which parts (they run in the order tests, sweep, ladder, layers)")
    parser.add_argument("--budget-s", type=float,
                        help=f"wall time for all the parts, each stopped at its share (default {DEFAULT_BUDGET_S}; "
                             f"--rehearse: {REHEARSAL_BUDGET_S})")
    parser.add_argument("--rehearse", action="store_true",
                        help="every part on the emulator at tiny sizes (any CPU machine): the same code the GPU runs")
    args = parser.parse_args(argv)
    if args.budget_s is None:
        args.budget_s = REHEARSAL_BUDGET_S if args.rehearse else DEFAULT_BUDGET_S
    if not args.budget_s > 0:
        parser.error(f"--budget-s {args.budget_s:g}: give a positive number of seconds")
    if args.rehearse:
        from experiments.runtime import resolve
        device, slug, sizes = resolve("emulator").device_name(), "rehearsal", REHEARSAL
    else:
        from experiments.runtime.gpu import auto_backend, cupy_device
        backend, why = auto_backend()
        if backend != "gpu":
            print(f"gpu-check needs an NVIDIA (CUDA 13, driver >= 580) or AMD (ROCm 7) GPU that both CuPy and torch "
                  f"see, and here {why}. On a GPU machine: make setup (or PLATFORM=cuda|rocm), then make gpu-check. "
                  f"To rehearse it on this machine (every part on the emulator, tiny sizes): "
                  f"make gpu-check-rehearsal, or python -m experiments.bench.gpu_check --rehearse.", file=sys.stderr)
            return EXIT_NO_GPU
        device, sizes = cupy_device()[0], GPU
        slug = device_slug(device)
    date = datetime.date.today()
    out = Path(args.out_dir).resolve() / f"{date}-gpu-check-{slug}.md"
    work = out.with_suffix("")
    work.mkdir(parents=True, exist_ok=True)
    (work / "mlflow.db").unlink(missing_ok=True)   # a fresh store: this check's sweep only
    plan = [part for part in parts(sys.executable, work, sizes) if part.group in args.parts]
    kind = "rehearsal on the emulator (tiny sizes; emulated times are not performance)" if args.rehearse else "GPU"
    heading = f"# gpu-check, {date}, {kind}\n\ndevice: {device}; {software_facts(args.rehearse)}"
    runner = Runner(plan, args.budget_s, out, heading, work)
    say(f"{len(plan)} parts in {args.budget_s:.0f} s; results: {out}")
    previous = {signum: signal.signal(signum, _raise_stopped) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        runner.run()
    except Stopped as stop:
        for signum in previous:   # the clean-up takes seconds at most: not to be cut short by a second signal
            signal.signal(signum, signal.SIG_IGN)
        say(f"{signal.Signals(stop.signum).name}: ending the part in flight, writing {out}")
        runner.stop(f"gpu-check got {signal.Signals(stop.signum).name}")
        return stop.exit_code
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    say(f"wrote {out}")
    return EXIT_FAILED if runner.failed() else 0


if __name__ == "__main__":
    sys.exit(main())
