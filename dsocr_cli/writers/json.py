"""JSON: one document with every page's facts, blocks and boxes, for programs rather than people.

``{"source": ..., "dsocr": {provenance}, "pages": [...]}``; pages are serialised as they arrive.
"""

from __future__ import annotations

import json
from typing import Any

from dsocr_cli.postprocess.grounding import box_to_pixels, parse_blocks
from dsocr_cli.postprocess.markdown import TableStyle, clean_text, page_markdown
from dsocr_cli.results import PageResult
from dsocr_cli.writers.base import FormatDocument, StringWriter


def _indented(value: Any, indent: str) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2).replace("\n", "\n" + indent)


class JsonDocument(FormatDocument):
    joiner = ",\n"

    def head(self) -> str:
        head = '{\n  "source": ' + json.dumps(self.source, ensure_ascii=False) + ",\n"
        if self.provenance:
            head += '  "dsocr": ' + _indented(self.provenance, "  ") + ",\n"
        return head + '  "pages": [' + ("\n" if self._pages else "")

    def tail(self) -> str:
        return ("\n  " if self._pages else "") + "]\n}\n"

    def page(self, result: PageResult, index: int) -> str:
        image = result.page.image
        blocks = parse_blocks(result.text)
        data = {
            "number": result.page.number,
            "width": image.width,
            "height": image.height,
            "mode": result.mode,
            "prompt": result.prompt,
            "vision_tokens": result.vision_tokens,
            "generated_tokens": result.generated_tokens,
            "finished": result.finished,
            "looped": result.looped,
            "retried": result.retried,
            "seconds": round(result.seconds, 3),
            "source": result.source,
            "blocks": [
                {
                    "label": block.label,
                    "text": clean_text(block.text),
                    "box_999": [list(box) for box in block.boxes],
                    "box_px": [list(box_to_pixels(box, image.width, image.height)) for box in block.boxes],
                }
                for block in blocks
            ],
            "text": page_markdown(blocks, image, result.page.number, None, self.writer.tables).text,
        }
        return "    " + _indented(data, "    ")


class JsonWriter(StringWriter):
    suffix = ".json"
    document_class = JsonDocument

    def __init__(self, tables: TableStyle = "markdown") -> None:
        """``tables`` shapes each page's ``text`` (Markdown without figure links); block text keeps table HTML."""
        self.tables = tables
