"""make gpu-check: its rehearsal on the emulator (every part, the same code the GPU runs, tiny sizes), its
budget (each part stopped at its share, its whole process group ended), its results file (rewritten after
every part and on SIGTERM), and its refusal without a GPU."""
from __future__ import annotations

import datetime
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from experiments.bench import document, gpu_check

REPO = Path(__file__).resolve().parents[1]
TODAY = datetime.date.today()


def rehearse(out_dir: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "experiments.bench.gpu_check", "--rehearse", "--out-dir",
                             str(out_dir), *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def part_rows(text: str) -> dict[str, tuple[str, str]]:
    """The results file's table: part name -> (status, exit)."""
    rows = re.findall(r"^\| ([^|]+) \| ([^|]+) \| ([^|]*) \| \d+ \| [^|]* \| `", text, flags=re.MULTILINE)
    return {name: (status, exit_code) for name, status, exit_code in rows}


def test_rehearsal_runs_every_part_on_the_emulator(tmp_path):
    """Every part of gpu-check, the GPU's branches on the emulator: each exits 0 and leaves its tables."""
    done = rehearse(tmp_path)
    stdout, stderr = done.communicate(timeout=900)
    assert done.returncode == 0, stderr[-3000:]
    out = tmp_path / f"{TODAY}-gpu-check-rehearsal.md"
    text = out.read_text()
    rows = part_rows(text)
    assert set(rows) == {"GPU tests", "the card's sweep", "bench-ladder", "bench-layers, batch 1",
                         "bench-layers, batch 2"}
    assert all(row == ("done", "0") for row in rows.values()), rows
    assert list(rows) == ["GPU tests", "the card's sweep", "bench-ladder", "bench-layers, batch 1",
                          "bench-layers, batch 2"]   # what each tells first
    assert document.IN_PROGRESS not in text
    assert "3 of 3 jobs ok" in text                                    # the sweep
    assert "### GEMM ladder vs the vendor GEMM" in text and "FAILED" not in text
    assert "fold-t32" in text and "### Memory-bound kernels" in text   # the ladder, every rung and tile
    for batch in (1, 2):   # bench-layers' GEMM table: dense layers only (mobilenet_v2's depthwise has none)
        layers = (tmp_path / f"{TODAY}-gpu-check-rehearsal" / f"layers-b{batch}.md").read_text()
        gemms = layers.split("## Blocked GEMM vs vendor GEMM")[1]
        assert "features.0.0 im2col" in gemms and "features.1.conv.0.0" not in gemms
        assert "| mobilenet_v2 | features.0.0 " in layers.split("## Blocked GEMM")[0]
    assert "[gpu-check" in stderr and "  [ladder]" in stderr   # progress as it goes


def test_sigterm_leaves_the_results_and_no_process(tmp_path):
    """--budget-s 40 and SIGTERM after 25 s: the results file names the parts done and the rest as not
    run, and no process the check started is left."""
    check = rehearse(tmp_path, "--budget-s", "40")
    seen: dict[int, float] = {}
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline:
        try:
            for p in psutil.Process(check.pid).children(recursive=True):
                seen.setdefault(p.pid, p.create_time())
        except psutil.NoSuchProcess:
            break
        time.sleep(0.2)
    assert check.poll() is None, "the check ended before the signal"
    check.send_signal(signal.SIGTERM)
    stdout, stderr = check.communicate(timeout=60)
    assert check.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert len(seen) >= 2   # the parts' processes, and their children
    alive = []
    for pid, created in seen.items():
        try:
            p = psutil.Process(pid)
            if p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p.cmdline())
        except psutil.NoSuchProcess:
            pass
    assert alive == []
    text = (tmp_path / f"{TODAY}-gpu-check-rehearsal.md").read_text()
    rows = part_rows(text)
    assert rows["GPU tests"][0] == "done" or rows["GPU tests"][0].startswith("stopped: at its share of the budget")
    # The signal lands inside a part, or (on a loaded machine) just as one was stopped at its share: either
    # way every row says what became of its part, and the parts after the signal were never started.
    assert all(status == "done" or status.startswith("stopped: ") or status == "not run: gpu-check got SIGTERM"
               for status, _ in rows.values()), rows
    assert rows["bench-layers, batch 2"][0] == "not run: gpu-check got SIGTERM"


def python_part(group: str, name: str, code: str, tmp_path: Path, markdown: Path | None = None):
    return gpu_check.Part(group, name, (sys.executable, "-c", code), ("pytest",), markdown, gpu_check.WEIGHTS[group])


def run_plan(plan, tmp_path, budget_s=60.0) -> tuple[gpu_check.Runner, str]:
    out = tmp_path / "check.md"
    runner = gpu_check.Runner(plan, budget_s, out, "# gpu-check, test", tmp_path)
    runner.run()
    return runner, out.read_text()


