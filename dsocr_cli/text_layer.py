"""When a PDF page's own text layer can stand in for OCR: pure rules over per-page measurements.

``--text-layer`` (``TEXT_LAYER_MODES``):

- ``ocr`` (default): every page goes through the model, whatever text it carries.
- ``skip``: a page that has any text at all (``has_text``) is not sent to the model: its text layer is its
  result, and ``--format pdf`` leaves the page as it is (ocrmypdf's ``--skip-text``).
- ``use``: a page whose text layer is *usable* (``judge``) is not sent to the model; every other page is, and
  ``--format pdf`` gives the OCRed pages an invisible text layer (any earlier one is kept beneath it).

A text layer is usable unless one of these holds (the first that does is the reason given):

1. it has no characters (``no text layer``);
2. more than ``MAX_INVALID_SHARE`` of its characters are invalid glyphs: U+FFFD (a glyph MuPDF could not map to
   Unicode), private-use code points, control characters (``garbled text layer``);
3. images cover at least ``SCANNED_IMAGE_SHARE`` of the page and text covers less than ``MIN_IMAGE_TEXT_SHARE``
   of the images' area (``scanned page``): a scan whose text is in pixels, whatever little text sits beside it;
4. images cover at least ``MIN_IMAGE_SHARE`` of the page and the text is sparse, fewer than
   ``MIN_CHARS_PER_SQUARE_INCH`` characters per square inch of page (``little text beside images``).

A page without images keeps its text layer however short it is: there is nothing else for OCR to read.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Literal

TextLayerMode = Literal["ocr", "skip", "use"]
TEXT_LAYER_MODES: tuple[TextLayerMode, ...] = ("ocr", "skip", "use")

MAX_INVALID_SHARE = 0.1
SCANNED_IMAGE_SHARE = 0.5
MIN_IMAGE_TEXT_SHARE = 0.1
MIN_IMAGE_SHARE = 0.1
MIN_CHARS_PER_SQUARE_INCH = 0.5
POINTS_PER_INCH = 72.0


@dataclass(frozen=True)
class TextLayerStats:
    """What a page's text layer looks like (areas in square points)."""

    chars: int
    """Characters other than white space."""
    invalid: int
    """Of ``chars``, those that are invalid glyphs (``is_invalid``)."""
    page_area: float
    text_area: float
    """Area of the text spans' boxes, clipped to the page."""
    image_area: float
    """Area of the page that images cover (overlaps counted once, within rounding of a point)."""
    image_text_area: float
    """Area of text span boxes that lies over images."""

    @property
    def chars_per_square_inch(self) -> float:
        return self.chars / max(self.page_area / POINTS_PER_INCH**2, 1e-9)


@dataclass(frozen=True)
class Verdict:
    usable: bool
    reason: str
    """Why (one phrase, for ``-v`` and the JSON output)."""


def is_invalid(char: str) -> bool:
    """U+FFFD, private use, surrogates, unassigned code points and control characters are not text."""
    if char == "\ufffd":
        return True
    return unicodedata.category(char) in ("Co", "Cs", "Cn", "Cc")


def count_chars(text: str) -> tuple[int, int]:
    """(characters other than white space, of those the invalid ones) in ``text``."""
    chars = invalid = 0
    for char in text:
        if char.isspace():
            continue
        chars += 1
        invalid += is_invalid(char)
    return chars, invalid


def has_text(stats: TextLayerStats) -> bool:
    """``--text-layer skip``'s test: any character at all."""
    return stats.chars > 0


def judge(stats: TextLayerStats) -> Verdict:
    """Whether the text layer is usable as the page's result (the module docstring's rules, in order)."""
    if stats.chars == 0:
        return Verdict(False, "no text layer")
    invalid_share = stats.invalid / stats.chars
    if invalid_share > MAX_INVALID_SHARE:
        return Verdict(False, f"garbled text layer ({invalid_share:.0%} invalid glyphs)")
    page_area = max(stats.page_area, 1e-9)
    image_share = min(stats.image_area / page_area, 1.0)
    if image_share >= SCANNED_IMAGE_SHARE:
        covered = stats.image_text_area / max(stats.image_area, 1e-9)
        if covered < MIN_IMAGE_TEXT_SHARE:
            return Verdict(False, f"scanned page (images cover {image_share:.0%}, text {covered:.0%} of them)")
    if image_share >= MIN_IMAGE_SHARE and stats.chars_per_square_inch < MIN_CHARS_PER_SQUARE_INCH:
        return Verdict(False, f"little text beside images ({stats.chars} characters)")
    return Verdict(True, f"text layer of {stats.chars} characters")


def takes_text_layer(mode: TextLayerMode, stats: TextLayerStats | None) -> bool:
    """Whether a page with these measurements (None: not a PDF page) skips the model under ``mode``."""
    if mode == "ocr" or stats is None:
        return False
    if mode == "skip":
        return has_text(stats)
    return judge(stats).usable
