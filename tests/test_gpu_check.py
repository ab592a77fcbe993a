"""make gpu-check without a GPU: it refuses at once; and its report on a simulated device (the device
probes and the parts' commands replaced, the orchestration and the writer real)."""
from __future__ import annotations

import datetime
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.bench import gpu_check

REPO = Path(__file__).resolve().parents[1]
H100 = "NVIDIA H100 80GB HBM3"


@pytest.mark.skipif(gpu_check.importlib.util.find_spec("cupy") is None, reason="no CuPy")
def test_refuses_without_a_gpu(tmp_path):
    from experiments.runtime import gpu_available
    if gpu_available():
        pytest.skip("a GPU is present")
    done = subprocess.run([sys.executable, "-m", "experiments.bench.gpu_check", "--out-dir", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == gpu_check.EXIT_NO_GPU
    assert "gpu-check needs an NVIDIA (CUDA 13, driver >= 580) or AMD (ROCm 7) GPU" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_make_refuses_on_a_cpu_platform_before_any_set_up(tmp_path):
    done = subprocess.run(["make", "-s", "gpu-check", "PLATFORM=cpu", f"VENV={tmp_path}/venv"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "make gpu-check needs an NVIDIA GPU" in done.stderr
    assert not (tmp_path / "venv").exists()


def test_report_on_a_simulated_device(monkeypatch, tmp_path):
    from experiments.runtime import gpu
    monkeypatch.setattr(gpu, "auto_backend", lambda: ("gpu", f"CuPy and torch see {H100}"))
    monkeypatch.setattr(gpu, "cupy_device", lambda: (H100, None))
    monkeypatch.setattr(gpu_check, "software_facts", lambda: "simulated device")
    monkeypatch.setattr(gpu_check, "REPO", tmp_path)

    def parts(python, store, work):
        table = work / "table.md"
        return {
            "tests": [gpu_check.Part("GPU tests", (python, "-c", "print('3 passed')"), ("pytest",))],
            "layers": [gpu_check.Part("bench-layers, batch 1",
                                      (python, "-c", f"open({str(table)!r}, 'w').write('| a |\\n|---|\\n| 1 |')"),
                                      ("pandas",), table),
                       gpu_check.Part("bench-layers, batch 32", (python, "-c", "raise SystemExit(3)"), ("pandas",))],
            "sweep": [gpu_check.Part("the card's sweep", (python, "run.py"), ("no_such_module_here",))],
            "ladder": [gpu_check.Part("bench-ladder", (python, "-c", "print('ladder ran')"), ("pandas",))],
        }

    monkeypatch.setattr(gpu_check, "parts", parts)
    code = gpu_check.main(["--out-dir", str(tmp_path / "results")])
    assert code == 1   # one part failed
    out = tmp_path / "results" / f"{datetime.date.today()}-gpu-check-nvidia-h100-80gb-hbm3.md"
    text = out.read_text()
    assert f"device: {H100}; simulated device" in text
    assert "| GPU tests | 0 |" in text and "3 passed" in text
    assert "| bench-layers, batch 1 | 0 |" in text and "| a |\n|---|\n| 1 |" in text
    assert "| bench-layers, batch 32 | 3 |" in text
    assert "| the card's sweep | skipped |" in text and "skipped: this Python lacks no_such_module_here" in text
    assert f"`{sys.executable} -c print('3 passed')`" in text
    assert "| bench-ladder | 0 |" in text and "ladder ran" in text


def test_the_real_plan_runs_every_part_with_the_given_python(tmp_path):
    plan = gpu_check.parts("/opt/gpu/bin/python", tmp_path / "mlflow.db", tmp_path)
    commands = [part.command for group in plan.values() for part in group]
    assert all(command[0] == "/opt/gpu/bin/python" for command in commands)
    layer_runs = [c for c in commands if "experiments.bench.layers" in c]
    assert [c[c.index("--batch") + 1] for c in layer_runs] == ["1", "32"]
    assert all({"resnet18", "vgg16", "mobilenet_v2", "--backend", "gpu"} <= set(c) for c in layer_runs)
    assert any("algo=im2col,kn2row,scalar" in c and "backend=gpu" in c for c in commands)
    assert any({"experiments.bench.ladder", "--backend", "gpu", "--quick"} <= set(c) for c in commands)
    assert set(plan) == set(gpu_check.PARTS)
