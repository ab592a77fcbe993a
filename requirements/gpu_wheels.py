"""make gpu-wheels: the wheels a GPU machine without internet lacks to run `make gpu-check`, downloaded
here (a machine with internet): never torch, torchvision, CuPy or NVIDIA's libraries, which such a machine
has with its GPU stack (for a Python with only those, 119 wheels, 196 MB, mostly pyarrow, scipy and numpy).

    # on the GPU machine:
    python3 -m pip list --format=freeze > gpu-freeze.txt
    # here, with gpu-freeze.txt copied over:
    python3 requirements/gpu_wheels.py --have gpu-freeze.txt --python-version 3.12 --out gpu-wheels
    # back on the GPU machine, with gpu-wheels/ and this repository copied over:
    python3 -m pip install --no-index --no-deps --target ~/convbench-deps gpu-wheels/*.whl
    PYTHONPATH=~/convbench-deps make gpu-check PYTHON=python3

How: pip's resolver resolves requirements/common.txt (with constraints.txt) for the target's Python and
platform (--python-version, --platform: wheels only, as for a foreign interpreter); the missing set is
what it resolves minus what the target has (at our pin's version, for a package we pin), minus the GPU
stack; each is
downloaded with `pip download --no-deps --only-binary=:all:` for the target. antlr4-python3-runtime
4.9.3 (Hydra's parser) exists only as a source archive: its wheel is built here (pure Python).
Without --have, every package of the set is downloaded.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# What a GPU machine has with its GPU stack (and what would be GBs): never downloaded.
GPU_STACK = re.compile(r"^(torch|torchvision|torchaudio|triton|pytorch-triton(-rocm)?|cupy(-.*)?|fastrlock|nvidia-.*"
                       r"|cuda-(bindings|pathfinder|toolkit))$")
SDIST_ONLY = {"antlr4-python3-runtime": "4.9.3"}   # no wheel on PyPI: built here (pure Python, py3-none-any)
# A glibc 2.35 x86-64 Linux (Ubuntu 22.04, RHEL 9 have 2.34-2.35) takes every manylinux wheel up to it;
# pip takes --platform literally, so each is named.
PLATFORMS = ("manylinux2014_x86_64", *(f"manylinux_2_{minor}_x86_64" for minor in range(17, 36)))


def canonical(name: str) -> str:
    """PEP 503's normalized name: numpy, Scikit_Learn and scikit.learn compare equal."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_freeze(text: str) -> dict[str, str]:
    """`pip list --format=freeze` (or `pip freeze`) -> {canonical name: version}; lines without an
    exact version (name @ url, -e, comments) count as present at an unknown version ("")."""
    have: dict[str, str] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:==\s*([^\s;]+)|@)", line)
        if match:
            have[canonical(match.group(1))] = match.group(2) or ""
    return have


def resolved_set(report: dict) -> dict[str, str]:
    """pip's installation report (--report) -> {canonical name: version} of everything it would install."""
    return {canonical(item["metadata"]["name"]): item["metadata"]["version"] for item in report["install"]}


def pins(text: str) -> dict[str, str]:
    """Our direct pins (name==version lines of a requirements file)."""
    return {name: version for name, version in parse_freeze(text).items() if version}


def missing(resolved: dict[str, str], have: dict[str, str] | None, pinned: dict[str, str]) -> dict[str, str]:
    """What the target must get, never the GPU stack: what it lacks, and our direct pins it has at another
    version (a dependency of a dependency it has at any version is left as it is: its torch's, say)."""
    def needed(name: str) -> bool:
        if have is None or name not in have:
            return True
        return name in pinned and have[name] != pinned[name]
    return {name: version for name, version in sorted(resolved.items()) if not GPU_STACK.match(name) and needed(name)}


def target_options(python_version: str, platforms: list[str]) -> list[str]:
    return ["--only-binary=:all:", "--python-version", python_version, *(f"--platform={p}" for p in platforms)]


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args], check=True)


def build_sdist_wheels(out: Path) -> None:
    for name, version in SDIST_ONLY.items():
        pip("wheel", "--quiet", "--no-deps", "--no-binary", name, "-w", str(out), f"{name}=={version}")


def resolve(python_version: str, platforms: list[str], find_links: Path, work: Path) -> dict[str, str]:
    report = work / "report.json"
    pip("install", "--quiet", "--dry-run", "--ignore-installed", "--target", str(work / "target"),
        "--report", str(report), "--find-links", str(find_links), *target_options(python_version, platforms),
        "-c", str(REPO / "constraints.txt"), "-r", str(REPO / "requirements" / "common.txt"))
    return resolved_set(json.loads(report.read_text()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--have", help="the target's `pip list --format=freeze` (a file, or - for stdin)")
    parser.add_argument("--python-version", default=f"{sys.version_info.major}.{sys.version_info.minor}",
                        help="the target's Python, e.g. 3.12 (default: this one's)")
    parser.add_argument("--platform", nargs="+", default=list(PLATFORMS), help="the target's wheel platforms")
    parser.add_argument("--out", default="gpu-wheels", help="folder for the wheels")
    args = parser.parse_args(argv)
    if not re.fullmatch(r"3\.\d+", args.python_version):
        parser.error(f"--python-version {args.python_version!r}: give major.minor, e.g. 3.12")
    have = None
    if args.have:
        have = parse_freeze(sys.stdin.read() if args.have == "-" else Path(args.have).read_text())
        if not have:
            parser.error(f"--have {args.have}: no `name==version` line in it (make it with pip list --format=freeze)")
        lacking = [name for name in ("torch", "numpy") if name not in have]
        if "torch" in lacking:
            print("note: the target has no torch; gpu-check needs its GPU build there (not downloaded here: GBs)",
                  file=sys.stderr)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gpu-wheels-") as tmp:
        work = Path(tmp)
        built = work / "built"
        build_sdist_wheels(built)
        pinned = pins((REPO / "requirements" / "common.txt").read_text())
        needed = missing(resolve(args.python_version, args.platform, built, work), have, pinned)
        for name, version in needed.items():
            if name in SDIST_ONLY:
                for wheel in built.glob("*.whl"):
                    shutil.copy2(wheel, out)
            else:
                pip("download", "--quiet", "--no-deps", *target_options(args.python_version, args.platform),
                    "-d", str(out), f"{name}=={version}")
    wheels = sorted(out.glob("*.whl"))
    size_mb = sum(w.stat().st_size for w in wheels) / 2**20
    print(f"{len(needed)} packages the target lacks: {', '.join(f'{n}=={v}' for n, v in needed.items()) or 'none'}")
    print(f"{len(wheels)} wheels, {size_mb:.1f} MB in {out}. On the target:\n"
          f"    python3 -m pip install --no-index --no-deps --target DEPS {out.name}/*.whl\n"
          f"    PYTHONPATH=DEPS make gpu-check PYTHON=python3")
    return 0


if __name__ == "__main__":
    sys.exit(main())
