"""Write a report's sections: report.md, a self-contained report.html, tables as CSV and LaTeX.

The HTML is generated from the same blocks as the Markdown (no Markdown converter is
installed, and none is needed), with every figure embedded as a base64 data URI.
"""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from analysis.document import Bullets, Figure, Paragraph, Section, Table

TABLES_DIR = "tables"
FIGURES_DIR = "figures"


# --- inline text ----------------------------------------------------------------------

_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*(.+?)\*\*")


def inline_html(text: str) -> str:
    escaped = html.escape(text, quote=False)
    escaped = _CODE.sub(r"<code>\1</code>", escaped)
    return _BOLD.sub(r"<strong>\1</strong>", escaped)


def plain(text: str) -> str:
    return _BOLD.sub(r"\1", _CODE.sub(r"\1", text))


# --- Markdown -------------------------------------------------------------------------

def markdown_table(table: Table) -> str:
    shown = table.display_frame()
    def cell(text):
        return str(text).replace("|", "\\|").replace("\n", " ")
    header = "| " + " | ".join(cell(c) for c in shown.columns) + " |"
    numeric = [_is_numeric_column(table, c) for c in shown.columns]
    rule = "|" + "|".join("---:" if n else ":---" for n in numeric) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def _is_numeric_column(table: Table, column) -> bool:
    from pandas.api.types import is_numeric_dtype
    return is_numeric_dtype(table.frame[column]) and table.frame[column].dtype != bool


def markdown(sections: list[Section], title: str) -> str:
    lines = [f"# {title}", ""]
    for top in sections:
        for level, section in top.walk(level=2):
            if section.is_empty():
                continue
            lines += ["#" * min(level, 6) + " " + section.title, ""]
            for block in section.blocks:
                lines += _markdown_block(block) + [""]
    return "\n".join(lines).rstrip() + "\n"


def _markdown_block(block) -> list[str]:
    if isinstance(block, Paragraph):
        return [block.text]
    if isinstance(block, Bullets):
        return [f"- {item}" for item in block.items]
    if isinstance(block, Table):
        links = f"[CSV]({TABLES_DIR}/{block.name}.csv), [LaTeX]({TABLES_DIR}/{block.name}.tex)"
        return [f"*{block.caption}* ({links})", "", markdown_table(block)]
    if isinstance(block, Figure):
        return [f"![{plain(block.caption)}]({FIGURES_DIR}/{block.path.name})", "",
                f"*Figure: {block.caption}*"]
    raise TypeError(f"unknown block {block!r}")


# --- HTML -----------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
.table-wrap { max-width: 100%; overflow-x: auto; margin: 0.5em 0 1.5em; }
table { border-collapse: collapse; font-size: 0.88em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1em 0 2em; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption, .caption { font-size: 0.9em; color: #444; font-style: italic; }
code { background: #f5f5f5; padding: 0 0.2em; }
h2 { border-bottom: 1px solid #ddd; margin-top: 2em; }
@media print { body { max-width: none; margin: 0; } table { font-size: 0.7em; }
               .table-wrap { overflow-x: visible; } th, td { padding: 0.1em 0.3em; } }
"""


def html_document(sections: list[Section], title: str) -> str:
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             f"<title>{html.escape(title)}</title>", f"<style>{_STYLE}</style>", "</head>",
             "<body>", f"<h1>{html.escape(title)}</h1>"]
    for top in sections:
        for level, section in top.walk(level=2):
            if section.is_empty():
                continue
            tag = f"h{min(level, 6)}"
            parts.append(f"<{tag}>{inline_html(section.title)}</{tag}>")
            parts += [_html_block(block) for block in section.blocks]
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"


def _html_block(block) -> str:
    if isinstance(block, Paragraph):
        return f"<p>{inline_html(block.text)}</p>"
    if isinstance(block, Bullets):
        items = "".join(f"<li>{inline_html(item)}</li>" for item in block.items)
        return f"<ul>{items}</ul>"
    if isinstance(block, Table):
        return _html_table(block)
    if isinstance(block, Figure):
        data = base64.b64encode(block.path.read_bytes()).decode("ascii")
        alt = html.escape(plain(block.caption))
        return (f'<figure><img alt="{alt}" src="data:image/png;base64,{data}">'
                f"<figcaption>{inline_html(block.caption)}</figcaption></figure>")
    raise TypeError(f"unknown block {block!r}")


def _html_table(table: Table) -> str:
    shown = table.display_frame()
    numeric = [_is_numeric_column(table, c) for c in shown.columns]
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in shown.columns)
    rows = []
    for row in shown.itertuples(index=False):
        cells = "".join(
            f'<td class="num">{html.escape(v)}</td>' if n else f"<td>{html.escape(v)}</td>"
            for v, n in zip(row, numeric)
        )
        rows.append(f"<tr>{cells}</tr>")
    caption = f'<p class="caption">{inline_html(table.caption)}</p>'
    # wide tables scroll inside the page instead of running past its edge
    return (f'{caption}<div class="table-wrap"><table><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")


# --- LaTeX ----------------------------------------------------------------------------

# Characters the tables use that pdflatex without extra packages would not typeset.
_LATEX_SYMBOLS = {"×": r"$\times$", "→": r"$\to$", "—": "--", "·": r"$\cdot$", "≤": r"$\le$",
                  "≥": r"$\ge$", "µ": r"$\mu$", "ρ": r"$\rho$", "†": r"$\dagger$",
                  "–": "--", "²": r"$^2$"}
_LATEX_SPECIALS = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
                   "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                   "\\": r"\textbackslash{}"}


def latex_escape(text: str) -> str:
    escaped = "".join(_LATEX_SPECIALS.get(ch, ch) for ch in plain(str(text)))
    return _latex_symbols(escaped)


def _latex_symbols(text: str) -> str:
    for symbol, replacement in _LATEX_SYMBOLS.items():
        text = text.replace(symbol, replacement)
    return text


def latex_table(table: Table) -> str:
    shown = table.display_frame()
    align = "".join("r" if _is_numeric_column(table, c) else "l" for c in table.frame.columns)
    body = shown.to_latex(index=False, escape=True, caption=latex_escape(table.caption),
                          label=f"tab:{table.name}", position="htbp", column_format=align)
    # within the text width however many columns (needs \usepackage{graphicx}, as every figure does)
    shrink_to_fit = "\\resizebox{\\ifdim\\width>\\linewidth\\linewidth\\else\\width\\fi}{!}{%\n"
    body = body.replace("\\begin{tabular}", shrink_to_fit + "\\begin{tabular}", 1)
    body = body.replace("\\end{tabular}", "\\end{tabular}}", 1)
    return _latex_symbols(body)


# --- files ----------------------------------------------------------------------------

def tables_in(sections: list[Section]) -> list[Table]:
    return [block for top in sections for _, section in top.walk()
            for block in section.blocks if isinstance(block, Table)]


def write_report(sections: list[Section], out_dir: Path, title: str) -> dict[str, Path]:
    """Write report.md, report.html and every table; figures are already in out/figures."""
    tables_dir = out_dir / TABLES_DIR
    tables_dir.mkdir(parents=True, exist_ok=True)
    for table in tables_in(sections):
        table.frame.to_csv(tables_dir / f"{table.name}.csv", index=False)
        (tables_dir / f"{table.name}.tex").write_text(latex_table(table), encoding="utf-8")
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    md_path.write_text(markdown(sections, title), encoding="utf-8")
    html_path.write_text(html_document(sections, title), encoding="utf-8")
    return {"markdown": md_path, "html": html_path}
