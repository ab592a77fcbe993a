"""make gpu-wheels (requirements/gpu_wheels.py): which wheels a GPU machine without internet lacks,
computed offline from the target's `pip list --format=freeze` and pip's resolution of our pins."""
import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("gpu_wheels", REPO / "requirements" / "gpu_wheels.py")
gpu_wheels = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_wheels)

FREEZE = """\
# a GPU machine's Python
torch==2.13.0
networkx==3.4
NumPy==2.3.5
PyYAML==6.0.3
pandas==2.2.0
cupy-cuda13x==14.2.0
my_local_pkg @ file:///opt/src/my_local_pkg
-e git+https://example.org/x.git#egg=x
"""

REPORT = {"install": [{"metadata": {"name": n, "version": v}} for n, v in [
    ("torch", "2.13.0"), ("numpy", "2.3.5"), ("PyYAML", "6.0.3"), ("pandas", "2.3.3"), ("hydra-core", "1.3.8"),
    ("antlr4-python3-runtime", "4.9.3"), ("nvidia-cudnn-cu13", "9.13.0.50"), ("triton", "3.5.0"),
    ("torchvision", "0.28.0"), ("My_Local.Pkg", "1.0"), ("cuda-bindings", "13.5.0"), ("networkx", "3.6.1"),
    ("jinja2", "3.1.6")]]}
PINNED = {"numpy": "2.3.5", "pandas": "2.3.3", "hydra-core": "1.3.8"}


def test_freeze_lines_become_normalized_names_and_versions():
    have = gpu_wheels.parse_freeze(FREEZE)
    assert have == {"torch": "2.13.0", "networkx": "3.4", "numpy": "2.3.5", "pyyaml": "6.0.3", "pandas": "2.2.0",
                    "cupy-cuda13x": "14.2.0", "my-local-pkg": ""}


def test_missing_is_what_the_target_lacks_or_has_at_another_pin_never_the_gpu_stack():
    """pandas: pinned, the target's is another version; networkx: torch's, any version will do; jinja2:
    lacking; cuda-bindings: the GPU stack's."""
    resolved = gpu_wheels.resolved_set(REPORT)
    missing = gpu_wheels.missing(resolved, gpu_wheels.parse_freeze(FREEZE), PINNED)
    assert missing == {"antlr4-python3-runtime": "4.9.3", "hydra-core": "1.3.8", "jinja2": "3.1.6",
                       "pandas": "2.3.3"}


def test_our_pins_are_read_from_the_requirements_file():
    pinned = gpu_wheels.pins((REPO / "requirements" / "common.txt").read_text())
    assert pinned["hydra-core"] == "1.3.8" and pinned["mlflow"] == "3.17.2" and "torch" not in pinned


def test_without_a_freeze_everything_but_the_gpu_stack():
    missing = gpu_wheels.missing(gpu_wheels.resolved_set(REPORT), None, PINNED)
    assert set(missing) == {"numpy", "pyyaml", "pandas", "hydra-core", "antlr4-python3-runtime", "my-local-pkg",
                            "networkx", "jinja2"}


def test_downloads_are_wheels_for_the_target_python_and_platform():
    options = gpu_wheels.target_options("3.12", ["manylinux_2_28_x86_64"])
    assert options == ["--only-binary=:all:", "--python-version", "3.12", "--platform=manylinux_2_28_x86_64"]
