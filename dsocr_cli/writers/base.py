"""The interface every output format shares: one whole document (its page results, in page order) in, files out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from dsocr_cli.results import PageResult
from dsocr_cli.writers.atomic import atomic_write_text


class Writer(ABC):
    """Writes one document to ``target`` (and any files beside it), each file atomically."""

    suffix: ClassVar[str]
    """Appended to the input's stem to name the output file (``report.pdf`` -> ``report`` + suffix)."""

    @abstractmethod
    def write(self, source: str, results: Sequence[PageResult], target: Path) -> list[Path]:
        """Write the document; return every path written, the main file last."""


class StringWriter(Writer):
    """A format whose whole output is one string, so it can also go to stdout."""

    @abstractmethod
    def render(self, source: str, results: Sequence[PageResult]) -> str:
        """The document as text; ``source`` is the input as the user named it."""

    def write(self, source: str, results: Sequence[PageResult], target: Path) -> list[Path]:
        atomic_write_text(target, self.render(source, results))
        return [target]
