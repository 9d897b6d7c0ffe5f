"""Blocks -> one page as Markdown, plain text or an HTML fragment.

Markdown follows the official post-processing (grounding tags removed, figures cropped and linked, ``<center>``
dropped, ``\\coloneqq``/``\\eqqcolon`` rewritten, blank-line runs collapsed); the other two are renderings of the
same blocks for readers that want no markup or a browser. Markdown and HTML pass the model's text and tables through
the same sanitiser (``postprocess.sanitize``), so neither carries the model's scripts, handlers or unsafe links.
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from PIL import Image

from dsocr_cli.postprocess.grounding import Block, crop_box
from dsocr_cli.postprocess.sanitize import escape_html, markdown_table, sanitize_markdown, sanitize_table
from dsocr_cli.postprocess.tables import split_tables, table_to_markdown, table_to_text

TableStyle = Literal["markdown", "html"]

FIGURE_LABEL = "image"
HEADING_LABELS = {"title": 1, "sub_title": 2}
"""Heading level for labels whose text the model wrote without ``#``."""
CLASS_LABELS = frozenset({"text", "equation", "table_caption", "table_footnote", "image_caption"})
"""Labels that become a CSS class in HTML; other labels (and locate queries) are plain paragraphs."""

_CENTER = re.compile(r"</?center>", re.IGNORECASE)
_BLANK_RUN = re.compile(r"\n{3,}")
_HEADING = re.compile(r"(#{1,6})[ \t]+(.*)")
_HEADING_LINE = re.compile(r"^(#{1,6}[ \t]+[^\n]*)$", re.MULTILINE)
_HEADING_MARK = re.compile(r"^#{1,6}[ \t]+", re.MULTILINE)
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_NEEDS_BRACKETS = re.compile(r"[\s()<>]")


@dataclass
class RenderedPage:
    """A page's text and the figure crops it refers to."""

    text: str
    images: list[tuple[str, Image.Image]] = field(default_factory=list)
    """(path relative to the document, cropped figure) pairs for the writer to save."""


def clean_text(text: str) -> str:
    """The official clean-up of block content: no ``<center>`` wrappers, ``:=``/``=:`` for the colon macros."""
    return _CENTER.sub("", text).replace("\\coloneqq", ":=").replace("\\eqqcolon", "=:").strip()


def page_markdown(
    blocks: Sequence[Block],
    page_image: Image.Image,
    page_number: int,
    images_dirname: str | None,
    tables: TableStyle = "markdown",
) -> RenderedPage:
    """Markdown for one page; each figure box becomes ``![](DIR/pNNN_K.png)``, none if ``images_dirname`` is None.

    Tables become pipe tables when nothing is lost (``tables="markdown"``), else sanitised HTML; the model's
    other text is sanitised as Markdown (``sanitize.sanitize_markdown``)."""
    parts: list[str] = []
    images: list[tuple[str, Image.Image]] = []
    for block in blocks:
        if block.label == FIGURE_LABEL and images_dirname is not None:
            for box in block.boxes:
                name = f"{images_dirname}/p{page_number:03d}_{len(images) + 1}.png"
                images.append((name, crop_box(page_image, box)))
                parts.append(f"![](<{name}>)" if _NEEDS_BRACKETS.search(name) else f"![]({name})")
        for segment in split_tables(clean_text(block.text)):
            if segment.is_table:
                converted = table_to_markdown(segment.text) if tables == "markdown" else None
                parts.append(converted if converted is not None else markdown_table(segment.text))
            else:
                parts.append(sanitize_markdown(segment.text.strip()))
    return RenderedPage(_join(parts), images)


def page_text(blocks: Sequence[Block]) -> str:
    """Plain text for one page: headings without ``#``, tables as tab-separated rows, no figures, LaTeX as written."""
    parts: list[str] = []
    for block in blocks:
        for segment in split_tables(clean_text(block.text)):
            if segment.is_table:
                parts.append(table_to_text(segment.text))
            else:
                parts.append(_HEADING_MARK.sub("", segment.text).strip())
    return _join(parts)


def page_html(blocks: Sequence[Block], page_image: Image.Image) -> str:
    """An HTML fragment for one page: all model text escaped, tables sanitised, figures embedded as PNG data URIs."""
    parts: list[str] = []
    for block in blocks:
        if block.label == FIGURE_LABEL:
            for box in block.boxes:
                data = base64.b64encode(png_bytes(crop_box(page_image, box))).decode("ascii")
                parts.append(f'<figure><img src="data:image/png;base64,{data}" alt=""></figure>')
        for segment in split_tables(clean_text(block.text)):
            if segment.is_table:
                parts.append(sanitize_table(segment.text))
            else:
                parts.extend(_html_paragraphs(segment.text, block.label))
    return "\n".join(parts)


def png_bytes(image: Image.Image) -> bytes:
    """PNG encoding of a figure crop (lossless, so a figure is never degraded twice)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _html_paragraphs(text: str, label: str | None) -> list[str]:
    """``#`` lines as ``<hN>``; other paragraphs as ``<p>``, or as a heading when the label is a title."""
    label_level = HEADING_LABELS.get(label or "")
    css = f' class="{label}"' if label in CLASS_LABELS else ""
    out: list[str] = []
    for piece in _HEADING_LINE.split(text):
        heading = _HEADING.fullmatch(piece.strip())
        if heading:
            level = len(heading.group(1))
            out.append(f"<h{level}>{escape_html(heading.group(2).strip())}</h{level}>")
            continue
        for paragraph in _PARAGRAPH_BREAK.split(piece.strip()):
            if not paragraph:
                continue
            if label_level:
                out.append(f"<h{label_level}>{escape_html(paragraph)}</h{label_level}>")
            else:
                out.append(f"<p{css}>{escape_html(paragraph)}</p>")
    return out


def _join(parts: list[str]) -> str:
    return _BLANK_RUN.sub("\n\n", "\n\n".join(part for part in parts if part)).strip()
