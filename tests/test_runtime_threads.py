"""Each CPU runtime owns its thread policy, whatever the order a user's script imports things in."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROBE = """
import json, os
{first}
from experiments.runtime import resolve
from threadpoolctl import threadpool_info
execution = resolve("{backend}").execution
blas = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
print(json.dumps({{"execution": execution, "blas_threads": blas, "spin": os.environ.get("OPENBLAS_THREAD_TIMEOUT")}}))
"""


def _probe(first: str, backend: str = "numpy") -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_NUM_THREADS", "OPENBLAS_THREAD_TIMEOUT", "OMP_NUM_THREADS", "GOMP_SPINCOUNT")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-c", PROBE.format(first=first, backend=backend)], env=env,
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("backend", ["numpy", "emulator"])
def test_convbench_imported_first_shortens_both_spins(backend):
    found = _probe("import experiments", backend)
    assert found["spin"] == "4" and "short spin" in found["execution"]


@pytest.mark.parametrize("backend", ["numpy", "emulator"])
def test_numpy_imported_first_puts_blas_on_one_thread(backend):
    """The README's swap_conv2d in a script that imported numpy (or torch) first: BLAS cannot be told to stop
    spinning any more, so the runtime keeps it off torch's cores."""
    found = _probe("import numpy, torch", backend)
    assert "BLAS on one thread" in found["execution"] and found["blas_threads"] and set(found["blas_threads"]) == {1}
