"""make coverage-gpu-path: line coverage of the modules a GPU run uses, under the CPU test suite.

    python -m analysis.gpu_path_coverage [--out results/<date>-gpu-path-coverage.md] [-- PYTEST ARGS]

Runs the default pytest suite (no GPU: the gpu runtime's code on the stand-in CuPy of tests/fake_cupy.py,
the kernels on the emulator) under coverage.py, subprocesses included ([tool.coverage.run] in
pyproject.toml), then writes the table per module and every line still unexecuted,
grouped by the function it is in, each group with why it cannot run without the hardware (WHY below,
keyed by module and function; a group without an entry is listed as unexplained).
"""
from __future__ import annotations

import argparse
import ast
import datetime
import subprocess
import sys
from pathlib import Path

import coverage

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "build" / "coverage" / "gpu-path"

# Why lines of (module, function) did not run: (module, "*") for every function of a module. GPU-ONLY: a
# real device (or a GPU build of torch) is needed; NOT MEASURED: CPU-testable, run by test files outside the
# measured subset (see the results file's command), or by no test.
GPU_ONLY = "GPU-ONLY: "
NOT_MEASURED = "NOT MEASURED: "
WHY: dict[tuple[str, str], str] = {
    ("experiments/runtime/gpu.py", "cupy_device"): NOT_MEASURED + "no CuPy installed / a driver reporting 0 devices: "
    "the stand-in always reports one device; testable with devices=0 (not written)",
    ("experiments/runtime/gpu.py", "*"): NOT_MEASURED + "gemm=custom's user-kernel loading on the gpu runtime "
    "(tests/test_custom_kernel.py, outside the subset)",
    ("experiments/conv/arrays.py", "to_runtime"): GPU_ONLY + "a torch tensor onto the GPU (t.cuda(), DLPack of a CUDA "
    "tensor): torch here is a CPU build (and a CuPy array given to a CPU runtime, testable, not written)",
    ("experiments/conv/arrays.py", "from_runtime"): NOT_MEASURED + "a CuPy array as the caller's input (testable "
    "with the stand-in; not written)",
    ("experiments/measure/timing.py", "EventClock.__init__"): GPU_ONLY + "torch.cuda.Event (the job's clock): a CPU "
    "build of torch has none; the cupy branch runs on the stand-in",
    ("experiments/measure/timing.py", "CacheFlusher.__init__"): GPU_ONLY + "the cold-cache buffer on a CUDA device "
    "(torch.empty(device='cuda'))",
    ("experiments/measure/timing.py", "CacheFlusher.__call__"): GPU_ONLY + "fill_ of the CUDA buffer",
    ("experiments/harness/devices.py", "host_gpus"): NOT_MEASURED + "reads /proc/driver/nvidia/gpus and the kfd "
    "topology; tests/test_devices.py gives it fake trees",
    ("experiments/bench/layers.py", "*"): NOT_MEASURED + "error paths (a failed check, a bad --max-layers) and the "
    "command-line entry; the rehearsal and tests/test_bench_layers.py run the rest",
    ("experiments/bench/ladder.py", "*"): NOT_MEASURED + "refusals (a CPU runtime, CUPY_TF32 set, a bad option) and "
    "the command-line entry",
    ("experiments/bench/gpu_check.py", "*"): NOT_MEASURED + "gpu-check and its rehearsal (tests/test_gpu_check.py, "
    "outside the subset: it runs every part in subprocesses, minutes under coverage here); on a GPU machine its "
    "device probes (driver version, device name) run too",
    ("experiments/bench/bad_inputs.py", "*"): NOT_MEASURED + "the bad-input survey (CPU only, make "
    "bench-bad-inputs; tests/test_bad_input.py): not on the GPU path",
    ("experiments/bench/grouped.py", "*"): NOT_MEASURED + "make bench-grouped (tests/test_bench_sparse_grouped.py "
    "runs its CPU path; on a GPU its timings use the gpu runtime measured above)",
    ("experiments/bench/sparsity.py", "*"): NOT_MEASURED + "make bench-sparsity (slow tests)",
    ("experiments/bench/pruning.py", "*"): NOT_MEASURED + "make bench-pruning (slow tests)",
    ("experiments/harness/memory.py", "*"): NOT_MEASURED + "the job memory estimate (tests/test_memory_estimate.py, "
    "tests/test_memory_checks.py's job tests, outside the subset)",
    ("experiments/conv/custom.py", "*"): NOT_MEASURED + "gemm=custom (tests/test_custom_kernel.py, outside the subset)",
    ("experiments/conv/exactness.py", "*"): NOT_MEASURED + "the precision gate's exactness rules "
    "(tests/test_precision_gate.py, outside the subset)",
    ("experiments/runtime/emulator.py", "*"): NOT_MEASURED + "the emulator's diagnostics and error paths "
    "(tests/test_emulator.py, outside the subset); a GPU run does not use the emulator",
}


def run_suite(pytest_args: list[str]) -> int:
    for old in DATA.parent.glob(DATA.name + "*"):
        old.unlink()
    DATA.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-m", "coverage", "run", "-m", "pytest", "-p", "no:cacheprovider",
                           *pytest_args], cwd=REPO)
    subprocess.run([sys.executable, "-m", "coverage", "combine", "-q"], cwd=REPO, check=True)
    return done.returncode


def enclosing_functions(path: Path) -> dict[int, str]:
    """Line -> the innermost def (or class) around it, dotted; module level: '<module>'."""
    owner: dict[int, str] = {}

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                for line in range(child.lineno, (child.end_lineno or child.lineno) + 1):
                    owner[line] = name
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(ast.parse(path.read_text()), "")
    return owner


