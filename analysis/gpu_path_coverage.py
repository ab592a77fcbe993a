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

# Why lines of (module, function) run only on a GPU (or on hardware the CI machine lacks).
WHY: dict[tuple[str, str], str] = {}


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
            "experiments/harness/timing.py", "experiments/harness/memory.py")


def measured_modules() -> list[Path]:
    """Every module of GPU_PATH, imported by the suite or not."""
    paths = set()
    for source in GPU_PATH:
        root = REPO / source
        paths.update(root.rglob("*.py") if root.is_dir() else [root])
    return sorted(paths)


def analyse() -> list[dict]:
    cov = coverage.Coverage(data_file=str(DATA))
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


def render(rows: list[dict], command: str, commit: str, status: int) -> str:
    statements = sum(r["statements"] for r in rows)
    missing = sum(r["missing"] for r in rows)
    lines = [f"# GPU-path line coverage under the CPU suite, {datetime.date.today().isoformat()}", "",
             f"Measured at commit `{commit}` with coverage.py {coverage.__version__}: `{command}` "
             f"(pytest exit status {status}). No GPU: the gpu runtime's code runs on the stand-in CuPy "
             "(tests/fake_cupy.py: device arrays over numpy, kernels compiled and run by the emulator), the "
             "rehearsal of gpu-check on the emulator. Modules: GPU_PATH in analysis/gpu_path_coverage.py.", "",
             f"**{missing} of {statements} statements unexecuted ({100 * missing / statements:.1f}%).**", "",
             "| module | statements | unexecuted | covered |", "|---|---|---|---|"]
    for r in rows:
        covered = 100 * (r["statements"] - r["missing"]) / r["statements"] if r["statements"] else 100.0
        lines.append(f"| {r['module']} | {r['statements']} | {r['missing']} | {covered:.0f}% |")
    lines += ["", "## Every unexecuted line, and why", "",
              "Grouped by the function it is in; the reason says why the CPU suite cannot run it.", ""]
    for r in rows:
        if not r["missing"]:
            continue
        lines += [f"### {r['module']}", ""]
        for function, missed in r["groups"].items():
            why = WHY.get((r["module"], function), "**not explained**")
            lines.append(f"- `{function}` lines {_ranges(missed)}: {why}")
            lines += [f"    - {n}: `{r['text'][n - 1].strip()}`" for n in missed]
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path,
                        default=Path(f"results/{datetime.date.today().isoformat()}-gpu-path-coverage.md"))
    parser.add_argument("--no-run", action="store_true", help="tabulate the last run's data")
    parser.add_argument("pytest_args", nargs="*", help="after --: passed to pytest")
    args = parser.parse_args(argv)
    status = 0 if args.no_run else run_suite(args.pytest_args)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=REPO).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                           text=True, cwd=REPO).stdout.strip()
    command = "make coverage-gpu-path" + (f" ARGS='-- {' '.join(args.pytest_args)}'" if args.pytest_args else "")
    args.out.write_text(render(analyse(), command, commit + (" (with uncommitted changes)" if dirty else ""), status))
    print(f"coverage-gpu-path: wrote {args.out}")
    return status


if __name__ == "__main__":
    sys.exit(main())
