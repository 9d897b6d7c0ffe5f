"""Writers: one module per output format, all sharing ``Writer`` (and ``StringWriter`` for stdout-capable ones)."""

from __future__ import annotations

from dsocr_cli.writers.base import Writer
from dsocr_cli.writers.hocr import HocrWriter
from dsocr_cli.writers.html import HtmlWriter
from dsocr_cli.writers.json import JsonWriter
from dsocr_cli.writers.layout_pdf import LayoutPdfWriter
from dsocr_cli.writers.markdown import MarkdownWriter
from dsocr_cli.writers.raw import RawWriter
from dsocr_cli.writers.searchable_pdf import SearchablePdfWriter
from dsocr_cli.writers.text import TextWriter

FORMATS: dict[str, type[Writer]] = {
    "markdown": MarkdownWriter,
    "html": HtmlWriter,
    "text": TextWriter,
    "json": JsonWriter,
    "raw": RawWriter,
    "pdf": SearchablePdfWriter,
    "hocr": HocrWriter,
    "layout_pdf": LayoutPdfWriter,
}
"""Format name -> writer class; every class can be built with no arguments."""
