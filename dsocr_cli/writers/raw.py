"""Raw: the model's text verbatim (grounding tags included), pages split the way the official PDF script does."""

from __future__ import annotations

from collections.abc import Sequence

from dsocr_cli.results import PageResult
from dsocr_cli.writers.base import StringWriter

PAGE_SPLIT = "\n<--- Page Split --->\n"


class RawWriter(StringWriter):
    suffix = "_det.mmd"

    def render(self, source: str, results: Sequence[PageResult]) -> str:
        return PAGE_SPLIT.join(result.text for result in results)
