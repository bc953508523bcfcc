"""Report documents: a list of blocks (headings, paragraphs, tables, images) rendered twice.

Once to Markdown and once to one self-contained HTML page (inline CSS, figures as base64
data URIs), so the two always say the same thing. The modules deciding *what* a report
says (``run_report``, ``compare``, ``judge_blocks``) build these blocks and know no markup.
"""

from __future__ import annotations

import base64
import html
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union


@dataclass
class Heading:
    """A heading of ``level`` 1-3."""

    level: int
    text: str


@dataclass
class Para:
    """A paragraph of plain text."""

    text: str


@dataclass
class Table:
    """A table of text cells; ``id`` names it in the HTML page (tests and links find it)."""

    header: list[str]
    rows: list[list[str]]
    id: str | None = None


@dataclass
class Image:
    """A PNG file: linked from the Markdown, inlined into the HTML page."""

    alt: str
    path: Path
    id: str | None = None


Block = Union[Heading, Para, Table, Image]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1100px;padding:0 1em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #444;padding-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #bbb;padding:.25em .6em;text-align:right;white-space:nowrap}
th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}
tr:nth-child(even) td{background:#fafafa}img{max-width:100%;display:block;margin:.6em 0}
.wide{max-width:100%;overflow-x:auto}
""".strip()  # .wide: a table wider than the page scrolls in its own box, so the page keeps its width


_BOLD = re.compile(r"\*\*(.+?)\*\*")  # a paragraph's **bold**, as Markdown writes it


def _md_cell(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: Sequence[Block], base: Path) -> str:
    """Render blocks as Markdown; images link to files relative to ``base``."""
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append("#" * b.level + " " + b.text)
        elif isinstance(b, Para):
            out.append(b.text)
        elif isinstance(b, Table):
            out.append("| " + " | ".join(_md_cell(h) for h in b.header) + " |")
            out.append("|" + "|".join([":---"] + ["---:"] * (len(b.header) - 1)) + "|")
            out.extend("| " + " | ".join(_md_cell(c) for c in r) + " |" for r in b.rows)
        elif isinstance(b, Image):
            out.append(f"![{b.alt}]({Path(os.path.relpath(b.path, base)).as_posix()})")
        out.append("")
    return "\n".join(out)


def to_html(blocks: Sequence[Block], title: str) -> str:
    """Render blocks as one self-contained HTML page (inline CSS, images as data URIs)."""
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{e(title)}</title><style>{_CSS}</style></head><body>"]
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"<h{b.level}>{e(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            out.append("<p>" + _BOLD.sub(r"<strong>\1</strong>", e(b.text)) + "</p>")
        elif isinstance(b, Table):
            ident = f' id="{e(b.id)}"' if b.id else ""
            heads = "".join(f"<th>{e(h)}</th>" for h in b.header)
            out.append(f'<div class="wide"><table{ident}><thead><tr>{heads}</tr></thead><tbody>')
            out.extend("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in b.rows)
            out.append("</tbody></table></div>")
        elif isinstance(b, Image):
            data = base64.b64encode(b.path.read_bytes()).decode("ascii")
            ident = f' id="{e(b.id)}"' if b.id else ""
            out.append(f'<img{ident} alt="{e(b.alt)}" src="data:image/png;base64,{data}">')
    out.append("</body></html>\n")
    return "\n".join(out)
