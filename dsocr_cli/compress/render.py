"""Text -> page images, and born-digital PDF pages -> (image, text layer) pairs: the lab's ground truth.

Rendering rules (``render_text``):

- The page is ``Layout.page_size`` points with ``Layout.margin`` points on every side; lines are
  ``font_size * line_spacing`` points apart, the first baseline one ascender below the top margin, and a page
  takes as many lines as fit with the last one's descenders above the bottom margin.
- Pages are filled in reading order: top to bottom, left to right. Paragraphs are separated by blank lines
  and reflowed (a line break inside one is a space), with one empty line between paragraphs; with
  ``Layout.keep_lines`` every input line starts a new line instead (verse, code, pre-wrapped text). An empty
  line at the top of a page is dropped. A paragraph wraps greedily at spaces (a run of spaces is one space); a CJK (or other wide) character is a unit of its own, so CJK text
  wraps between any two characters; a word wider than the line is broken between characters. Tabs are spaces.
- Each character is drawn in ``Layout.font`` when that font has a glyph for it, else in the fallback font
  (``FALLBACK_FONT``, MuPDF's built-in Droid Sans Fallback: CJK, Cyrillic, Greek...); characters neither has
  are counted (``RenderedText.missing_glyphs``) and drawn as the fallback's empty box.
- Each page's ground truth is the input text from the first to the last character drawn on it, exactly as it
  stands in the input (line breaks inside a page kept); so the pages' texts put back together are the input,
  up to the whitespace where one page ends and the next begins.
- Pixels: the page drawn by MuPDF at ``Layout.dpi`` (``width_pt * dpi / 72`` px, rounded up to whole pixels as MuPDF does),
  RGB, white background: the size the model's preprocessing receives.

Fonts: ``Layout.font`` is a MuPDF built-in name (``BUILTIN_FONTS``: Base-14 families and ``cjk``), all shipped
inside PyMuPDF, or the path of a TrueType/OpenType file. PyMuPDF is imported when rendering.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsocr_cli import defaults
from dsocr_cli.errors import InputError, UsageError

if TYPE_CHECKING:
    from PIL import Image

POINTS_PER_INCH = 72.0
MM_PER_INCH = 25.4
PAGE_SIZES: dict[str, tuple[float, float]] = {
    "a4": (595.28, 841.89),
    "a5": (419.53, 595.28),
    "letter": (612.0, 792.0),
    "legal": (612.0, 1008.0),
}
"""Named page sizes in points (ISO 216 A4/A5 at 1/72 in; US Letter and Legal)."""
BUILTIN_FONTS = ("tiro", "tibo", "tiit", "tibi", "helv", "hebo", "heit", "hebi", "cour", "cobo", "coit", "cobi", "cjk")
"""MuPDF's built-in fonts (Times, Helvetica, Courier in regular/bold/italic/bold-italic; Droid Sans Fallback)."""
FALLBACK_FONT = "cjk"
SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*[xX×]\s*(\d+(?:\.\d+)?)\s*(pt|mm|in)?\s*$")
UNITS = {"pt": 1.0, "mm": POINTS_PER_INCH / MM_PER_INCH, "in": POINTS_PER_INCH}
UNIT_PATTERN = re.compile(r"\s+|[^\s]")


