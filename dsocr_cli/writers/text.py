"""Plain text: no markup at all, pages separated by a form feed like ``pdftotext``."""

from __future__ import annotations

from collections.abc import Sequence

from dsocr_cli.postprocess.grounding import parse_blocks
from dsocr_cli.postprocess.markdown import page_text
from dsocr_cli.results import PageResult
from dsocr_cli.writers.base import StringWriter

PAGE_BREAK = "\f"


class TextWriter(StringWriter):
    suffix = ".txt"

    def render(self, source: str, results: Sequence[PageResult]) -> str:
        return PAGE_BREAK.join(page_text(parse_blocks(result.text)) + "\n" for result in results)
