"""Inputs: arguments -> sources -> documents -> RGB pages (PDFs via PyMuPDF, images via Pillow)."""

from dsocr_cli.inputs.discover import STDIN, SUPPORTED_EXTENSIONS, InputSource, close_sources, discover
from dsocr_cli.inputs.images import MAX_PIXELS
from dsocr_cli.inputs.pages import (
    Document,
    PageSelection,
    open_document,
    parse_page_ranges,
)
from dsocr_cli.inputs.pdf import DEFAULT_DPI
from dsocr_cli.inputs.sizes import format_size, parse_size
from dsocr_cli.inputs.sniff import sniff

__all__ = [
    "DEFAULT_DPI",
    "MAX_PIXELS",
    "STDIN",
    "SUPPORTED_EXTENSIONS",
    "Document",
    "InputSource",
    "PageSelection",
    "close_sources",
    "discover",
    "format_size",
    "open_document",
    "parse_page_ranges",
    "parse_size",
    "sniff",
]
