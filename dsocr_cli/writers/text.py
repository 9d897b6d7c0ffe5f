"""Plain text: no markup at all, pages separated by a form feed like ``pdftotext``."""

from __future__ import annotations

from dsocr_cli.postprocess.grounding import parse_blocks
from dsocr_cli.postprocess.markdown import page_text
from dsocr_cli.results import PageResult
from dsocr_cli.writers.base import FormatDocument, StringWriter

PAGE_BREAK = "\f"


class TextDocument(FormatDocument):
    joiner = PAGE_BREAK

    def page(self, result: PageResult, index: int) -> str:
        return page_text(parse_blocks(result.text)) + "\n"


class TextWriter(StringWriter):
    suffix = ".txt"
    document_class = TextDocument
