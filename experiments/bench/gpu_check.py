"""make gpu-check: the first thing to run on a GPU machine, sized for under 10 minutes on one
H100/H200 or MI300 (not yet timed on one).

    1. the GPU tests (pytest -m gpu)
    2. bench-layers --quick on resnet18, vgg16 and mobilenet_v2 at batch 1 and 32: every conv layer
       by every variant against PyTorch, and our blocked GEMM at every tile against the vendor GEMM
       (4096^3 and the models' im2col GEMMs)
    3. the product card's sweep (algo=im2col,kn2row,scalar) on the GPU into a fresh MLflow store
    4. bench-ladder --quick: every rung and tile of the GEMM ladder against cuBLAS FP32 (TF32 off) at
       4096^3 and on resnet18's and vgg16's im2col GEMMs at batch 1 and 32; im2col, the shift-add and
       depthwise as fractions of the measured device-to-device copy bandwidth

It writes results/<date>-gpu-check-<device>.md with each part's exact command, exit code, time and
output tables; the sweep's store stays in outputs/gpu-check-<date>/mlflow.db for `mlflow ui`. Each part runs in its own process with this interpreter (``make gpu-check PYTHON=...``
runs from an existing GPU environment, installing nothing); a part whose packages are missing is
skipped with a note. Without a GPU that CuPy and torch both see it stops at once (exit 2).

    python -m experiments.bench.gpu_check [--out-dir results] [--parts tests layers sweep ladder]
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

EXIT_NO_GPU = 2
MODELS = ("resnet18", "vgg16", "mobilenet_v2")
BATCHES = (1, 32)
PARTS = ("tests", "layers", "sweep", "ladder")
OUTPUT_TAIL = 60   # lines of a part's output kept in the report when it has no tables
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Part:
    name: str
    command: tuple[str, ...]
    needs: tuple[str, ...]      # importable modules
    markdown: Path | None = None  # where the part writes its tables (--out), if it does


@dataclass(frozen=True)
class PartResult:
    part: Part
    returncode: int | None      # None: skipped
    seconds: float
    output: str                 # the tables (markdown) or the output's tail, or why it was skipped


def parts(python: str, store: Path, work: Path) -> dict[str, list[Part]]:
    layers = [Part(f"bench-layers, batch {batch}",
                   (python, "-m", "experiments.bench.layers", "--backend", "gpu", "--quick", "--batch", str(batch),
                    "--models", *MODELS, "--out", str(work / f"layers-b{batch}.md")),
                   ("pandas", "tabulate"), work / f"layers-b{batch}.md")
              for batch in BATCHES]
    return {
        "tests": [Part("GPU tests", (python, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "tests"),
                       ("pytest", "hypothesis"))],
        "layers": layers,
        "sweep": [Part("the card's sweep", (python, "run.py", "-m", "algo=im2col,kn2row,scalar", "backend=gpu",
                                             f"tracking.uri=sqlite:///{store}"),
                       ("hydra", "mlflow", "codecarbon"))],
        "ladder": [Part("bench-ladder", (python, "-m", "experiments.bench.ladder", "--backend", "gpu", "--quick",
                                         "--out", str(work / "ladder.md")),
                        ("pandas", "tabulate"), work / "ladder.md")],
    }


def missing_modules(part: Part) -> list[str]:
    return [name for name in part.needs if importlib.util.find_spec(name) is None]


def run_part(part: Part) -> PartResult:
    missing = missing_modules(part)
    if missing:
        return PartResult(part, None, 0.0, f"skipped: this Python lacks {', '.join(missing)}")
    print(f"[gpu-check] {part.name}: {' '.join(part.command)}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    done = subprocess.run(part.command, capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - start
    sys.stderr.write(done.stderr[-2000:])
    if part.markdown is not None and part.markdown.is_file():
        output = part.markdown.read_text()
    else:
        output = "```\n" + "\n".join((done.stdout + done.stderr).strip().splitlines()[-OUTPUT_TAIL:]) + "\n```"
    return PartResult(part, done.returncode, seconds, output)


def device_slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def report(device: str, facts: str, results: list[PartResult], date: datetime.date) -> str:
    lines = [f"# gpu-check, {date}", "", f"device: {device}; {facts}", "",
             "| part | exit | seconds | command |", "|---|---|---|---|"]
    for r in results:
        status = "skipped" if r.returncode is None else str(r.returncode)
        lines.append(f"| {r.part.name} | {status} | {r.seconds:.0f} | `{' '.join(r.part.command)}` |")
    for r in results:
        lines += ["", f"## {r.part.name}", "", r.output.strip()]
    return "\n".join(lines) + "\n"


def software_facts() -> str:
    import cupy
    import torch
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else f"ROCm {torch.version.hip}"
    driver = cupy.cuda.runtime.driverGetVersion()
    return f"torch {torch.__version__} ({build}); CuPy {cupy.__version__}; driver API {driver}; Python {sys.version.split()[0]}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", default="results")
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    args = parser.parse_args(argv)
    from experiments.runtime.gpu import auto_backend, cupy_device
    backend, why = auto_backend()
    if backend != "gpu":
        print(f"gpu-check needs an NVIDIA (CUDA 13, driver >= 580) or AMD (ROCm 7) GPU that both CuPy and torch "
              f"see, and here {why}. On a GPU machine: make setup (or PLATFORM=cuda|rocm), then make gpu-check.",
              file=sys.stderr)
        return EXIT_NO_GPU
    device = cupy_device()[0]
    date = datetime.date.today()
    store = REPO / "outputs" / f"gpu-check-{date}" / "mlflow.db"
    if store.exists():
        store.unlink()   # a fresh store: this check's sweep only
    store.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(tmp)
        plan = parts(sys.executable, store, work)
        results = [run_part(part) for name in args.parts for part in plan[name]]
        text = report(device, software_facts(), results, date)
    out = Path(args.out_dir).resolve() / f"{date}-gpu-check-{device_slug(device)}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"[gpu-check] wrote {out}", file=sys.stderr)
    return 0 if all(r.returncode in (0, None) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
