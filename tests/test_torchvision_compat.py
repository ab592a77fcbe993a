"""experiments.torchvision_compat against stand-in torchvision packages, each in a fresh interpreter
(operator registrations last as long as the process)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# A matching build: its compiled library registers the operators when imported.
MATCHING = """
import torch
_lib = torch.library.Library("torchvision", "DEF")
_lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
_lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
__version__ = "matching"
"""

# A CUDA build beside a CPU torch: the library does not load, the Python side needs the schemas.
MISMATCHED = """
import torch
try:
    torch._C._dispatch_find_schema_or_throw("torchvision::nms", "")
except RuntimeError:
    raise RuntimeError("operator torchvision::nms does not exist")
__version__ = "mismatched"
"""

# Any other import error must come through unchanged.
BROKEN = """
raise RuntimeError("libcudart.so.13: cannot open shared object file")
"""


def import_compat_beside(tmp_path: Path, package_source: str) -> subprocess.CompletedProcess:
    package = tmp_path / "torchvision"
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent(package_source))
    code = ("import sys; sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[2])\n"
            "from experiments.torchvision_compat import torchvision\n"
            "import torch\n"
            "torch._C._dispatch_find_schema_or_throw('torchvision::qnms', '')\n"
            "print(torchvision.__version__)")
    return subprocess.run([sys.executable, "-c", code, str(tmp_path), str(REPO)],
                          capture_output=True, text=True, timeout=120)


def test_matching_torchvision_registers_its_operators_alone(tmp_path):
    result = import_compat_beside(tmp_path, MATCHING)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "matching"


def test_cuda_torchvision_beside_cpu_torch_gets_the_schemas(tmp_path):
    result = import_compat_beside(tmp_path, MISMATCHED)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "mismatched"


def test_other_import_errors_are_not_hidden(tmp_path):
    result = import_compat_beside(tmp_path, BROKEN)
    assert result.returncode != 0
    assert "libcudart.so.13" in result.stderr
