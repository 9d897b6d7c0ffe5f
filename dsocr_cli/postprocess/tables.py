"""Model table HTML -> a pipe table when nothing is lost, or tab-separated text.

DeepSeek-OCR writes every table as HTML. A pipe table cannot hold spans, nested tables or line breaks inside a cell,
so such tables stay HTML, sanitised (``postprocess.sanitize``: the model's HTML never reaches an output as-is).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import NamedTuple

from dsocr_cli.lazy import lazy_module
from dsocr_cli.postprocess.sanitize import CELL_TAGS, TableSanitizer, feed, sanitize_markdown

markdownify = lazy_module("markdownify")

_LINE_BREAK_TAGS = frozenset({"br", "p", "div", "li", "ul", "ol"})
_TABLE_EDGE = re.compile(r"<table\b[^>]*>|</table\s*>", re.IGNORECASE)


class Segment(NamedTuple):
    """A run of text, or one whole table (outer tags included)."""

    text: str
    is_table: bool


def split_tables(text: str) -> list[Segment]:
    """Text and tables in order; a table left open by a cut-off page runs to the end of the text."""
    segments: list[Segment] = []
    depth = 0
    start = 0
    for edge in _TABLE_EDGE.finditer(text):
        if not edge.group().startswith("</"):
            if depth == 0:
                if edge.start() > start:
                    segments.append(Segment(text[start : edge.start()], False))
                start = edge.start()
            depth += 1
        elif depth:
            depth -= 1
            if depth == 0:
                segments.append(Segment(text[start : edge.end()], True))
                start = edge.end()
    if start < len(text):
        segments.append(Segment(text[start:], depth > 0))
    return segments


def table_to_markdown(table_html: str) -> str | None:
    """A pipe table (first row as header, ``|`` escaped), or None when a pipe table would lose something.

    Its cells are Markdown text, so they are sanitised as such (``sanitize_markdown``): markdownify turns the
    sanitiser's ``&lt;`` back into ``<``."""
    reader = _read(table_html)
    rows = reader.rows
    if reader.lossy or not rows or not rows[0] or any(len(row) != len(rows[0]) for row in rows):
        return None
    # Sanitised tags never contain "|", so every "|" is cell text; markdownify leaves the backslash alone.
    escaped = reader.sanitised_html().replace("|", "\\|")
    table = markdownify.markdownify(escaped, table_infer_header=True, escape_asterisks=False, escape_underscores=False)
    return sanitize_markdown(table.strip())


def table_to_text(table_html: str) -> str:
    """One line per row, cells separated by tabs; spanned cells leave empty columns so columns stay aligned."""
    taken: set[tuple[int, int]] = set()
    lines = []
    for r, row in enumerate(_read(table_html).rows):
        values: dict[int, str] = {}
        column = 0
        for cell in row:
            while (r, column) in taken:
                column += 1
            values[column] = cell.text
            taken.update((r + dr, column + dc) for dr in range(cell.rowspan) for dc in range(cell.colspan))
            column += cell.colspan
        width = max((c + 1 for (rr, c) in taken if rr == r), default=0)
        lines.append("\t".join(values.get(c, "") for c in range(width)))
    return "\n".join(lines)


@dataclass
class _Cell:
    rowspan: int = 1
    colspan: int = 1
    parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join("".join(self.parts).split())


class _TableReader(TableSanitizer):
    """Reads one table while sanitising it: the outer table's rows and cells, and whether a pipe table would
    lose anything (spans, nested tables, line breaks or text outside cells)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[_Cell]] = []
        self.lossy = False
        self._cell: _Cell | None = None

    def other_tag(self, tag: str) -> None:
        if tag in _LINE_BREAK_TAGS and self._cell is not None:
            self.lossy = True
            self._cell.parts.append(" ")

    def opened(self, tag: str, spans: dict[str, int]) -> None:
        tables = self.open.count("table")
        if tag == "table" and tables > 1:
            self.lossy = True
        if tables != 1:
            return
        if tag == "tr" or (tag in CELL_TAGS and not self.rows):
            self.rows.append([])
        if tag in CELL_TAGS:
            self._cell = _Cell(spans.get("rowspan", 1), spans.get("colspan", 1))
            self.rows[-1].append(self._cell)
            self.lossy = self.lossy or bool(spans)

    def closed(self, tag: str) -> None:
        if tag in CELL_TAGS and self.open.count("table") == 1:
            self._cell = None

    def text(self, data: str) -> None:
        if self._cell is not None:
            self._cell.parts.append(data)
            self.lossy = self.lossy or "\\|" in data
        elif data.strip():
            self.lossy = True  # text outside any cell has no place in a pipe table


def _read(table_html: str) -> _TableReader:
    reader = _TableReader()
    feed(reader, table_html)
    return reader
