"""Tell a file's type from its first bytes, because extensions lie (a scan saved as ``.pdf`` that is a PNG).

When the content is not something dsocr reads, the error says what it looks like, so the user knows
whether to export the document to PDF, unzip it, or fix a download that saved an HTML error page.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Literal

from dsocr_cli.errors import InputError

ImageFormat = Literal["png", "jpeg", "tiff", "gif", "webp", "bmp"]
FileType = Literal["pdf", ImageFormat]

SUPPORTED_EXTENSIONS = frozenset({".pdf", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".webp", ".bmp"})
"""What a directory walk picks up when no ``--glob`` is given; the file's content still decides its type.

Defined here (and re-exported by ``discover``) because ``discover`` sniffs streams, so it imports this module."""

HEAD_SIZE = 1024
"""Bytes to read for sniffing: PDF readers accept ``%PDF-`` anywhere in the first kilobyte."""

_IMAGE_MAGIC: tuple[tuple[bytes, ImageFormat], ...] = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"),  # BigTIFF
    (b"MM\x00+", "tiff"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
)

_BMP_INFO_HEADER_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})
"""Valid DIB header sizes: checked because ``BM`` alone also starts ordinary text."""

_LOOKALIKES: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a ZIP archive or Office document (docx/xlsx/pptx/odt)"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a legacy Office document (doc/xls/ppt)"),
    (b"AT&TFORM", "a DjVu document"),
    (b"%!PS", "PostScript"),
    (b"{\\rtf", "an RTF document"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "a JPEG 2000 image"),
    (b"8BPS", "a Photoshop document"),
    (b"\x1f\x8b", "gzip-compressed data"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
)


def sniff(head: bytes, name: str) -> FileType:
    """The type of a file whose first bytes are ``head``; ``name`` only words the error.

    Raises InputError for an empty file or a type dsocr does not read.
    """
    if not head:
        raise InputError(f"{name}: empty file (0 bytes)")
    if b"%PDF-" in head[:HEAD_SIZE]:
        return "pdf"
    for magic, image_format in _IMAGE_MAGIC:
        if head.startswith(magic):
            return image_format
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:2] == b"BM" and int.from_bytes(head[14:18], "little") in _BMP_INFO_HEADER_SIZES:
        return "bmp"
    looks = f"looks like {_describe(head)}"
    suffix = PurePath(name).suffix
    if suffix.lower() in SUPPORTED_EXTENSIONS:
        looks += f" despite the {suffix} extension"
    raise InputError(f"{name}: unsupported file type ({looks})")


def _describe(head: bytes) -> str:
    """What unsupported content most likely is, from its magic bytes or its text."""
    for magic, what in _LOOKALIKES:
        if head.startswith(magic):
            return what
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1"):
            return "a HEIC/HEIF image"
        if brand in (b"avif", b"avis"):
            return "an AVIF image"
        return "an MP4/QuickTime video"
    text = _as_text(head)
    if text is None:
        return "binary data of an unknown format"
    start = text.lstrip().lower()
    if start.startswith(("<!doctype html", "<html")):
        return "an HTML page"
    if start.startswith("<svg") or (start.startswith("<?xml") and "<svg" in start):
        return "an SVG image"
    if start.startswith("<?xml"):
        return "an XML document"
    return "plain text"


def _as_text(head: bytes) -> str | None:
    """``head`` decoded as UTF-8, tolerating a character cut off at the end; None for binary data."""
    if b"\x00" in head:
        return None
    for cut in range(4):
        try:
            return head[: len(head) - cut].decode("utf-8-sig")
        except UnicodeDecodeError:
            continue
    return None
