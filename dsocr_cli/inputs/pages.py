"""Page selection (``--pages 1-3,7,10-``) and ``open_document``: one input source -> its pages, lazily.

``open_document`` raises every error it can know without rendering (unsupported, corrupt, encrypted,
empty, too large, pages out of range), so a batch can report them before spending model time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, Protocol

from PIL import Image

from dsocr_cli.errors import InputError, UsageError
from dsocr_cli.inputs.discover import InputSource
from dsocr_cli.inputs.images import MAX_PIXELS, ImageReader
from dsocr_cli.inputs.pdf import DEFAULT_DPI, PdfReader
from dsocr_cli.inputs.sniff import HEAD_SIZE, sniff
from dsocr_cli.inputs.text_layer import TextLayer
from dsocr_cli.results import Page

_RANGE = re.compile(r"(?P<first>\d*)(?P<dash>-?)(?P<last>\d*)")


@dataclass(frozen=True)
class PageRange:
    """Pages ``first`` to ``last`` (1-based, inclusive); ``last`` None runs to the end of the document."""

    first: int
    last: int | None
    text: str
    """The range as the user wrote it, for error messages."""


@dataclass(frozen=True)
class PageSelection:
    """The pages the user asked for, checked against each document's page count once it is known."""

    ranges: tuple[PageRange, ...]

    def resolve(self, page_count: int, source_name: str) -> list[int]:
        """The selected page numbers in document order, each once.

        A page beyond ``page_count`` is an error rather than silently skipped: the user asked for it.
        """
        numbers: set[int] = set()
        for page_range in self.ranges:
            last = page_range.last if page_range.last is not None else max(page_range.first, page_count)
            if last > page_count:
                noun = "page" if page_range.text.isdigit() else "page range"
                has = f"document has {page_count} page" + ("" if page_count == 1 else "s")
                raise InputError(f"{source_name}: {noun} {page_range.text} out of bounds ({has})")
            numbers.update(range(page_range.first, last + 1))
        return sorted(numbers)


def parse_page_ranges(spec: str) -> PageSelection:
    """Parse ``--pages``: comma-separated ``N``, ``A-B``, ``A-`` (to the end) and ``-B`` (from page 1)."""
    ranges: list[PageRange] = []
    for text in "".join(spec.split()).split(","):
        match = _RANGE.fullmatch(text)
        if not text or text == "-" or match is None:
            raise UsageError(f"--pages: invalid page range {text!r} (expected e.g. 1-3,7,10-)")
        first = int(match["first"]) if match["first"] else 1
        last = None if match["dash"] and not match["last"] else int(match["last"] or match["first"])
        if first == 0 or last == 0:
            raise UsageError(f"--pages: invalid page range {text!r} (pages are numbered from 1)")
        if last is not None and last < first:
            raise UsageError(f"--pages: invalid page range {text!r} ({first} comes after {last})")
        ranges.append(PageRange(first, last, text))
    return PageSelection(tuple(ranges))


class PageReader(Protocol):
    """What a file-type reader offers: a page count known at open time, pages rendered on demand, and
    one-line warnings naming the file (which ``render`` may add to)."""

    page_count: int
    warnings: list[str]

    def render(self, number: int) -> Image.Image: ...

    def close(self) -> None: ...


@dataclass
class Document:
    """An opened input with its pages chosen; use it as a context manager so the file is closed."""

    source: InputSource
    kind: Literal["pdf", "image"]
    page_numbers: list[int]
    _reader: PageReader = field(repr=False)

    @property
    def stem(self) -> str:
        return self.source.stem

    @property
    def warnings(self) -> list[str]:
        """One-line warnings naming the input, for an input that converts but not cleanly.

        Today: a damaged PDF that MuPDF repaired (``name: damaged PDF repaired by MuPDF; pages may be blank
        or missing``). Most are known once the document is open, but MuPDF repairs lazily, so rendering a
        page can add one: read this after ``pages()`` is exhausted (or both before and after) to see them
        all. Each warning appears once. The caller reports them and counts the run as partial (exit 2).
        """
        return list(self._reader.warnings)

    def pages(self) -> Iterator[Page]:
        """Render the selected pages one at a time, so only the current page image is held in memory."""
        for number in self.page_numbers:
            yield Page(source=self.source.name, number=number, image=self._reader.render(number))

    def text_layer(self, number: int) -> TextLayer | None:
        """Page ``number``'s own text layer (``inputs.text_layer``); None for images and unreadable layers."""
        read = getattr(self._reader, "text_layer", None)
        return read(number) if read is not None else None

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> Document:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def open_document(
    source: InputSource,
    *,
    dpi: int = DEFAULT_DPI,
    pages: PageSelection | None = None,
    password: str | None = None,
    max_pixels: int = MAX_PIXELS,
) -> Document:
    """Open ``source`` as a PDF or image, by content; raises InputError for anything wrong with it."""
    if source.error is not None:
        raise source.error
    file_type = sniff(source.head(HEAD_SIZE), source.name)
    reader: PageReader
    if file_type == "pdf":
        reader = PdfReader(source, dpi=dpi, max_pixels=max_pixels, password=password)
    else:
        reader = ImageReader(source, file_type, max_pixels=max_pixels)
    try:
        if pages is None:
            numbers = list(range(1, reader.page_count + 1))
        else:
            numbers = pages.resolve(reader.page_count, source.name)
    except BaseException:
        reader.close()
        raise
    kind: Literal["pdf", "image"] = "pdf" if file_type == "pdf" else "image"
    return Document(source=source, kind=kind, page_numbers=numbers, _reader=reader)
