"""The interface every output format shares: a document is written page by page, so memory is bounded by a page.

``Writer.open`` starts one document; ``DocumentWriter.add`` takes each page result in page order and keeps
only what the format needs from it (its text, its figure crops written to disk at once), so the page
image can be dropped as soon as ``add`` returns; ``finish`` writes the document atomically (or returns
it for stdout); ``discard`` removes whatever ``add`` already wrote, for a document that failed later.
Text is spooled to an anonymous temporary file, not kept in memory: a 2,000-page document costs no
more RAM than a 20-page one.

``write``/``render`` convert a whole list of results in one call (tests, small documents).
"""

from __future__ import annotations

import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar, TextIO

from dsocr_cli.results import PageResult
from dsocr_cli.writers.atomic import atomic_writer

Provenance = dict[str, Any]
"""How an output was made (dsocr version, model, revision, device, dtype, quant, mode, dpi); see ``convert``."""


class DocumentWriter(ABC):
    """One document being written: ``add`` each page in order, then ``finish`` (or ``discard``)."""

    def __init__(self, source: str, target: Path | None, provenance: Provenance | None) -> None:
        self.source = source
        self.target = target
        self.provenance = provenance
        self.written: list[Path] = []
        """Files already on disk for this document (figure crops), removed again by ``discard``."""

    @abstractmethod
    def add(self, result: PageResult) -> None:
        """Take one page; the result's page image is not used after this returns."""

    @abstractmethod
    def finish(self) -> list[Path]:
        """Write the document to ``target``; return every path written, the main file last."""

    def discard(self) -> None:
        """Forget the document and remove the files ``add`` wrote."""
        for path in self.written:
            path.unlink(missing_ok=True)
        self.written = []


class Writer(ABC):
    """An output format: names its files and opens documents."""

    suffix: ClassVar[str]
    """Appended to the output's stem to name the file (``report.pdf`` -> ``report`` + suffix)."""

    @abstractmethod
    def open(self, source: str, target: Path | None, provenance: Provenance | None = None) -> DocumentWriter:
        """Start a document from ``source`` (the input as the user named it) for ``target`` (None: stdout)."""

    def write(
        self, source: str, results: Sequence[PageResult], target: Path, provenance: Provenance | None = None
    ) -> list[Path]:
        """Write a whole document at once; return every path written, the main file last."""
        document = self.open(source, target, provenance)
        try:
            for result in results:
                document.add(result)
            return document.finish()
        except BaseException:
            document.discard()
            raise


class TextDocument(DocumentWriter):
    """A document whose output is one text: a head, the pages joined by a separator, a tail.

    Subclasses say what each part is; pages are spooled to a temporary file as they arrive.
    """

    joiner: ClassVar[str] = ""

    def __init__(self, source: str, target: Path | None, provenance: Provenance | None) -> None:
        super().__init__(source, target, provenance)
        self._spool: TextIO = tempfile.TemporaryFile(mode="w+", encoding="utf-8", newline="")
        self._pages = 0

    def head(self) -> str:
        return ""

    def tail(self) -> str:
        return ""

    @abstractmethod
    def page(self, result: PageResult, index: int) -> str:
        """The text of one page (``index`` counts from 0 within this document)."""

    def add(self, result: PageResult) -> None:
        part = self.page(result, self._pages)
        if self._pages:
            self._spool.write(self.joiner)
        self._spool.write(part)
        self._pages += 1

    def chunks(self) -> Iterable[str]:
        """The whole document, piece by piece."""
        yield self.head()
        self._spool.flush()
        self._spool.seek(0)
        while chunk := self._spool.read(1 << 20):
            yield chunk
        yield self.tail()

    def text(self) -> str:
        """The whole document as one string (stdout)."""
        return "".join(self.chunks())

    def write_to(self, stream: TextIO) -> None:
        for chunk in self.chunks():
            stream.write(chunk)

    def finish(self) -> list[Path]:
        assert self.target is not None, "a stdout document is read with text() or write_to()"
        try:
            with atomic_writer(self.target) as handle:
                for chunk in self.chunks():
                    handle.write(chunk.encode("utf-8"))
        finally:
            self._spool.close()
        return [*self.written, self.target]

    def discard(self) -> None:
        self._spool.close()
        super().discard()


class StringWriter(Writer):
    """A format whose whole output is one text, so it can also go to stdout."""

    document_class: ClassVar[type[TextDocument]]

    def open(self, source: str, target: Path | None, provenance: Provenance | None = None) -> TextDocument:
        return self.document_class(source, target, provenance, self)  # type: ignore[call-arg]

    def render(self, source: str, results: Sequence[PageResult], provenance: Provenance | None = None) -> str:
        """The document as text for stdout; ``source`` is the input as the user named it."""
        document = self.open(source, None, provenance)
        try:
            for result in results:
                document.add(result)
            return document.text()
        finally:
            document.discard()


class FormatDocument(TextDocument):
    """A ``TextDocument`` that knows the ``StringWriter`` (its options) it came from."""

    def __init__(self, source: str, target: Path | None, provenance: Provenance | None, writer: Any) -> None:
        super().__init__(source, target, provenance)
        self.writer = writer
