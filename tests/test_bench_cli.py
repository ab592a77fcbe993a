"""The benchmarks' command lines: a backend this machine cannot run is refused before any work."""
from __future__ import annotations

import pytest

from experiments.bench import pruning
from experiments.runtime import gpu_available


@pytest.mark.skipif(gpu_available(), reason="a GPU is visible: --backend gpu is valid here")
def test_backend_gpu_without_a_gpu_exits_2_with_one_line(capsys):
    with pytest.raises(SystemExit) as stopped:
        pruning.main(["--backend", "gpu"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "backend='gpu' needs a CUDA or ROCm device" in err and "backend='numpy'" in err
    assert "Traceback" not in err
