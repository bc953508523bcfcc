"""Report documents: a list of blocks (headings, paragraphs, tables, images) rendered twice.

Once to Markdown and once to one self-contained HTML page (inline CSS, figures as base64
data URIs), so the two always say the same thing. Split from ``render`` so that the
module deciding *what* a report says stays readable.
"""

from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union



@dataclass
class _Heading:
    level: int
    text: str


@dataclass
class _Para:
    text: str


@dataclass
class _Table:
    header: list[str]
    rows: list[list[str]]
    id: str | None = None


@dataclass
class _Image:
    alt: str
    path: Path
    id: str | None = None


_Block = Union[_Heading, _Para, _Table, _Image]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1100px;padding:0 1em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #444;padding-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #bbb;padding:.25em .6em;text-align:right;white-space:nowrap}
th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}
tr:nth-child(even) td{background:#fafafa}img{max-width:100%;display:block;margin:.6em 0}
""".strip()


def _md_cell(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def _to_markdown(blocks: Sequence[_Block], base: Path) -> str:
    """Render blocks as Markdown; images link to files relative to ``base``."""
    out: list[str] = []
    for b in blocks:
        if isinstance(b, _Heading):
            out.append("#" * b.level + " " + b.text)
        elif isinstance(b, _Para):
            out.append(b.text)
        elif isinstance(b, _Table):
            out.append("| " + " | ".join(_md_cell(h) for h in b.header) + " |")
            out.append("|" + "|".join([":---"] + ["---:"] * (len(b.header) - 1)) + "|")
            out.extend("| " + " | ".join(_md_cell(c) for c in r) + " |" for r in b.rows)
        elif isinstance(b, _Image):
            out.append(f"![{b.alt}]({Path(os.path.relpath(b.path, base)).as_posix()})")
        out.append("")
    return "\n".join(out)


def _to_html(blocks: Sequence[_Block], title: str) -> str:
    """Render blocks as one self-contained HTML page (inline CSS, images as data URIs)."""
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{e(title)}</title><style>{_CSS}</style></head><body>"]
    for b in blocks:
        if isinstance(b, _Heading):
            out.append(f"<h{b.level}>{e(b.text)}</h{b.level}>")
        elif isinstance(b, _Para):
            out.append(f"<p>{e(b.text)}</p>")
        elif isinstance(b, _Table):
            ident = f' id="{e(b.id)}"' if b.id else ""
            heads = "".join(f"<th>{e(h)}</th>" for h in b.header)
            out.append(f"<table{ident}><thead><tr>{heads}</tr></thead><tbody>")
            out.extend("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in b.rows)
            out.append("</tbody></table>")
        elif isinstance(b, _Image):
            data = base64.b64encode(b.path.read_bytes()).decode("ascii")
            ident = f' id="{e(b.id)}"' if b.id else ""
            out.append(f'<img{ident} alt="{e(b.alt)}" src="data:image/png;base64,{data}">')
    out.append("</body></html>\n")
    return "\n".join(out)
