"""Where a number came from: git state, library versions, kernel sources (tags of every run)."""
from __future__ import annotations

import platform
import subprocess
import sys
from functools import lru_cache
from importlib import metadata

from . import contract
from .mlflow_log import REPO_ROOT

_PACKAGES = ("torch", "torchvision", "numpy", "mlflow", "hydra-core", "omegaconf", "codecarbon")


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@lru_cache(maxsize=1)
def _versions() -> dict[str, str]:
    tags = {f"{contract.T_VERSION_PREFIX}python": platform.python_version()}
    for package in _PACKAGES:
        try:
            tags[contract.T_VERSION_PREFIX + package.removesuffix("-core")] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return tags


def provenance_tags() -> dict[str, str]:
    """git sha and dirty flag, kernel source hash, library versions (cupy when it is loaded), and the
    host and process that write the run."""
    from experiments.runtime.sources import kernel_source_hash

    from .stale import process_tags

    sha = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    tags = {
        contract.T_GIT_SHA: sha or "unknown",
        contract.T_GIT_DIRTY: "unknown" if status is None else str(bool(status)).lower(),
        contract.T_KERNEL_HASH: kernel_source_hash(),
        **_versions(),
        **process_tags(),
    }
    if "cupy" in sys.modules:
        tags[contract.T_VERSION_PREFIX + "cupy"] = sys.modules["cupy"].__version__
    return tags