@dataclass(frozen=True)
class Layout:
    """How text is laid out and rasterised (defaults: ``dsocr_cli.defaults.COMPRESS_*``)."""

    page_size: tuple[float, float] = PAGE_SIZES["a4"]
    """(width, height) in points."""
    font: str = defaults.COMPRESS_FONT
    font_size: float = defaults.COMPRESS_FONT_SIZE
    margin: float = defaults.COMPRESS_MARGIN
    line_spacing: float = defaults.COMPRESS_LINE_SPACING
    dpi: int = defaults.DPI
    keep_lines: bool = False
    """Every input line starts a new line (verse, code); else blank lines separate paragraphs, which are reflowed."""

    def check(self) -> None:
        """``UsageError`` when the page cannot hold a line (margins too wide, font too large)."""
        width, height = self.page_size
        if self.font_size <= 0:
            raise UsageError(f"--font-size {self.font_size:g}: expected a positive size in points")
        if self.margin < 0:
            raise UsageError(f"--margin {self.margin:g}: expected 0 or more points")
        if width - 2 * self.margin < self.font_size or height - 2 * self.margin < self.font_size * self.line_spacing:
            raise UsageError(
                f"a {width:g} x {height:g} pt page with {self.margin:g} pt margins has no room for {self.font_size:g} "
                "pt text: use a larger --page-size, smaller --margin or --font-size"
            )


def parse_page_size(text: str) -> tuple[float, float]:
    """``--page-size``: a name (A4, A5, letter, legal; any case) or ``WxH`` in points, or with ``mm`` / ``in``
    (``210x297mm``, ``8.5x11in``)."""
    named = PAGE_SIZES.get(text.strip().lower())
    if named is not None:
        return named
    match = SIZE.match(text)
    if match is None:
        raise UsageError(
            f"--page-size {text!r}: expected {', '.join(PAGE_SIZES)} or WxH in points (612x792), mm (210x297mm) or in"
        )
    scale = UNITS[match[3] or "pt"]
    width, height = float(match[1]) * scale, float(match[2]) * scale
    if width <= 0 or height <= 0:
        raise UsageError(f"--page-size {text!r}: width and height must be positive")
    return width, height


@dataclass
class SourcePage:
    """One page of the lab: its image, the text that is on it, and where it came from."""

    source: str
    """The input as the user named it."""
    number: int
    """1-based page number within ``source``."""
    image: Image.Image
    text: str
    """The ground truth: the input text drawn on this page, or the PDF page's text layer."""


@dataclass
class RenderedText:
    """What ``render_text`` made of one input."""

    pages: list[SourcePage]
    missing_glyphs: int = 0
    """Characters neither the font nor the fallback has a glyph for (drawn as boxes)."""


def load_font(spec: str) -> Any:
    """A ``pymupdf.Font`` from a built-in name or a font file; ``UsageError`` naming the problem otherwise."""
    import pymupdf

    if spec in BUILTIN_FONTS:
        return pymupdf.Font(spec)
    path = Path(spec).expanduser()
    if not path.is_file():
        raise UsageError(f"--font {spec!r}: neither a built-in font ({', '.join(BUILTIN_FONTS)}) nor a font file")
    try:
        return pymupdf.Font(fontfile=str(path))
    except Exception as exc:  # MuPDF raises its own error types for unreadable fonts
        raise UsageError(f"--font {spec}: not a font MuPDF can read ({exc})") from None


def is_wide(char: str) -> bool:
    """A character that breaks like CJK: East Asian wide or fullwidth (a line may end after any of them)."""
    return unicodedata.east_asian_width(char) in ("W", "F")


@dataclass
class _Unit:
    """A piece of a paragraph: a word, a run of spaces, or one wide character, with its offsets in the input."""

    start: int
    end: int
    space: bool


def units(text: str, offset: int) -> Iterator[_Unit]:
    """Words, space runs and wide characters of one paragraph, in order (``offset``: where it starts)."""
    word_start: int | None = None
    for match in UNIT_PATTERN.finditer(text):
        piece, start = match.group(), match.start()
        if piece.isspace() or is_wide(piece):
            if word_start is not None:
                yield _Unit(offset + word_start, offset + start, False)
                word_start = None
            yield _Unit(offset + start, offset + match.end(), piece.isspace())
        elif word_start is None:
            word_start = start
    if word_start is not None:
        yield _Unit(offset + word_start, offset + len(text), False)


