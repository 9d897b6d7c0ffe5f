"""Model output made safe to render: the one policy behind the HTML and the Markdown outputs.

The model writes HTML (every table, and whatever else it makes of a page), and a page can make it write
anything, ``<script>`` included. Neither output passes model HTML on as it came:

* Tables (both outputs): only ``table``/``thead``/``tbody``/``tr``/``td``/``th`` survive, with numeric
  ``rowspan``/``colspan`` (capped at ``MAX_SPAN``); every other tag and attribute is dropped, the content of
  ``<script>``/``<style>`` too (code, not page text); text is kept, HTML-escaped; tags are balanced, so a
  table cut off mid-page is closed (``sanitize_table``). In Markdown the table also loses its blank lines
  (``markdown_table``): a blank line would end the HTML block and hand the rest to the Markdown parser.
* Text outside tables, HTML output: escaped entirely (``html.escape``).
* Text outside tables, Markdown output (``sanitize_markdown``): every ``<`` that a CommonMark renderer would
  read as the start of raw HTML (an open or closing tag, comment, processing instruction, declaration,
  CDATA section, or an HTML block such as ``<script`` or ``<div`` opening a line) or of an autolink is
  written as ``&lt;``, so it shows as the text it is, as in the HTML output. Any other ``<`` is left alone,
  so math such as ``\\(0<x<1\\)`` and prose such as ``a < b`` are unchanged. (Model text that does form a
  tag, ``\\(a<b>c\\)``, is escaped like any tag; inside a code span the escape shows as ``&lt;``.) Links,
  images and link reference definitions whose destination has a scheme other than http, https or mailto
  (``javascript:``, ``data:``, ``vbscript:``...) lose the destination: a link or image becomes its text,
  a definition its label. The scheme is read the way a renderer and a browser would: after backslash
  escapes and entities (``jav&#x61;script:``) are decoded and whitespace and control characters dropped,
  ignoring case. Both rules are applied until the text no longer changes, since undoing one construct
  can complete another.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

TABLE_TAGS = frozenset({"table", "thead", "tbody", "tr", "td", "th"})
CELL_TAGS = frozenset({"td", "th"})
SPAN_ATTRS = ("rowspan", "colspan")
MAX_SPAN = 100
"""Spans above this are garbage from runaway generation; capping keeps the text grid small."""
DROPPED_CONTENT = frozenset({"script", "style"})
"""Elements whose content is dropped along with their tags."""
SAFE_SCHEMES = frozenset({"http", "https", "mailto"})
"""URL schemes a Markdown link or image may keep; URLs without a scheme (relative paths) are kept too."""
MAX_LINK_TEXT = 1000
"""Characters searched back for the ``[`` of an unsafe link; past it only the destination is removed."""
CUT_TAG = re.compile(r"<[^>]*$")
"""A tag cut off by the end of the text (a page that hit the token limit)."""


class TableSanitizer(HTMLParser):
    """Writes one table's HTML out again under the table policy (module docstring): ``sanitised_html``.

    Subclasses that also read the table override the hooks ``opened``, ``closed``, ``text`` and
    ``other_tag``; ``open`` is the stack of table tags open at the time.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self._out: list[str] = []
        self._dropping: str | None = None

    def sanitised_html(self) -> str:
        return "".join(self._out) + "".join(f"</{tag}>" for tag in reversed(self.open))

    def opened(self, tag: str, spans: dict[str, int]) -> None:
        """A table tag was written (already on ``open``), with its kept spans."""

    def closed(self, tag: str) -> None:
        """A table tag was closed (already off ``open``)."""

    def text(self, data: str) -> None:
        """Text that was kept (unescaped)."""

    def other_tag(self, tag: str) -> None:
        """A start tag that was dropped."""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in DROPPED_CONTENT:
            self._dropping = tag
        if tag not in TABLE_TAGS:
            self.other_tag(tag)
            return
        if tag in CELL_TAGS:
            self._close_implied(CELL_TAGS)
        elif tag == "tr":
            self._close_implied(CELL_TAGS | {"tr"})
        spans = {name: span(value) for name, value in attrs if name in SPAN_ATTRS}
        spans = {name: value for name, value in spans.items() if value > 1}
        self.open.append(tag)
        self._out.append(f"<{tag}" + "".join(f' {name}="{value}"' for name, value in spans.items()) + ">")
        self.opened(tag, spans)

    def handle_endtag(self, tag: str) -> None:
        if tag == self._dropping:
            self._dropping = None
        if tag in TABLE_TAGS and tag in self.open:
            self._pop_to(len(self.open) - 1 - self.open[::-1].index(tag))

    def handle_data(self, data: str) -> None:
        if self._dropping is not None:
            return
        self._out.append(html.escape(data, quote=False))
        self.text(data)

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
            self.closed(tag)


def span(value: str | None) -> int:
    """A ``rowspan``/``colspan`` value as a number from 1 to ``MAX_SPAN`` (1 when it is not a number)."""
    text = (value or "").strip()
    return min(MAX_SPAN, int(text)) if text.isdigit() else 1


def feed(parser: TableSanitizer, table_html: str) -> TableSanitizer:
    """Run ``parser`` over a table, ignoring a tag the end of the text cut off."""
    parser.feed(CUT_TAG.sub("", table_html))
    parser.close()
    return parser


def sanitize_table(table_html: str) -> str:
    """Table HTML for an HTML document: only table tags with numeric spans, all text escaped, tags balanced."""
    return feed(TableSanitizer(), table_html).sanitised_html()


_BLANK_LINES = re.compile(r"\n[ \t]*(?:\n[ \t]*)+")


def markdown_table(table_html: str) -> str:
    """``sanitize_table`` for a Markdown document: also without blank lines, so it stays one HTML block."""
    return _BLANK_LINES.sub("\n", sanitize_table(table_html))


def escape_html(text: str) -> str:
    """Text outside tables for an HTML document: all of it escaped."""
    return html.escape(text)


# --- Markdown text ------------------------------------------------------------------------------------

_TAG_NAME = r"[A-Za-z][A-Za-z0-9-]*"
_ATTRIBUTE = r"""(?:\s+[A-Za-z_:][A-Za-z0-9_.:-]*(?:\s*=\s*(?:[^\s"'=<>`]+|'[^']*'|"[^"]*"))?)"""
_BLOCK_NAMES = (
    "address|article|aside|base|basefont|blockquote|body|caption|center|col|colgroup|dd|details|dialog|dir|"
    "div|dl|dt|fieldset|figcaption|figure|footer|form|frame|frameset|h[1-6]|head|header|hr|html|iframe|"
    "legend|li|link|main|menu|menuitem|nav|noframes|ol|optgroup|option|p|param|search|section|summary|"
    "table|tbody|td|tfoot|th|thead|title|tr|track|ul|script|pre|style|textarea"
)
_RAW_HTML = re.compile(
    "|".join(
        [
            rf"<{_TAG_NAME}{_ATTRIBUTE}*\s*/?>",  # open tag
            rf"</{_TAG_NAME}\s*>",  # closing tag
            r"<!",  # comment, declaration, CDATA (complete or not: each also opens an HTML block)
            r"<\?",  # processing instruction
            r"<[A-Za-z][A-Za-z0-9+.-]{1,31}:[^\s<>]*>",  # URI autolink
            r"<[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+>",  # email autolink
            # an HTML block opening a line (in a list item or quote too), complete tag or not
            rf"(?m:^(?:[ \t]*(?:>|[-+*]|\d{{1,9}}[.)]))*[ \t]*)</?(?:{_BLOCK_NAMES})(?=[\s>]|/>|$)",
        ]
    ),
    re.IGNORECASE,
)
_ASCII_PUNCTUATION = r"""[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]"""
_BACKSLASH_ESCAPE = re.compile(r"\\(" + _ASCII_PUNCTUATION + ")")
_INVISIBLE = re.compile(r"[\x00-\x20\x7f]+")
_SCHEME = re.compile(r"([a-z][a-z0-9+.-]*):")
_LINK_START = re.compile(r"\]\(|\]:")
_SPACE = re.compile(r"[ \t]*\n?[ \t]*")


def sanitize_markdown(text: str) -> str:
    """Model text for a Markdown document: raw HTML and autolinks escaped, unsafe links reduced to their
    text (module docstring)."""
    while True:
        cleaned = _RAW_HTML.sub(lambda match: match.group().replace("<", "&lt;"), _drop_unsafe_links(text))
        if cleaned == text:
            return text
        text = cleaned


def safe_url(destination: str) -> bool:
    """Whether a Markdown link destination, read as a renderer and then a browser would, keeps to
    ``SAFE_SCHEMES`` or has no scheme. Every order of decoding backslash escapes and entities is tried."""
    unescaped = _BACKSLASH_ESCAPE.sub(r"\1", destination)
    decoded = html.unescape(destination)
    readings = {destination, unescaped, decoded, html.unescape(unescaped), _BACKSLASH_ESCAPE.sub(r"\1", decoded)}
    for reading in readings:
        url = _INVISIBLE.sub("", reading).lower()
        scheme = _SCHEME.match(url)
        if scheme is not None and scheme.group(1) not in SAFE_SCHEMES:
            return False
    return True


def _drop_unsafe_links(text: str) -> str:
    """Links and images with an unsafe destination become their text; definitions their label."""
    pos = 0
    while True:
        start = _LINK_START.search(text, pos)
        if start is None:
            return text
        destination = _destination(text, start.end())
        if destination is None or safe_url(text[destination[0] : destination[1]]):
            pos = start.end()
            continue
        text, pos = _unlink(text, start.start(), start.group() == "](", destination)


def _destination(text: str, pos: int) -> tuple[int, int] | None:
    """Where the link destination after ``](`` or ``]:`` at ``pos`` lies (after spaces and one line break)."""
    start = _SPACE.match(text, pos).end()  # type: ignore[union-attr]  # matches the empty string
    if start < len(text) and text[start] == "<":
        end = start + 1
        while end < len(text) and text[end] not in "<>\n":
            end += 2 if text[end] == "\\" else 1
        return (start + 1, end) if end < len(text) and text[end] == ">" else None
    end, depth = start, 0
    while end < len(text) and ord(text[end]) > 0x20 and text[end] != "\x7f":
        char = text[end]
        if char == "\\":
            end += 2
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            if depth == 0:
                break
            depth -= 1
        end += 1
    end = min(end, len(text))
    return (start, end) if end > start else None


_LINK_TAIL = re.compile(r"""\s*(?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|\((?:[^()\\]|\\.)*\))?\s*\)""", re.DOTALL)
"""What follows an inline link's destination: an optional title, then the closing parenthesis."""


def _unlink(text: str, bracket: int, inline: bool, destination: tuple[int, int]) -> tuple[str, int]:
    """``text`` with the link whose ``]`` is at ``bracket`` reduced to its text (its ``!`` and brackets
    gone), or, when its ``[`` or closing ``)`` cannot be found, with the destination alone removed; and
    where the change begins."""
    opening = _opening_bracket(text, bracket)
    end = destination[1] + (1 if destination[1] < len(text) and text[destination[1]] == ">" else 0)
    start = destination[0] - (1 if text[destination[0] - 1] == "<" else 0)
    closing = _LINK_TAIL.match(text, end) if inline else None
    if opening is None or (inline and closing is None):
        return text[:start] + text[end:], start
    if closing is not None:
        end = closing.end()
    first = opening - 1 if opening > 0 and text[opening - 1] == "!" else opening
    return text[:first] + text[opening + 1 : bracket] + text[end:], first


def _opening_bracket(text: str, bracket: int) -> int | None:
    """The unescaped ``[`` that the ``]`` at ``bracket`` closes, counting nested brackets, within
    ``MAX_LINK_TEXT`` characters."""
    depth = 0
    for index in range(bracket - 1, max(-1, bracket - 1 - MAX_LINK_TEXT), -1):
        char = text[index]
        if char not in "[]":
            continue
        backslashes = index
        while backslashes > 0 and text[backslashes - 1] == "\\":
            backslashes -= 1
        if (index - backslashes) % 2:
            continue
        if char == "]":
            depth += 1
        elif depth == 0:
            return index
        else:
            depth -= 1
    return None
