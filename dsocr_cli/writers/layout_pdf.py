"""Layout PDF: every page image with the model's boxes drawn on it, to check at a glance what the model saw."""

from __future__ import annotations

import io
import zlib
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from dsocr_cli.errors import OutputError
from dsocr_cli.lazy import lazy_module
from dsocr_cli.postprocess.grounding import Block, box_to_pixels, parse_blocks
from dsocr_cli.results import PageResult
from dsocr_cli.writers.atomic import commit_temp, make_dir, temp_path
from dsocr_cli.writers.base import DocumentWriter, Provenance, Writer

pymupdf = lazy_module("pymupdf")

_PALETTE = [
    (230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 160, 160), (240, 50, 230), (128, 128, 0), (170, 110, 40), (0, 0, 128),
]
_FILL_ALPHA = 20
"""The official overlay's fill opacity (of 255): the page stays readable under the boxes."""
_JPEG_QUALITY = 95


def label_color(label: str) -> tuple[int, int, int]:
    """The same colour for a label on every page and in every run."""
    return _PALETTE[zlib.crc32(label.encode("utf-8")) % len(_PALETTE)]


def draw_layout(image: Image.Image, blocks: Sequence[Block]) -> Image.Image:
    """A copy of the page with each box outlined (width 4 for titles, 2 otherwise), tinted and labelled."""
    page = image.convert("RGBA")
    overlay = Image.new("RGBA", page.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    font_size = max(12, page.height // 80)
    font = ImageFont.load_default(size=font_size)
    for block in blocks:
        label = block.label or "text"
        color = label_color(label)
        for box in block.boxes:
            x1, y1, x2, y2 = box_to_pixels(box, page.width, page.height)
            width = 4 if label == "title" else 2
            draw.rectangle((x1, y1, x2, y2), fill=(*color, _FILL_ALPHA), outline=(*color, 255), width=width)
            draw.text((x1, max(0, y1 - font_size - 2)), label, fill=(*color, 255), font=font)
    return Image.alpha_composite(page, overlay).convert("RGB")


class LayoutPdfDocument(DocumentWriter):
    """Pages are drawn as they arrive and appended to a temporary PDF beside the target with an incremental save,
    so neither page images nor the growing PDF are held in memory; ``finish`` renames it into place."""

    def __init__(self, source: str, target: Path | None, provenance: Provenance | None) -> None:
        if target is None:
            raise OutputError("--layout-pdf writes a file; give -o")
        super().__init__(source, target, provenance)
        self._temp = temp_path(target)
        self._pages = 0

    def add(self, result: PageResult) -> None:
        drawn = draw_layout(result.page.image, parse_blocks(result.text))
        buffer = io.BytesIO()
        drawn.save(buffer, format="JPEG", quality=_JPEG_QUALITY)
        try:
            if self._pages == 0:
                make_dir(self._temp.parent)
                document = pymupdf.open()
            else:
                document = pymupdf.open(self._temp)
            try:
                pdf_page = document.new_page(width=drawn.width, height=drawn.height)
                pdf_page.insert_image(pdf_page.rect, stream=buffer.getvalue())
                if self._pages == 0:
                    document.save(self._temp, deflate=True)
                else:
                    document.saveIncr()
            finally:
                document.close()
        except OSError as exc:
            self._temp.unlink(missing_ok=True)
            raise OutputError(f"cannot write {self.target}: {exc.strerror or exc}") from exc
        except RuntimeError as exc:
            self._temp.unlink(missing_ok=True)
            raise OutputError(f"cannot write {self.target}: {exc}") from exc
        self._pages += 1

    def finish(self) -> list[Path]:
        """One PDF page per page image, one PDF point per pixel."""
        assert self.target is not None
        if not self._pages:
            raise OutputError(f"cannot write {self.target}: no pages to draw")
        commit_temp(self._temp, self.target)
        return [self.target]

    def discard(self) -> None:
        self._temp.unlink(missing_ok=True)
        super().discard()


class LayoutPdfWriter(Writer):
    suffix = "_layouts.pdf"

    def open(self, source: str, target: Path | None, provenance: Provenance | None = None) -> LayoutPdfDocument:
        return LayoutPdfDocument(source, target, provenance)