class _Typesetter:
    """Widths and drawing of text in the chosen font with per-character fallback."""

    def __init__(self, layout: Layout) -> None:
        self.font = load_font(layout.font)
        self.fallback = load_font(FALLBACK_FONT)
        self.size = layout.font_size
        self.choice: dict[str, tuple[Any, bool]] = {}
        self.missing = 0

    def font_for(self, char: str) -> tuple[Any, bool]:
        """(font, has a glyph) for ``char``."""
        known = self.choice.get(char)
        if known is None:
            if self.font.has_glyph(ord(char)):
                known = (self.font, True)
            else:
                known = (self.fallback, bool(self.fallback.has_glyph(ord(char))))
            self.choice[char] = known
        return known

    def runs(self, text: str) -> list[tuple[str, Any]]:
        """``text`` cut into runs of one font each."""
        runs: list[tuple[str, Any]] = []
        for char in text:
            font, _ = self.font_for(char)
            if runs and runs[-1][1] is font:
                runs[-1] = (runs[-1][0] + char, font)
            else:
                runs.append((char, font))
        return runs

    def width(self, text: str) -> float:
        return sum(font.text_length(run, fontsize=self.size) for run, font in self.runs(text))


@dataclass
class _Line:
    """One laid-out line: (x, text start, text end) of each piece drawn on it."""

    pieces: list[tuple[float, int, int]]


PARAGRAPH_BREAK = re.compile(r"\n[ ]*\n\s*")
"""A blank line (and any whitespace after it) ends a paragraph when lines are reflowed."""


def paragraphs(text: str, keep_lines: bool) -> Iterator[tuple[int, int, bool]]:
    """(start, end, followed by a blank line) of each paragraph: every input line with ``keep_lines``, else the
    blocks between blank lines (their single line breaks are spaces)."""
    if keep_lines:
        offset = 0
        for line in text.split("\n"):
            yield offset, offset + len(line), False
            offset += len(line) + 1
        return
    offset = 0
    for match in PARAGRAPH_BREAK.finditer(text):
        yield offset, match.start(), True
        offset = match.end()
    yield offset, len(text), False


def lay_out(text: str, setter: _Typesetter, line_width: float, keep_lines: bool = False) -> list[_Line]:
    """Every line of ``text`` wrapped to ``line_width`` points, in reading order."""
    lines: list[_Line] = []
    for start, end, blank_after in paragraphs(text, keep_lines):
        paragraph = text[start:end]
        offset = start
        line = _Line([])
        x = 0.0
        pending_space = 0.0
        for unit in units(paragraph, offset):
            piece = text[unit.start : unit.end]
            if unit.space:
                pending_space = setter.width(" ") if line.pieces else 0.0
                continue
            width = setter.width(piece)
            if line.pieces and x + pending_space + width > line_width:
                lines.append(line)
                line, x, pending_space = _Line([]), 0.0, 0.0
            if not line.pieces and width > line_width:  # a word longer than the line: break between characters
                for index in range(unit.start, unit.end):
                    char_width = setter.width(text[index])
                    if line.pieces and x + char_width > line_width:
                        lines.append(line)
                        line, x = _Line([]), 0.0
                    line.pieces.append((x, index, index + 1))
                    x += char_width
                pending_space = 0.0
                continue
            x += pending_space
            line.pieces.append((x, unit.start, unit.end))
            x += width
            pending_space = 0.0
        lines.append(line)
        if blank_after:
            lines.append(_Line([]))
    return lines


