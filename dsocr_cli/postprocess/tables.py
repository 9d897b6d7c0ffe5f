"""Model table HTML -> a pipe table when nothing is lost, sanitised HTML, or tab-separated text.

DeepSeek-OCR writes every table as HTML. A pipe table cannot hold spans, nested tables or line breaks inside a cell,
so such tables stay HTML. The model's HTML is never put into an HTML document as-is: sanitising keeps only table tags
and their spans, and escapes everything else.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import NamedTuple

from markdownify import markdownify

_TABLE_TAGS = frozenset({"table", "thead", "tbody", "tr", "td", "th"})
_CELL_TAGS = frozenset({"td", "th"})
_SPAN_ATTRS = ("rowspan", "colspan")
_MAX_SPAN = 100
"""Spans above this are garbage from runaway generation; capping keeps the text grid small."""
_LINE_BREAK_TAGS = frozenset({"br", "p", "div", "li", "ul", "ol"})
_TABLE_EDGE = re.compile(r"<table\b[^>]*>|</table\s*>", re.IGNORECASE)
_CUT_TAG = re.compile(r"<[^>]*$")


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
    """A pipe table (first row as header, ``|`` escaped), or None when a pipe table would lose something."""
    reader = _read(table_html)
    rows = reader.rows
    if reader.lossy or not rows or not rows[0] or any(len(row) != len(rows[0]) for row in rows):
        return None
    # Sanitised tags never contain "|", so every "|" is cell text; markdownify leaves the backslash alone.
    escaped = reader.sanitised_html().replace("|", "\\|")
    return markdownify(escaped, table_infer_header=True, escape_asterisks=False, escape_underscores=False).strip()


def repair_table(table_html: str) -> str:
    """The model's table HTML verbatim, with the closing tags a cut-off page never wrote appended."""
    trimmed = _CUT_TAG.sub("", table_html)
    return trimmed + "".join(f"</{tag}>" for tag in reversed(_read(trimmed).open))


def sanitize_table(table_html: str) -> str:
    """Only table/thead/tbody/tr/td/th with numeric rowspan/colspan survive; all text is escaped; tags balanced."""
    return _read(table_html).sanitised_html()


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


class _TableReader(HTMLParser):
    """Reads one table: the outer table's rows and cells, whether a pipe table would lose anything, a sanitised copy."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[list[_Cell]] = []
        self.open: list[str] = []
        self.lossy = False
        self._out: list[str] = []
        self._cell: _Cell | None = None

    def sanitised_html(self) -> str:
        return "".join(self._out) + "".join(f"</{tag}>" for tag in reversed(self.open))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _LINE_BREAK_TAGS and self._cell is not None:
            self.lossy = True
            self._cell.parts.append(" ")
        if tag not in _TABLE_TAGS:
            return
        if tag in _CELL_TAGS:
            self._close_implied(_CELL_TAGS)
        elif tag == "tr":
            self._close_implied(_CELL_TAGS | {"tr"})
        elif tag == "table" and "table" in self.open:
            self.lossy = True
        spans = {name: _span(value) for name, value in attrs if name in _SPAN_ATTRS}
        spans = {name: value for name, value in spans.items() if value > 1}
        self.open.append(tag)
        self._out.append(f"<{tag}" + "".join(f' {name}="{value}"' for name, value in spans.items()) + ">")
        if self.open.count("table") != 1:
            return
        if tag == "tr" or (tag in _CELL_TAGS and not self.rows):
            self.rows.append([])
        if tag in _CELL_TAGS:
            self._cell = _Cell(spans.get("rowspan", 1), spans.get("colspan", 1))
            self.rows[-1].append(self._cell)
            self.lossy = self.lossy or bool(spans)

    def handle_endtag(self, tag: str) -> None:
        if tag in _TABLE_TAGS and tag in self.open:
            self._pop_to(len(self.open) - 1 - self.open[::-1].index(tag))

    def handle_data(self, data: str) -> None:
        self._out.append(html.escape(data, quote=False))
        if self._cell is not None:
            self._cell.parts.append(data)
            self.lossy = self.lossy or "\\|" in data
        elif data.strip():
            self.lossy = True  # text outside any cell has no place in a pipe table

    def _close_implied(self, tags: frozenset[str]) -> None:
        """Close an unclosed cell or row of the innermost table, as a browser would."""
        start = len(self.open) - self.open[::-1].index("table") if "table" in self.open else 0
        for index in range(start, len(self.open)):
            if self.open[index] in tags:
                self._pop_to(index)
                return

    def _pop_to(self, index: int) -> None:
        while len(self.open) > index:
            tag = self.open.pop()
            self._out.append(f"</{tag}>")
            if tag in _CELL_TAGS and self.open.count("table") == 1:
                self._cell = None


def _read(table_html: str) -> _TableReader:
    reader = _TableReader()
    reader.feed(_CUT_TAG.sub("", table_html))
    reader.close()
    return reader


def _span(value: str | None) -> int:
    text = (value or "").strip()
    return min(_MAX_SPAN, int(text)) if text.isdigit() else 1