# The modules a GPU run uses: the runtimes, the convolutions, the benchmarks, the harness's device code.
GPU_PATH = ("experiments/runtime", "experiments/conv", "experiments/bench", "experiments/harness/devices.py",
            "experiments/measure/timing.py", "experiments/harness/memory.py")


def measured_modules() -> list[Path]:
    """Every module of GPU_PATH, imported by the suite or not."""
    paths = set()
    for source in GPU_PATH:
        root = REPO / source
        paths.update(root.rglob("*.py") if root.is_dir() else [root])
    return sorted(paths)


def analyse(data: Path = DATA) -> list[dict]:
    cov = coverage.Coverage(data_file=str(data))
    cov.load()
    rows = []
    for path in measured_modules():
        filename = str(path)
        _, statements, _, missing, _ = cov.analysis2(filename)
        owner = enclosing_functions(path)
        text = path.read_text().splitlines()
        groups: dict[str, list[int]] = {}
        for line in missing:
            groups.setdefault(owner.get(line, "<module>"), []).append(line)
        rows.append({"module": path.relative_to(REPO).as_posix(), "statements": len(statements),
                     "missing": len(missing), "groups": groups, "text": text})
    return rows


def _ranges(lines: list[int]) -> str:
    out, start = [], None
    for i, line in enumerate(lines):
        if start is None:
            start = line
        if i + 1 == len(lines) or lines[i + 1] != line + 1:
            out.append(str(start) if start == line else f"{start}-{line}")
            start = None
    return ", ".join(out)


def why(module: str, function: str) -> str:
    return WHY.get((module, function)) or WHY.get((module, "*")) or (
        NOT_MEASURED + "a CPU path or an error branch of this function, run by the conv, emulator and harness test "
        "files outside the subset, or by none")


def render(rows: list[dict], command: str, commit: str, status: int) -> str:
    statements = sum(r["statements"] for r in rows)
    missing = sum(r["missing"] for r in rows)
    for r in rows:
        r["gpu_only"] = sum(len(lines) for function, lines in r["groups"].items()
                            if why(r["module"], function).startswith(GPU_ONLY))
    gpu_only = sum(r["gpu_only"] for r in rows)
    lines = [f"# GPU-path line coverage under the CPU suite, {datetime.date.today().isoformat()}", "",
             f"Measured at commit `{commit}` with coverage.py {coverage.__version__}: `{command}` "
             f"(pytest exit status {status}). No GPU: the gpu runtime's code runs on the stand-in CuPy "
             "(tests/fake_cupy.py: device arrays over numpy, kernels compiled and run by the emulator), the "
             "rehearsal of gpu-check on the emulator. Modules: GPU_PATH in analysis/gpu_path_coverage.py.", "",
             *([f"Measured over the test files named in the command, not the whole suite: under coverage the whole "
                "suite takes over an hour on the 2 shared cores where this was measured (`make coverage-gpu-path` "
                "with no ARGS runs it all). Lines marked NOT MEASURED may well run in the suite's other files: "
                "this table is a lower bound of what the CPU suite executes.", ""] if "ARGS=" in command else []),
             f"**{missing} of {statements} statements unexecuted ({100 * missing / statements:.1f}%); of them "
             f"{gpu_only} ({100 * gpu_only / statements:.1f}% of all) need a GPU, the rest ran in no measured test "
             "(NOT MEASURED below).**", "",
             "| module | statements | unexecuted | of them GPU-only | covered |", "|---|---|---|---|---|"]
    for r in rows:
        covered = 100 * (r["statements"] - r["missing"]) / r["statements"] if r["statements"] else 100.0
        lines.append(f"| {r['module']} | {r['statements']} | {r['missing']} | {r['gpu_only']} | {covered:.0f}% |")
    lines += ["", "## Every unexecuted line, and why", "",
              "Grouped by the function it is in; the reason says why the CPU suite cannot run it.", ""]
    for r in rows:
        if not r["missing"]:
            continue
        lines += [f"### {r['module']}", ""]
        for function, missed in r["groups"].items():
            lines.append(f"- `{function}` lines {_ranges(missed)}: {why(r['module'], function)}")
            lines += [f"    - {n}: `{r['text'][n - 1].strip()}`" for n in missed]
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path,
                        default=Path(f"results/{datetime.date.today().isoformat()}-gpu-path-coverage.md"))
    parser.add_argument("--no-run", action="store_true",
                        help="tabulate the last run's data (give that run's pytest arguments and --status for the record)")
    parser.add_argument("--data", type=Path, default=DATA, help="with --no-run: the combined coverage data file")
    parser.add_argument("--commit", help="with --no-run: the commit the last run measured")
    parser.add_argument("--status", type=int, default=0, help="with --no-run: the last run's pytest exit status")
    parser.add_argument("pytest_args", nargs="*", help="after --: passed to pytest")
    args = parser.parse_args(argv)
    status = args.status if args.no_run else run_suite(args.pytest_args)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=REPO).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                           text=True, cwd=REPO).stdout.strip()
    command = "make coverage-gpu-path" + (f" ARGS='-- {' '.join(args.pytest_args)}'" if args.pytest_args else "")
    measured = args.commit or commit + (" (with uncommitted changes)" if dirty else "")
    args.out.write_text(render(analyse(args.data), command, measured, status))
    print(f"coverage-gpu-path: wrote {args.out}")
    return status


if __name__ == "__main__":
    sys.exit(main())
