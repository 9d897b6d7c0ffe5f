"""hOCR (``--format hocr``): the model's blocks with their boxes as XHTML, for tools that read OCR layouts.

Block-level only: the model gives one box per block, not per line or word, so each block is an ``ocr_carea``
holding one ``ocr_par`` holding one ``ocrx_block`` with the block's plain text (lines kept as ``<br/>``). Boxes
(``bbox x0 y0 x1 y1``) are in pixels of the page image the model saw (``ocr_page`` gives its size; a PDF page
rendered at ``--dpi``). Text without boxes (a prompt without grounding) is one block over the whole page.
"""

from __future__ import annotations

import html

from dsocr_cli.postprocess.grounding import box_to_pixels, parse_blocks
from dsocr_cli.postprocess.markdown import page_text
from dsocr_cli.results import PageResult
from dsocr_cli.writers.base import FormatDocument, StringWriter
from dsocr_cli.writers.provenance import items

CAPABILITIES = "ocr_page ocr_carea ocr_par ocrx_block"


class HocrDocument(FormatDocument):
    joiner = "\n"

    def head(self) -> str:
        meta = "".join(
            f'<meta name="ocr-system" content="dsocr {html.escape(str(self.provenance.get("dsocr", "")))}"/>\n'
            if key == "dsocr"
            else f'<meta name="dsocr:{key}" content="{html.escape(value)}"/>\n'
            for key, value in items(self.provenance or {})
        ) or '<meta name="ocr-system" content="dsocr"/>\n'
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" '
            '"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">\n'
            '<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">\n<head>\n'
            f"<title>{html.escape(self.source)}</title>\n"
            '<meta http-equiv="Content-Type" content="text/html;charset=utf-8"/>\n'
            f'{meta}<meta name="ocr-capabilities" content="{CAPABILITIES}"/>\n</head>\n<body>\n'
        )

    def tail(self) -> str:
        return "\n</body>\n</html>\n"

    def page(self, result: PageResult, index: int) -> str:
        image = result.page.image
        number = result.page.number
        title = f"image {html.escape(self.source, quote=True)}; bbox 0 0 {image.width} {image.height}; ppageno {number - 1}"
        parts = [f'<div class="ocr_page" id="page_{number}" title="{title}">']
        count = 0
        for block in parse_blocks(result.text):
            text = page_text([block]).strip()
            if not text:
                continue
            boxes = [box_to_pixels(box, image.width, image.height) for box in block.boxes] or [
                (0, 0, image.width, image.height)
            ]
            x0, y0 = min(box[0] for box in boxes), min(box[1] for box in boxes)
            x1, y1 = max(box[2] for box in boxes), max(box[3] for box in boxes)
            count += 1
            ident = f"{number}_{count}"
            bbox = f"bbox {x0} {y0} {x1} {y1}"
            body = "<br/>".join(html.escape(line) for line in text.splitlines())
            label = html.escape(block.label or "text", quote=True)
            parts.append(
                f' <div class="ocr_carea" id="block_{ident}" title="{bbox}">'
                f'<p class="ocr_par" id="par_{ident}" title="{bbox}">'
                f'<span class="ocrx_block" id="text_{ident}" title="{bbox}" data-label="{label}">{body}</span>'
                "</p></div>"
            )
        parts.append("</div>")
        return "\n".join(parts)


class HocrWriter(StringWriter):
    suffix = ".hocr"
    document_class = HocrDocument
