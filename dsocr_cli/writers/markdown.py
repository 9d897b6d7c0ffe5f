"""Markdown: the official cleaned output, one page after another, figures saved as PNG in ``<stem>_images/``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from dsocr_cli.postprocess.grounding import parse_blocks
from dsocr_cli.postprocess.markdown import (
    RenderedPage,
    TableStyle,
    page_markdown,
    png_bytes,
)
from dsocr_cli.results import PageResult
from dsocr_cli.writers.atomic import atomic_write_bytes, atomic_write_text
from dsocr_cli.writers.base import StringWriter

DEFAULT_PAGE_SEPARATOR = "<!-- page {number} -->"


def images_dirname(path: Path) -> str:
    """Where a document's figures go, relative to it: ``report.md`` -> ``report_images``."""
    return f"{path.stem}_images"


class MarkdownWriter(StringWriter):
    suffix = ".md"

    def __init__(self, page_separator: str = DEFAULT_PAGE_SEPARATOR, tables: TableStyle = "markdown") -> None:
        """``page_separator`` goes before each page (``{number}`` is the page number; empty for none)."""
        self.page_separator = page_separator
        self.tables = tables

    def render(self, source: str, results: Sequence[PageResult]) -> str:
        """The Markdown alone, for stdout: figures are left out, since no image files are written beside it."""
        return self._build(results, None).text

    def write(self, source: str, results: Sequence[PageResult], target: Path) -> list[Path]:
        """Figures first, then the Markdown, so the document never links to a figure that is not there yet."""
        document = self._build(results, images_dirname(target))
        written: list[Path] = []
        for name, image in document.images:
            path = target.parent / name
            atomic_write_bytes(path, png_bytes(image))
            written.append(path)
        atomic_write_text(target, document.text)
        return [*written, target]

    def _build(self, results: Sequence[PageResult], dirname: str | None) -> RenderedPage:
        pages: list[str] = []
        images: list[tuple[str, Image.Image]] = []
        for result in results:
            page = page_markdown(
                parse_blocks(result.text), result.page.image, result.page.number, dirname, self.tables
            )
            separator = self.page_separator.format(number=result.page.number)
            pages.append("\n\n".join(part for part in (separator, page.text) if part))
            images.extend(page.images)
        return RenderedPage("\n\n".join(pages) + "\n", images)
