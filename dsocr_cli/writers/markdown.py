"""Markdown: the official cleaned output, one page after another, figures saved as PNG in ``<stem>_images/``."""

from __future__ import annotations

from pathlib import Path

from dsocr_cli.defaults import PAGE_SEPARATOR
from dsocr_cli.postprocess.grounding import parse_blocks
from dsocr_cli.postprocess.markdown import TableStyle, page_markdown, png_bytes
from dsocr_cli.results import PageResult
from dsocr_cli.writers.atomic import atomic_write_bytes
from dsocr_cli.writers.base import FormatDocument, StringWriter
from dsocr_cli.writers.provenance import markdown_comment

DEFAULT_PAGE_SEPARATOR = PAGE_SEPARATOR


def images_dirname(path: Path) -> str:
    """Where a document's figures go, relative to it: ``report.md`` -> ``report_images``."""
    return f"{path.stem}_images"


def check_page_separator(separator: str) -> None:
    """Raise ValueError (with the reason) when ``separator`` is not a valid template for page numbers."""
    try:
        separator.format(number=1)
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        reason = f"unknown field {{{exc.args[0]}}}" if isinstance(exc, (KeyError, IndexError)) else str(exc)
        raise ValueError(f"{reason}; the only field is {{number}} (write {{{{ and }}}} for braces)") from None


class MarkdownDocument(FormatDocument):
    joiner = "\n\n"

    def head(self) -> str:
        return markdown_comment(self.provenance) + "\n\n" if self.provenance else ""

    def tail(self) -> str:
        return "\n"

    def page(self, result: PageResult, index: int) -> str:
        """The page's Markdown; on a file target its figures are saved now, so the page image can go.

        Figures are written before the Markdown that links them, so a document never links to a figure
        that is not there yet. On stdout figures are left out (no image files are written beside it).
        """
        dirname = images_dirname(self.target) if self.target is not None else None
        rendered = page_markdown(
            parse_blocks(result.text), result.page.image, result.page.number, dirname, self.writer.tables
        )
        assert self.target is not None or not rendered.images
        for name, image in rendered.images:
            path = self.target.parent / name
            atomic_write_bytes(path, png_bytes(image))
            self.written.append(path)
        separator = self.writer.page_separator.format(number=result.page.number)
        return "\n\n".join(part for part in (separator, rendered.text) if part)


class MarkdownWriter(StringWriter):
    suffix = ".md"
    document_class = MarkdownDocument

    def __init__(self, page_separator: str = PAGE_SEPARATOR, tables: TableStyle = "markdown") -> None:
        """``page_separator`` goes before each page (``{number}`` is the page number; empty for none)."""
        check_page_separator(page_separator)
        self.page_separator = page_separator
        self.tables = tables
