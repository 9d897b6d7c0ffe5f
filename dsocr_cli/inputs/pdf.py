"""PDF pages as RGB images, rendered one at a time with PyMuPDF so a long document never sits in memory."""

from __future__ import annotations

import math

from PIL import Image

from dsocr_cli.defaults import DPI
from dsocr_cli.inputs.discover import InputSource
from dsocr_cli.inputs.text_layer import TextLayer, read_text_layer
from dsocr_cli.lazy import lazy_module

pymupdf = lazy_module("pymupdf")

DEFAULT_DPI = DPI
"""``dsocr_cli.defaults.DPI``, under the name ``dsocr_cli.inputs`` exports."""


def _mupdf_errors() -> tuple[type[BaseException], ...]:
    """What PyMuPDF raises for a damaged file: its own RuntimeErrors and the raw MuPDF exceptions."""
    return (RuntimeError, ValueError, pymupdf.mupdf.FzErrorBase)


REPAIRED_WARNING = "damaged PDF repaired by MuPDF; pages may be blank or missing"
"""The warning (after ``name: ``) for a PDF that opened only because MuPDF rebuilt its damaged structure."""


class PdfReader:
    """An opened, unlocked PDF with at least one page; ``render`` draws one page on demand.

    ``warnings`` lists one-line warnings naming the file. A damaged PDF that MuPDF repairs (a truncated
    download, a broken cross-reference table) opens with pages, but some may be blank or missing, so it
    is never a silent success: the repair warning is there from opening when MuPDF repaired the file
    while opening it, or is added by the ``render`` call during which MuPDF found the damage (it repairs
    lazily, when it first needs an object it cannot find). It is added once.
    """

    def __init__(
        self, source: InputSource, *, dpi: int, max_pixels: int, password: str | None = None
    ) -> None:
        """Open and unlock the PDF now, so a corrupt, encrypted or empty file fails before any rendering."""
        self._source = source
        self._dpi = dpi
        self._max_pixels = max_pixels
        self.warnings: list[str] = []
        location = source.content_path
        try:
            if location is not None:
                self._doc = pymupdf.open(location, filetype="pdf")
            else:
                self._doc = pymupdf.open(stream=source.data, filetype="pdf")
        except _mupdf_errors() as exc:
            raise source.fail("corrupt PDF, cannot be opened") from exc
        try:
            self._unlock(password)
            if self._doc.page_count == 0:
                # A truncated file that MuPDF had to repair can lose its whole page tree.
                if self._doc.is_repaired:
                    raise source.fail("corrupt PDF, no pages could be recovered")
                raise source.fail("PDF has no pages")
        except BaseException:
            self._doc.close()
            raise
        self.page_count: int = self._doc.page_count
        self._note_repair()

    def _note_repair(self) -> None:
        warning = f"{self._source.name}: {REPAIRED_WARNING}"
        if self._doc.is_repaired and warning not in self.warnings:
            self.warnings.append(warning)

    def _unlock(self, password: str | None) -> None:
        if not self._doc.needs_pass:
            return
        if password is None:
            raise self._source.fail("encrypted PDF, needs --password")
        if not self._doc.authenticate(password):
            raise self._source.fail("encrypted PDF, wrong password")

    def render(self, number: int) -> Image.Image:
        """Page ``number`` (1-based) at the reader's dpi, scaled down where it would exceed ``max_pixels``.

        Poster-sized pages would otherwise need gigabytes at 144 dpi, far beyond what the model can use.
        """
        try:
            page = self._doc.load_page(number - 1)
            width, height = page.rect.width, page.rect.height
            zoom = self._dpi / 72
            if width * zoom * height * zoom > self._max_pixels:
                scale = math.sqrt(self._max_pixels / (width * height))
                # Whole-pixel targets, so rounding cannot push the pixmap over the limit.
                target_width, target_height = math.floor(width * scale), math.floor(height * scale)
                matrix = pymupdf.Matrix(target_width / width, target_height / height)
            else:
                matrix = pymupdf.Matrix(zoom, zoom)
            pixmap = page.get_pixmap(matrix=matrix, alpha=False, colorspace=pymupdf.csRGB)
        except _mupdf_errors() as exc:
            reason = " ".join(str(exc.args[0]).split()) if exc.args else type(exc).__name__
            raise self._source.fail(f"page {number} cannot be rendered ({reason})") from exc
        finally:
            self._note_repair()
        return Image.frombytes("RGB", (pixmap.width, pixmap.height), pixmap.samples)

    def text_layer(self, number: int) -> TextLayer | None:
        """Page ``number``'s own text layer, measured and read (None when MuPDF cannot read it: then OCR it)."""
        try:
            return read_text_layer(self._doc.load_page(number - 1))
        except _mupdf_errors():
            return None
        finally:
            self._note_repair()

    def close(self) -> None:
        self._doc.close()
