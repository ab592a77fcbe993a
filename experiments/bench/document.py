"""The markdown every benchmark prints (and writes with --out): a header that makes it rerunnable."""
from __future__ import annotations

import argparse
import datetime
import os
import sys
from pathlib import Path

import pandas as pd
import torch

from experiments.conv import DEFAULT_TILE
from experiments.runtime import GpuUnavailableError, resolve


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None, tile: bool = False,
               emulator: bool = False) -> argparse.Namespace:
    """The options every benchmark takes (input size, batch, backend, --out; the blocked GEMM's tile where it
    runs one) after its own, parsed. ``emulator``: the benchmark also runs on the emulator (emulated times)."""
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=1)
    if tile:
        parser.add_argument("--tile", type=int, default=DEFAULT_TILE, help="the blocked GEMM's tile (kernel runtimes only)")
    parser.add_argument("--backend", default="auto", choices=["auto", "gpu", "numpy"] + ["emulator"] * emulator)
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
        save(document, out)


def save(text: str, out: str | os.PathLike) -> None:
    """Write ``out`` whole or not at all (a reader never sees half a file)."""
    path = Path(out)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)


IN_PROGRESS = "(in progress: the tables below hold the rows measured so far)"


class Tables:
    """A document of titled tables filled row by row. With ``out`` the file is rewritten after every row,
    marked in progress until ``finish``, so a run stopped midway (a time limit, a crash) keeps what it
    measured."""

    def __init__(self, header: str, out: str | None, floatfmt: str = ".3g") -> None:
        self.header, self.out, self.floatfmt = header, out, floatfmt
        self.tables: dict[str, list[dict]] = {}
        self.notes: dict[str, str] = {}

    def add(self, title: str, row: dict) -> None:
        self.tables.setdefault(title, []).append(row)
        self._save()

    def note(self, title: str, text: str) -> None:
        """A section without a table (e.g. why a table is absent)."""
        self.notes[title] = text
        self._save()

    def sections(self) -> list[str]:
        out = [self.header]
        for title, rows in self.tables.items():
            out += [f"\n## {title}\n", pd.DataFrame(rows).to_markdown(index=False, floatfmt=self.floatfmt)]
        for title, text in self.notes.items():
            out += [f"\n## {title}\n", text]
        return out

    def finish(self, noisy: list[str] = ()) -> None:
        emit(self.sections(), self.out, noisy)

    def _save(self) -> None:
        if self.out:
            sections = self.sections()
            save("\n".join([sections[0], IN_PROGRESS, *sections[1:]]) + "\n", self.out)
