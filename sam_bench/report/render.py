"""Render a report (a list of sections of simple blocks) as Markdown or self-contained HTML.

Blocks are small dataclasses; the HTML embeds images as ``data:`` URIs, escapes all text and
uses no script and no external resource.
"""

from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Text:
    """A paragraph; ``kind`` ``"warn"`` or ``"note"`` renders as a banner."""

    text: str
    kind: str = "p"


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    #: Columns (by index) aligned right (numbers).
    numeric: set[int] = field(default_factory=set)
    #: Cells that link somewhere: (row, column) -> URL (HTML) / relative path (Markdown).
    links: dict[tuple[int, int], str] = field(default_factory=dict)


@dataclass
class Figure:
    path: Path
    caption: str


Block = Text | Bullets | Table | Figure


@dataclass
class Section:
    heading: str
    blocks: list[Block]
    anchor: str = ""


# --- Markdown ---------------------------------------------------------------------------------


def _md(text: str) -> str:
    """Escape text for a Markdown paragraph or table cell (no raw HTML, no broken tables)."""
    text = html.escape(text, quote=False)
    for ch in "\\`*_[]|":
        text = text.replace(ch, "\\" + ch)
    return text.replace("\r", "").replace("\n", "<br>")


def _md_block(block: Block, base: Path) -> str:
    if isinstance(block, Text):
        prefix = {"warn": "> **⚠** ", "note": "> "}.get(block.kind, "")
        return prefix + _md(block.text)
    if isinstance(block, Bullets):
        return "\n".join(f"- {_md(item)}" for item in block.items)
    if isinstance(block, Table):
        head = "| " + " | ".join(_md(h) for h in block.headers) + " |"
        rule = "|" + "|".join(
            "---:" if i in block.numeric else "---" for i in range(len(block.headers))
        )
        body = [
            "| "
            + " | ".join(
                f"[{_md(c)}]({_md_url(block.links[(r, i)], base)})" if (r, i) in block.links
                else _md(c)
                for i, c in enumerate(row)
            )
            + " |"
            for r, row in enumerate(block.rows)
        ]  # fmt: skip
        return "\n".join([head, rule + "|", *body])
    rel = Path(os.path.relpath(block.path, base)).as_posix()
    return f"![{_md(block.caption)}]({rel})\n\n*{_md(block.caption)}*"


def _md_url(url: str, base: Path) -> str:
    """A link target for the Markdown report: a ``file:`` URL becomes a path relative to
    ``base`` (the report moves with its sweep folder only when the target is outside it)."""
    if url.startswith("file://"):
        from urllib.parse import unquote, urlsplit

        parts = urlsplit(url)
        rel = Path(os.path.relpath(unquote(parts.path), base)).as_posix()
        url = rel + (f"#{parts.fragment}" if parts.fragment else "")
    return url.replace(" ", "%20").replace(")", "%29")


def to_markdown(title: str, sections: list[Section], base: Path) -> str:
    """The report as Markdown; images are linked relative to ``base`` (the sweep directory)."""
    parts = [f"# {_md(title)}"]
    for s in sections:
        if s.heading:
            parts.append(f"## {_md(s.heading)}")
        parts.extend(_md_block(b, base) for b in s.blocks)
    return "\n\n".join(parts) + "\n"


# --- HTML -------------------------------------------------------------------------------------

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;
max-width:1200px;padding:1rem 2rem;color:#222;line-height:1.45}
h1{font-size:1.6rem}h2{font-size:1.25rem;border-bottom:1px solid #ddd;padding-bottom:.2rem;
margin-top:2rem}
.warn{background:#fff3cd;border:2px solid #d39e00;color:#5c4400;padding:.6rem 1rem;
font-weight:600;border-radius:4px}
.note{background:#eef4fb;border-left:4px solid #3b7dd8;padding:.5rem 1rem}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f3f3;overflow-wrap:anywhere}td{overflow-wrap:anywhere}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr:nth-child(even) td{background:#fafafa}
figure{margin:1rem 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.9rem;color:#555}
code,.mono{font-family:ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap}
"""


def _h(text: str) -> str:
    return html.escape(text, quote=True).replace("\n", "<br>")


def data_uri(path: Path) -> str:
    """A PNG file as a ``data:image/png;base64,...`` URI."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _html_block(block: Block) -> str:
    if isinstance(block, Text):
        return f'<p class="{block.kind}">{_h(block.text)}</p>'
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{_h(i)}</li>" for i in block.items) + "</ul>"
    if isinstance(block, Table):
        head = "".join(f"<th>{_h(h)}</th>" for h in block.headers)
        body = "".join(
            "<tr>"
            + "".join(
                ('<td class="num">' if i in block.numeric else "<td>")
                + (
                    f'<a href="{_h(block.links[(r, i)])}">{_h(c)}</a>'
                    if (r, i) in block.links
                    else _h(c)
                )
                + "</td>"
                for i, c in enumerate(row)
            )
            + "</tr>"
            for r, row in enumerate(block.rows)
        )
        table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        return f'<div class="scroll">{table}</div>'
    return (
        f'<figure><img src="{data_uri(block.path)}" alt="{_h(block.caption)}">'
        f"<figcaption>{_h(block.caption)}</figcaption></figure>"
    )


def to_html(title: str, sections: list[Section]) -> str:
    """The report as one self-contained HTML5 document."""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_h(title)}</title>",
        f"<style>{CSS}</style></head>",
        f"<body><h1>{_h(title)}</h1>",
    ]
    for s in sections:
        out.append(f'<section id="{_h(s.anchor)}">' if s.anchor else "<section>")
        if s.heading:
            out.append(f"<h2>{_h(s.heading)}</h2>")
        out.extend(_html_block(b) for b in s.blocks)
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
