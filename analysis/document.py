"""The blocks a report is made of. Sections hold them; render.py writes them out.

One set of blocks renders to Markdown, HTML, CSV and LaTeX, so the formats cannot drift
apart. Tables keep their raw numbers (for CSV) and a display format per column.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

MISSING = "—"


@dataclass
class Paragraph:
    """Text with two inline marks: `code` and **bold**."""

    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    name: str            # file stem of tables/<name>.csv and .tex; unique in a report
    caption: str
    frame: pd.DataFrame  # raw values, written as CSV
    formats: dict[str, str | Callable] = field(default_factory=dict)

    def display_frame(self) -> pd.DataFrame:
        """Every cell as the string a reader sees."""
        shown = pd.DataFrame(index=self.frame.index)
        for column in self.frame.columns:
            fmt = self.formats.get(column)
            shown[column] = [format_cell(value, fmt) for value in self.frame[column]]
        return shown.reset_index(drop=True)


@dataclass
class Figure:
    name: str
    caption: str
    path: Path           # the PNG, already written under <out>/figures/


@dataclass
class Section:
    title: str
    blocks: list = field(default_factory=list)
    children: list["Section"] = field(default_factory=list)

    def add(self, *blocks) -> "Section":
        self.blocks.extend(b for b in blocks if b is not None)
        return self

    def child(self, title: str) -> "Section":
        section = Section(title)
        self.children.append(section)
        return section

    def is_empty(self) -> bool:
        return not self.blocks and all(c.is_empty() for c in self.children)

    def walk(self, level: int = 1):
        """(level, section) for this section and every descendant, depth first."""
        yield level, self
        for child in self.children:
            yield from child.walk(level + 1)


def format_cell(value, fmt: str | Callable | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return MISSING
    if callable(fmt):
        return fmt(value)
    if fmt:
        return fmt.format(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def slug(text: str) -> str:
    """A file-name-safe stem: lower case, [a-z0-9_-] only."""
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or "x"


class Names:
    """Hands out unique file stems, so two models' tables never overwrite each other."""

    def __init__(self):
        self._used: set[str] = set()

    def __call__(self, *parts) -> str:
        stem = "_".join(slug(p) for p in parts if str(p))
        name, n = stem, 2
        while name in self._used:
            name, n = f"{stem}_{n}", n + 1
        self._used.add(name)
        return name
