"""The markdown every benchmark prints (and writes with --out): a header that makes it rerunnable."""
from __future__ import annotations

import argparse
import datetime
import sys

import torch

from experiments.conv import DEFAULT_TILE
from experiments.runtime import GpuUnavailableError, resolve


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None, tile: bool = False) -> argparse.Namespace:
    """The options every benchmark takes (input size, batch, backend, --out; the blocked GEMM's tile where it
    runs one) after its own, parsed."""
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=1)
    if tile:
        parser.add_argument("--tile", type=int, default=DEFAULT_TILE, help="the blocked GEMM's tile (kernel runtimes only)")
    parser.add_argument("--backend", default="auto", choices=["auto", "gpu", "numpy"])
    parser.add_argument("--out", help="also write the tables as markdown to this file")
    args = parser.parse_args(argv)
    try:   # --backend gpu on a machine without one: bad input, refused before any work (exit 2)
        resolve(args.backend)
    except GpuUnavailableError as exc:
        parser.exit(2, f"{parser.prog}: {exc}\n")
    return args


def header(name: str, runtime, argv: list[str] | None, facts: str) -> str:
    """Title and date, the device and backend, what was measured, and the exact command."""
    command = " ".join(sys.argv[1:] if argv is None else argv)
    return (f"# bench-{name}, {datetime.date.today()}\n\n"
            f"device: {runtime.device_name()}; backend: {runtime.name}; torch {torch.__version__}; {facts}\n\n"
            f"command: `python -m experiments.bench.{name} {command}`\n")


def emit(sections: list[str], out: str | None, noisy: list[str] = ()) -> None:
    """Print the document, with the labels of its ``noisy`` measurements, and with ``out`` write it there
    (e.g. a dated file under results/)."""
    if noisy:
        sections = [*sections, f"\nNoisy measurements (IQR/median > 10%): {', '.join(noisy)}"]
    document = "\n".join(sections) + "\n"
    print(document)
    if out:
        with open(out, "w") as f:
            f.write(document)
