"""Where the kernel sources live and how a build of them is identified."""
from __future__ import annotations

import hashlib
from pathlib import Path

HIP_DIR = Path(__file__).resolve().parents[2] / "hip"


def source_path(name: str) -> Path:
    path = HIP_DIR / name
    if not path.is_file():
        valid = sorted(p.name for p in HIP_DIR.glob("*.hip"))
        raise FileNotFoundError(f"no kernel source {name!r} in {HIP_DIR}; available: {valid}")
    return path


def kernel_source_hash() -> str:
    """SHA-256 over every kernel source and header, so any edit changes it."""
    digest = hashlib.sha256()
    for path in sorted(HIP_DIR.rglob("*")):
        if path.is_file() and path.suffix in {".hip", ".h", ".cpp"}:
            digest.update(path.relative_to(HIP_DIR).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
