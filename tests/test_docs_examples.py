"""Every ```python example of README.md and docs/*.md runs as written, each in a fresh Python.

A block that cannot run here says so on the line before it, with the reason:
``<!-- example not run: REASON -->`` (e.g. it needs a GPU). Use it sparingly: a reader copies examples.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
NOT_RUN = re.compile(r"<!--\s*example not run:\s*(?P<reason>\S.*?)\s*-->")
TIMEOUT_S = 300


def python_blocks(text: str) -> list[tuple[int, str, str | None]]:
    """(first line number, code, reason it is not run or None) of each fenced ```python block."""
    lines, blocks, start = text.splitlines(), [], None
    for number, line in enumerate(lines, 1):
        fence = line.strip()
        if start is None and fence == "```python":
            start, indent = number, len(line) - len(line.lstrip())
        elif start is not None and fence == "```":
            code = "\n".join(body[indent:] for body in lines[start:number - 1])
            before = lines[start - 2] if start >= 2 else ""
            marker = NOT_RUN.search(before)
            blocks.append((start, code, marker and marker["reason"]))
            start = None
    if start is not None:
        raise ValueError(f"the ```python block opened at line {start} is never closed")
    return blocks


EXAMPLES = [(page, *block) for page in PAGES for block in python_blocks(page.read_text())]


def test_the_readme_has_a_python_example():
    assert any(page.name == "README.md" for page, *_ in EXAMPLES)


def test_blocks_are_found_with_their_markers():
    text = ("x\n```python\nprint(1)\n```\n<!-- example not run: needs a GPU -->\n```python\n"
            "import cupy\n```\n  ```python\n  y = 2\n  ```\n```\nnot python\n```\n")
    assert python_blocks(text) == [(2, "print(1)", None), (6, "import cupy", "needs a GPU"), (9, "y = 2", None)]


@pytest.mark.parametrize(("page", "line", "code", "not_run"), EXAMPLES,
                         ids=[f"{page.relative_to(REPO)}:{line}" for page, line, *_ in EXAMPLES])
def test_example_runs_as_written(page, line, code, not_run):
    if not_run:
        pytest.skip(f"{page.name}:{line} is marked not run: {not_run}")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               MLFLOW_DISABLE_TELEMETRY="true")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    assert done.returncode == 0, f"{page.relative_to(REPO)}:{line} failed:\n{done.stderr[-4000:]}"