def render_text(text: str, source: str, layout: Layout) -> RenderedText:
    """``text`` laid out on pages (the module's rules) and rendered at ``layout.dpi``; empty text, no pages."""
    import pymupdf
    from PIL import Image

    layout.check()
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
    setter = _Typesetter(layout)
    width, height = layout.page_size
    line_width = width - 2 * layout.margin
    pitch = layout.font_size * layout.line_spacing
    extent = (setter.font.ascender - setter.font.descender) * layout.font_size  # one line's ink, top to bottom
    per_page = max(1, int((height - 2 * layout.margin - extent) // pitch) + 1)
    pages_lines: list[list[_Line]] = [[]]
    for line in lay_out(text, setter, line_width, layout.keep_lines):
        if not line.pieces and not pages_lines[-1]:
            continue  # an empty line at the top of a page
        if len(pages_lines[-1]) == per_page:
            pages_lines.append([])
            if not line.pieces:
                continue
        pages_lines[-1].append(line)
    while pages_lines and not any(line.pieces for line in pages_lines[-1]):
        pages_lines.pop()
    document = pymupdf.open()
    pages: list[SourcePage] = []
    try:
        for number, lines in enumerate(pages_lines, start=1):
            page = document.new_page(width=width, height=height)
            writer = pymupdf.TextWriter(page.rect)
            baseline = layout.margin + setter.font.ascender * layout.font_size
            first = last = None
            for row, line in enumerate(lines):
                y = baseline + row * pitch
                for x, start, end in line.pieces:
                    first = start if first is None else first
                    last = end
                    position = layout.margin + x
                    for run, font in setter.runs(text[start:end]):
                        writer.append((position, y), run, font=font, fontsize=layout.font_size)
                        position += font.text_length(run, fontsize=layout.font_size)
            writer.write_text(page)
            pixmap = page.get_pixmap(dpi=layout.dpi, alpha=False, colorspace=pymupdf.csRGB)
            image = Image.frombytes("RGB", (pixmap.width, pixmap.height), pixmap.samples)
            pages.append(SourcePage(source, number, image, text[first:last] if first is not None else ""))
    finally:
        document.close()
    missing = sum(1 for char in set(text) if not char.isspace() and not setter.font_for(char)[1])
    return RenderedText(pages, missing_glyphs=missing)


def read_text(path: Path, name: str) -> str:
    """A UTF-8 text file, or stdin for ``-`` (a BOM is dropped); ``InputError`` naming the file otherwise."""
    try:
        data = sys.stdin.buffer.read() if name == "-" else path.read_bytes()
    except OSError as exc:
        raise InputError(f"{name}: cannot read ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{name}: not UTF-8 text (byte {exc.start})") from None


def pdf_pages(path: Path, name: str, dpi: int, max_pixels: int) -> list[SourcePage]:
    """Every page of a born-digital PDF with text on it: the page rendered at ``dpi`` and its text layer
    (``Page.get_text``: MuPDF's reading order, one line per text line). Pages without text are left out
    (nothing to compare with); a PDF with no text at all, an encrypted or corrupt one is an ``InputError``."""
    import math

    import pymupdf
    from PIL import Image

    if not path.is_file():
        raise InputError(f"{name}: cannot read ({'not a file' if path.exists() else 'no such file'})")
    try:
        document = pymupdf.open(str(path), filetype="pdf")
    except Exception:  # MuPDF's errors for files it cannot parse
        raise InputError(f"{name}: corrupt PDF, cannot be opened") from None
    try:
        if document.needs_pass:
            raise InputError(f"{name}: encrypted PDF (--from-pdf takes unencrypted PDFs)")
        pages: list[SourcePage] = []
        for page in document:
            text = page.get_text("text").strip()
            if not text:
                continue
            zoom = dpi / POINTS_PER_INCH
            if page.rect.width * zoom * page.rect.height * zoom > max_pixels:
                zoom = math.sqrt(max_pixels / (page.rect.width * page.rect.height))
            pixmap = page.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), alpha=False, colorspace=pymupdf.csRGB)
            image = Image.frombytes("RGB", (pixmap.width, pixmap.height), pixmap.samples)
            pages.append(SourcePage(name, page.number + 1, image, text))
    finally:
        document.close()
    if not pages:
        raise InputError(f"{name}: no page has a text layer (--from-pdf needs born-digital PDFs)")
    return pages
