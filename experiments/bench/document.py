"""The markdown every benchmark prints (and writes with --out): a header that makes it rerunnable."""
from __future__ import annotations

import datetime
import sys

import torch


def header(name: str, runtime, argv: list[str] | None, facts: str) -> str:
    """Title and date, the device and backend, what was measured, and the exact command."""
    command = " ".join(sys.argv[1:] if argv is None else argv)
    return (f"# bench-{name}, {datetime.date.today()}\n\n"
            f"device: {runtime.device_name()}; backend: {runtime.name}; torch {torch.__version__}; {facts}\n\n"
            f"command: `python -m experiments.bench.{name} {command}`\n")


def emit(sections: list[str], out: str | None) -> None:
    """Print the document and, with ``out``, write it there (e.g. a dated file under results/)."""
    document = "\n".join(sections) + "\n"
    print(document)
    if out:
        with open(out, "w") as f:
            f.write(document)