def test_a_part_is_stopped_at_its_share_with_its_whole_process_group(tmp_path):
    """A part that runs past its share is stopped there, a grandchild it started included; its output so
    far stays in the results file; the next part still gets its share."""
    pid_file = tmp_path / "grandchild.pid"
    slow = (f"import subprocess, time, sys\n"
            f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
            f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
            f"for i in range(1000): print('step', i, flush=True); time.sleep(0.1)")
    plan = [python_part("tests", "slow part", slow, tmp_path),
            python_part("sweep", "next part", "print('next ran')", tmp_path)]
    start = time.monotonic()
    runner, text = run_plan(plan, tmp_path, budget_s=6.0)
    slow_result, next_result = runner.results
    assert slow_result.status == "stopped" and "at its share of the budget" in slow_result.note
    assert slow_result.seconds < 6.0 and time.monotonic() - start < 12
    assert not psutil.pid_exists(int(pid_file.read_text())) or \
        psutil.Process(int(pid_file.read_text())).status() == psutil.STATUS_ZOMBIE
    assert "step 3" in text and "| slow part | stopped: at its share of the budget" in text
    assert (next_result.status, next_result.returncode) == ("done", 0) and "next ran" in text


def test_results_rewritten_after_every_part_and_time_left_passes_on(tmp_path):
    """The second part reads the results file: the first is already recorded there, done. The first
    part's unused share goes to the later parts."""
    out = tmp_path / "check.md"
    plan = [python_part("tests", "first", "print('one')", tmp_path),
            python_part("ladder", "second", f"print(open({str(out)!r}).read())", tmp_path),
            python_part("layers", "third", "print('three')", tmp_path)]
    runner, text = run_plan(plan, tmp_path, budget_s=100.0)
    second = "\n".join(runner.results[1].tail)
    assert re.search(r"\| first \| done \| 0 \|", second) and re.search(r"\| second \| running \|", second)
    assert re.search(r"\| third \| pending \|", second)
    assert re.search(r"\| third \| done \| 0 \|", text)   # and after the last part
    first, second_share, third = (r.allowance_s for r in runner.results)
    weights = [gpu_check.WEIGHTS[g] for g in ("tests", "ladder", "layers")]
    assert first == pytest.approx(100.0 * weights[0] / sum(weights), rel=0.01)
    # the second part's share is computed from what the first left, not from the fixed fraction
    assert second_share > 100.0 * weights[1] / sum(weights)
    assert third > second_share * weights[2] / weights[1]


def test_failed_part_fails_the_check_and_a_missing_package_skips(tmp_path, monkeypatch):
    plan = [python_part("tests", "fails", "raise SystemExit(3)", tmp_path),
            gpu_check.Part("sweep", "needs more", (sys.executable, "-c", "pass"), ("no_such_module_here",))]
    runner, text = run_plan(plan, tmp_path)
    assert runner.failed()
    assert "| fails | done | 3 |" in text
    assert "| needs more | skipped: this Python lacks no_such_module_here |" in text


def test_the_real_plan_runs_every_part_with_the_given_python(tmp_path):
    plan = gpu_check.parts("/opt/gpu/bin/python", tmp_path)
    assert [p.group for p in plan] == ["tests", "sweep", "ladder", "layers", "layers"]
    assert all(part.command[0] == "/opt/gpu/bin/python" for part in plan)
    tests = plan[0].command
    assert "tests/test_gpu_device.py" in tests and "tests/test_conv_kernels.py" in tests
    assert "tests/test_report.py" not in tests   # no gpu-marked test there: not collected
    layer_runs = [p.command for p in plan if p.group == "layers"]
    assert [c[c.index("--batch") + 1] for c in layer_runs] == ["1", "32"]
    assert all({"resnet18", "vgg16", "mobilenet_v2", "--backend", "gpu"} <= set(c) for c in layer_runs)
    assert {"algo=im2col,kn2row,scalar", "backend=gpu", f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"} \
        <= set(plan[1].command)
    assert {"experiments.bench.ladder", "--backend", "gpu", "--quick"} <= set(plan[2].command)
    rehearsal = gpu_check.parts("python", tmp_path, gpu_check.REHEARSAL)
    for gpu, emulated in zip(plan, rehearsal):   # the same commands, but for the backend and the sizes
        assert gpu.command[1:4] == emulated.command[1:4] and gpu.group == emulated.group
    assert all("backend=emulator" in p.command or "emulator" in p.command for p in rehearsal[1:])
    assert sum(p.weight for p in plan) == pytest.approx(sum(gpu_check.WEIGHTS.values()))


@pytest.mark.skipif(gpu_check.importlib.util.find_spec("cupy") is None, reason="no CuPy")
def test_refuses_without_a_gpu_and_says_how_to_rehearse(tmp_path):
    from experiments.runtime import gpu_available
    if gpu_available():
        pytest.skip("a GPU is present")
    done = subprocess.run([sys.executable, "-m", "experiments.bench.gpu_check", "--out-dir", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == gpu_check.EXIT_NO_GPU
    assert "gpu-check needs an NVIDIA (CUDA 13, driver >= 580) or AMD (ROCm 7) GPU" in done.stderr
    assert "python -m experiments.bench.gpu_check --rehearse" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_make_refuses_on_a_cpu_platform_before_any_set_up_and_says_how_to_rehearse(tmp_path):
    done = subprocess.run(["make", "-s", "gpu-check", "PLATFORM=cpu", f"VENV={tmp_path}/venv"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "make gpu-check needs an NVIDIA GPU" in done.stderr
    assert "make gpu-check-rehearsal" in done.stderr
    assert not (tmp_path / "venv").exists()


def test_bad_budget_is_refused_before_any_work(tmp_path):
    done = subprocess.run([sys.executable, "-m", "experiments.bench.gpu_check", "--rehearse", "--budget-s", "0",
                           "--out-dir", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--budget-s 0: give a positive number of seconds" in done.stderr
    assert list(tmp_path.iterdir()) == []
