"""Documents: a list of blocks (headings, paragraphs, tables, images, plotly figures) rendered to Markdown and to a
self-contained HTML page from the Jinja2 templates in ``templates/``. The HTML template autoescapes: text from the
results (trial labels, prompts, completions) is escaped wherever it lands; only the images' base64 data and plotly's
own HTML are inserted as they are.

In paragraphs, ``**bold**`` and ```code``` are the only markup; the HTML page renders both."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
from markupsafe import Markup, escape

__all__ = ["TEMPLATES", "Block", "render_html", "render_markdown", "write_text"]

Block = tuple[str, Any]
"""("h1" | "h2" | "p" | "code", text), ("table", DataFrame), ("image", (png path, alt text)) or ("plotly", figure)."""

TEMPLATES = Path(__file__).parent / "templates"


def _inline(text: str) -> Markup:
    """A paragraph's text, escaped, with its **bold** and `code` as HTML."""
    text = str(escape(text))
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return Markup(re.sub(r"`(.+?)`", r"<code>\1</code>", text))


def _md_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


_ENVIRONMENT = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=jinja2.select_autoescape(["html"]),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENVIRONMENT.filters["inline"] = _inline
_ENVIRONMENT.filters["md_cell"] = _md_cell


def _cells(frame: pd.DataFrame) -> tuple[list[str], list[list[Any]]]:
    """A table's column names and rows, missing values as ""."""
    frame = frame.astype(object).where(frame.notna(), "")
    return [str(c) for c in frame.columns], [list(row) for row in frame.itertuples(index=False)]


def _prepared(blocks: list[Block], page: bool) -> list[dict[str, Any]]:
    """The blocks as the templates take them; ``page``: for the HTML page (images read, plotly figures rendered,
    plotly.js included once), else for Markdown (no plotly)."""
    out: list[dict[str, Any]] = []
    plotly_included = False
    for kind, content in blocks:
        if kind == "table":
            columns, rows = _cells(content)
            out.append({"kind": kind, "columns": columns, "rows": rows})
        elif kind == "image":
            path, alt = content
            data = base64.b64encode(path.read_bytes()).decode("ascii") if page else ""
            out.append({"kind": kind, "name": path.name, "alt": alt, "data": data})
        elif kind == "plotly":
            if page:
                rendered = content.to_html(full_html=False, include_plotlyjs=not plotly_included)
                out.append({"kind": kind, "html": Markup(rendered)})
                plotly_included = True
        else:
            out.append({"kind": kind, "text": content})
    return out


def render_markdown(blocks: list[Block]) -> str:
    """The blocks as Markdown: images by file name (the PNGs sit beside the document), no plotly figures."""
    return _ENVIRONMENT.get_template("document.md").render(blocks=_prepared(blocks, page=False))


def render_html(blocks: list[Block], title: str) -> str:
    """The blocks as one HTML page that opens from disk with no network: images inline as base64, plotly.js inline
    once."""
    return _ENVIRONMENT.get_template("document.html").render(title=title, blocks=_prepared(blocks, page=True))


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` whole or not at all (a temporary file beside it, then a rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
