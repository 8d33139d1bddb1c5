"""Write the report: tables as CSV, the same tables in ``report.md`` and ``report.html``.

The HTML page is self-contained: styles inline, figures embedded as base64 PNG data, no
script and no network request, so it opens from a file, an e-mail or an MLflow artifact
view alike.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

MISSING = "n/a"

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto;
       max-width: 1180px; padding: 1.5rem; color: #1b1b1b; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.25rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
h3 { font-size: 1.05rem; margin-bottom: 0.3rem; }
.verdict { background: #eef5ff; border-left: 4px solid #0072B2; padding: 0.8rem 1rem; }
.caveats li { margin-bottom: 0.3rem; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.4rem 0 1rem; }
th, td { border: 1px solid #d0d0d0; padding: 0.25rem 0.5rem; text-align: left;
         vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
code, td.id { font-family: ui-monospace, monospace; font-size: 0.78rem; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.85rem; color: #444; }
.note { font-size: 0.85rem; color: #444; }
"""


@dataclass
class Table:
    """A table of the report: the raw frame goes to ``<name>.csv``, the display frame (every
    cell already a string) to the Markdown and HTML pages."""

    name: str
    title: str
    frame: pd.DataFrame
    display: pd.DataFrame
    note: str = ""


@dataclass
class FigureRef:
    """A figure written as ``<name>.png``."""

    name: str
    title: str
    path: Path
    caption: str = ""


@dataclass
class Section:
    """A titled part of the report, in reading order."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    bullets: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[FigureRef] = field(default_factory=list)
    css_class: str = ""


def number(value: object, *, digits: int = 4) -> str:
    """A cell as text: fixed decimals, scientific when tiny or huge, ``n/a`` for NaN."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return MISSING
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if value.is_integer() and abs(value) < 1e6:
            return str(int(value))
        if value != 0 and (abs(value) < 10 ** -(digits - 1) or abs(value) >= 1e5):
            return f"{value:.{max(digits - 2, 1)}e}"
        return f"{value:.{digits}f}"
    text = str(value)
    return MISSING if text in ("nan", "None", "<NA>") else text


def p_value(value: object) -> str:
    """A p-value with three significant digits."""
    if not isinstance(value, float) or math.isnan(value):
        return MISSING
    return f"{value:.3g}" if value >= 1e-3 else f"{value:.2e}"


def display(frame: pd.DataFrame, formats: dict | None = None) -> pd.DataFrame:
    """Every cell of ``frame`` as text; ``formats`` maps a column to its own formatter."""
    formats = formats or {}
    out = {}
    for column in frame.columns:
        formatter = formats.get(column)
        if formatter is None and str(column).startswith("p_"):
            formatter = p_value
        formatter = formatter or number
        out[column] = [formatter(_plain(v)) for v in frame[column]]
    return pd.DataFrame(out, columns=frame.columns, dtype=object)


def _plain(value: object) -> object:
    """NumPy scalars as Python ones, so formatting does not depend on the dtype."""
    return value.item() if hasattr(value, "item") else value


def write_tables(tables: list[Table], out_dir: Path) -> dict[str, Path]:
    """Each table as ``<name>.csv`` (full precision, run ids included)."""
    paths = {}
    for table in tables:
        path = out_dir / f"{table.name}.csv"
        table.frame.to_csv(path, index=False, float_format="%.17g")
        paths[table.name] = path
    return paths


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of a display frame."""

    def cell(text: object) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = [
        "| " + " | ".join(cell(c) for c in frame.columns) + " |",
        "| " + " | ".join("---" for _ in frame.columns) + " |",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join(lines)


def render_markdown(title: str, sections: list[Section]) -> str:
    """The whole report as Markdown; figures are linked as the PNG files beside it."""
    parts = [f"# {title}", ""]
    for section in sections:
        parts += [f"## {section.title}", ""]
        for paragraph in section.paragraphs:
            parts += [paragraph, ""]
        if section.bullets:
            parts += [f"- {bullet}" for bullet in section.bullets] + [""]
        for figure in section.figures:
            parts += [f"### {figure.title}", "", f"![{figure.title}]({figure.path.name})", ""]
            if figure.caption:
                parts += [figure.caption, ""]
        for table in section.tables:
            parts += [f"### {table.title}", ""]
            if table.note:
                parts += [f"_{table.note}_", ""]
            parts += [markdown_table(table.display), "", f"CSV: `{table.name}.csv`", ""]
    return "\n".join(parts).rstrip() + "\n"


def html_table(frame: pd.DataFrame) -> str:
    """An HTML table of a display frame: numeric columns right-aligned, ids in monospace."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    classes = [_column_class(str(c), frame[c]) for c in frame.columns]
    body = []
    for row in frame.itertuples(False):
        cells = "".join(
            f'<td class="{css}">{html.escape(str(value))}</td>'
            if css
            else f"<td>{html.escape(str(value))}</td>"
            for css, value in zip(classes, row, strict=True)
        )
        body.append(f"<tr>{cells}</tr>")
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _column_class(column: str, cells: pd.Series) -> str:
    """``id`` for run ids and hashes, ``num`` when every cell is a number or an interval."""
    if column.endswith("run_id") or column in ("run_ids", "config_hash"):
        return "id"
    for text in cells:
        words = str(text).translate(str.maketrans("", "", "±[],")).split()
        if str(text) in (MISSING, "") or not words:
            continue
        try:
            [float(word) for word in words]
        except ValueError:
            return ""
    return "num"


def render_html(title: str, sections: list[Section]) -> str:
    """The whole report as one self-contained HTML page."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for section in sections:
        css = f' class="{section.css_class}"' if section.css_class else ""
        parts.append(f"<section{css}><h2>{html.escape(section.title)}</h2>")
        parts += [f"<p>{html.escape(p)}</p>" for p in section.paragraphs]
        if section.bullets:
            items = "".join(f"<li>{html.escape(b)}</li>" for b in section.bullets)
            parts.append(f'<ul class="caveats">{items}</ul>')
        for figure in section.figures:
            data = base64.b64encode(figure.path.read_bytes()).decode("ascii")
            parts.append(
                f"<figure><h3>{html.escape(figure.title)}</h3>"
                f'<img src="data:image/png;base64,{data}" alt="{html.escape(figure.title)}">'
                f"<figcaption>{html.escape(figure.caption)}</figcaption></figure>"
            )
        for table in section.tables:
            parts.append(f"<h3>{html.escape(table.title)}</h3>")
            if table.note:
                parts.append(f'<p class="note">{html.escape(table.note)}</p>')
            parts.append(html_table(table.display))
            parts.append(f'<p class="note">CSV: <code>{html.escape(table.name)}.csv</code></p>')
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
