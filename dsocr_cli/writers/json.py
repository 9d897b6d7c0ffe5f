"""JSON: one document with every page's facts, blocks and boxes, for programs rather than people."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from dsocr_cli.postprocess.grounding import box_to_pixels, parse_blocks
from dsocr_cli.postprocess.markdown import TableStyle, clean_text, page_markdown
from dsocr_cli.results import PageResult
from dsocr_cli.writers.base import StringWriter


class JsonWriter(StringWriter):
    suffix = ".json"

    def __init__(self, tables: TableStyle = "markdown") -> None:
        """``tables`` shapes each page's ``text`` (Markdown without figure links); block text keeps table HTML."""
        self.tables = tables

    def render(self, source: str, results: Sequence[PageResult]) -> str:
        document = {"source": source, "pages": [self._page(result) for result in results]}
        return json.dumps(document, ensure_ascii=False, indent=2) + "\n"

    def _page(self, result: PageResult) -> dict[str, Any]:
        image = result.page.image
        blocks = parse_blocks(result.text)
        return {
            "number": result.page.number,
            "width": image.width,
            "height": image.height,
            "mode": result.mode,
            "prompt": result.prompt,
            "vision_tokens": result.vision_tokens,
            "generated_tokens": result.generated_tokens,
            "finished": result.finished,
            "retried": result.retried,
            "seconds": round(result.seconds, 3),
            "blocks": [
                {
                    "label": block.label,
                    "text": clean_text(block.text),
                    "box_999": [list(box) for box in block.boxes],
                    "box_px": [list(box_to_pixels(box, image.width, image.height)) for box in block.boxes],
                }
                for block in blocks
            ],
            "text": page_markdown(blocks, image, result.page.number, None, self.tables).text,
        }
