"""Raw: the model's text verbatim (grounding tags included), pages split the way the official PDF script does."""

from __future__ import annotations

from dsocr_cli.results import PageResult
from dsocr_cli.writers.base import FormatDocument, StringWriter

PAGE_SPLIT = "\n<--- Page Split --->\n"


class RawDocument(FormatDocument):
    joiner = PAGE_SPLIT

    def page(self, result: PageResult, index: int) -> str:
        return result.text


class RawWriter(StringWriter):
    suffix = "_det.mmd"
    document_class = RawDocument
