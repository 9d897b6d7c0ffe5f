"""Image files as RGB pages: upright (EXIF), flattened onto white, sizes checked before decoding.

The size check reads only the header, so a hostile or mistaken 20000x20000 file fails at once
instead of allocating gigabytes.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

from PIL import (
    BmpImagePlugin,
    GifImagePlugin,
    Image,
    ImageFile,
    ImageOps,
    JpegImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
    WebPImagePlugin,
)

from dsocr_cli.errors import InputError
from dsocr_cli.inputs.discover import InputSource
from dsocr_cli.inputs.sniff import ImageFormat
from dsocr_cli.lazy import lazy_module

np = lazy_module("numpy")

MAX_PIXELS = 100_000_000
"""Largest image accepted (100 MP): above a 600 dpi A3 scan, far below what would exhaust memory."""
MIN_SIDE = 2
"""Smaller images carry no text, and the preprocessing cannot resize them meaningfully."""

_PLUGINS: dict[ImageFormat, type[ImageFile.ImageFile]] = {
    "png": PngImagePlugin.PngImageFile,
    "jpeg": JpegImagePlugin.JpegImageFile,
    "tiff": TiffImagePlugin.TiffImageFile,
    "gif": GifImagePlugin.GifImageFile,
    "webp": WebPImagePlugin.WebPImageFile,
    "bmp": BmpImagePlugin.BmpImageFile,
}
"""The sniffed format picks the decoder. Calling it directly (not ``Image.open``) reads the header
without Pillow's own bomb check, so our check can name the real size; Pillow's checks still run while
decoding and are turned into the same error."""

_DECODE_ERRORS = (OSError, SyntaxError, ValueError, IndexError, TypeError, struct.error, EOFError)
"""What Pillow's decoders raise for damaged or truncated data."""


class ImageReader:
    """An image file with its size checked; ``render`` decodes one page on demand.

    A multi-page TIFF has one page per frame; GIF and WebP animations contribute their first frame only.
    """

    def __init__(
        self, source: InputSource, image_format: ImageFormat, *, max_pixels: int = MAX_PIXELS
    ) -> None:
        """Read the header(s) now, so a corrupt, too large or too small image fails before decoding."""
        self._source = source
        self._max_pixels = max_pixels
        self._label = image_format.upper()
        self.warnings: list[str] = []  # nothing an image decoder does warrants one today (see PageReader)
        self._stream: BinaryIO = source.open()
        try:
            self._image = self._open_header(image_format)
            self.page_count: int = self._image.n_frames if image_format == "tiff" else 1
            for index in range(self.page_count):
                self._seek(index)
                self._check_size(self._image.size)
        except BaseException:
            self._stream.close()
            raise

    def _open_header(self, image_format: ImageFormat) -> ImageFile.ImageFile:
        try:
            return _PLUGINS[image_format](self._stream)
        except Image.DecompressionBombError as exc:
            raise self._too_large(None) from exc
        except _DECODE_ERRORS as exc:
            # Pillow's header errors read like internals ("unpack_from requires a buffer..."): not shown.
            raise self._source.fail(f"corrupt {self._label} image, cannot be opened") from exc

    def _seek(self, index: int) -> None:
        try:
            self._image.seek(index)
        except _DECODE_ERRORS as exc:
            cause = f"page {index + 1}: corrupt {self._label} image, cannot be opened"
            raise self._source.fail(cause) from exc

    def _check_size(self, size: tuple[int, int]) -> None:
        width, height = size
        if width * height > self._max_pixels:
            raise self._too_large(size)
        if width < MIN_SIDE or height < MIN_SIDE:
            raise self._source.fail(f"image too small: {width}x{height} pixels")

    def _too_large(self, size: tuple[int, int] | None) -> InputError:
        """The size error; without a size (Pillow refused the header), Pillow's own limit is what bit."""
        limit = self._max_pixels
        if size is None:
            if Image.MAX_IMAGE_PIXELS is not None:
                limit = min(limit, 2 * Image.MAX_IMAGE_PIXELS)
            return self._source.fail(f"image too large (limit {limit / 1e6:g} MP)")
        return self._source.fail(f"image too large: {size[0]}x{size[1]} pixels (limit {limit / 1e6:g} MP)")

    def render(self, number: int) -> Image.Image:
        """Page ``number`` (1-based) decoded, turned upright and converted to RGB."""
        self._seek(number - 1)
        try:
            return _to_rgb(ImageOps.exif_transpose(self._image))
        except Image.DecompressionBombError as exc:
            raise self._too_large(self._image.size) from exc
        except _DECODE_ERRORS as exc:
            where = f"page {number}: " if self.page_count > 1 else ""
            cause = f"corrupt or truncated {self._label} image ({_reason(exc)})"
            raise self._source.fail(where + cause) from exc

    def close(self) -> None:
        self._image.close()
        self._stream.close()


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB with transparency composited on white, as viewers show it, and 16-bit depth scaled, not clipped."""
    if image.mode.startswith("I"):
        # Pillow's convert() clips 16-bit values at 255, which turns a 16-bit scan white.
        scaled = (np.clip(np.asarray(image), 0, 65535) >> 8).astype(np.uint8)
        return Image.fromarray(scaled).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _reason(exc: BaseException) -> str:
    """Pillow's message on one line, or the exception's name when it has none."""
    return " ".join(str(exc).split()) or type(exc).__name__
