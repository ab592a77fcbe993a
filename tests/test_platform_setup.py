"""make setup's platform choice (requirements/platform.sh) with stand-in nvidia-smi/rocminfo on PATH,
and the requirement sets' invariants. Resolving the cuda set against the public index is CI's job
(.ci/run: pip install --dry-run from a clean pip configuration)."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "requirements" / "platform.sh"


def run_script(tmp_path, *args, tools: dict[str, str] = {}):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in tools.items():
        tool = bin_dir / name
        tool.write_text(f"#!/bin/sh\n{body}\n")
        tool.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin"}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.skipif(Path("/dev/kfd").exists(), reason="an AMD GPU is here")
def test_detect(tmp_path):
    assert run_script(tmp_path, "detect", tools={"nvidia-smi": "exit 0"}).stdout.strip() == "cuda"
    # an nvidia-smi that fails (no driver loaded) is not an NVIDIA GPU
    assert run_script(tmp_path, "detect", tools={"nvidia-smi": "exit 9", "rocminfo": "exit 1"}).stdout.strip() == "cpu"
    assert run_script(tmp_path, "detect", tools={"rocminfo": "exit 0"}).stdout.strip() == "rocm"


@pytest.mark.parametrize("driver, ok", [("575.57.08", False), ("580.65.06", True), ("590.10", True)])
def test_cuda_13_driver_floor(tmp_path, driver, ok):
    done = run_script(tmp_path, "check-driver", tools={"nvidia-smi": f"echo {driver}"})
    assert (done.returncode == 0) == ok
    if not ok:
        assert f"NVIDIA driver {driver} is older than 580" in done.stderr and "PLATFORM=cpu" in done.stderr


def test_unknown_platform_is_refused():
    done = subprocess.run(["make", "-n", "setup", "PLATFORM=gpu"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "PLATFORM=gpu is not a platform; valid: cpu, cuda, rocm" in done.stderr


def requirement_lines(name: str) -> list[str]:
    lines = (REPO / "requirements" / name).read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def test_one_consistent_set_per_platform():
    assert not any("+" in line for line in (REPO / "constraints.txt").read_text().splitlines()
                   if not line.startswith("#")), "constraints carry no local version labels"
    for platform in ("cpu", "cuda", "rocm"):
        lines = requirement_lines(f"{platform}.txt")
        assert "-r common.txt" in lines
        cupy = [line for line in lines if line.startswith("cupy")]
        assert len(cupy) == 1, (platform, cupy)
        assert any(re.fullmatch(r"torch==2\.13\.0(\+cpu)?", line) for line in lines)
        assert any(line.startswith("torchvision==0.28.0") for line in lines)
    assert not any(line.startswith(("torch", "cupy")) for line in requirement_lines("common.txt")
                   if not line.startswith("torch-pruning"))
    assert requirement_lines("rocm.txt")[-1].startswith("cupy-rocm-7-0")


def test_cupys_nvrtc_and_cuda_headers_are_pinned_alike_for_cpu_and_cuda():
    """CuPy builds hip/ through NVRTC with the CUDA headers (cuda_fp16.h) at run time: both pinned in the
    cuda set (not left to torch's wheels), and the CPU set's NVRTC tests build with the same ones."""
    for package in ("nvidia-cuda-runtime==", "nvidia-cuda-nvrtc=="):
        pins = {name: [line for line in requirement_lines(name) if line.startswith(package)]
                for name in ("cuda.txt", "cpu.txt")}
        assert len(pins["cuda.txt"]) == 1 and pins["cuda.txt"] == pins["cpu.txt"], pins
