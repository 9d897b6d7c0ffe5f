"""Searchable PDF (``--format pdf``): the original pages with an invisible text layer where the model read them.

- A PDF input keeps its page objects: its content streams, images and fonts are copied byte for byte (its
  encryption, if any, is not kept); each OCRed page gets one more content stream, drawn after the original
  ones inside ``q``/``Q`` so that nothing the original leaves in the graphics state moves it, holding the text
  in render mode 3 (invisible: searchable and selectable, never seen). With ``--pages`` the output has the
  selected pages only, in document order.
- An image input becomes one page per image (per frame of a TIFF) holding the decoded image losslessly (PNG),
  sized from the image's own resolution (its dpi metadata, else ``--dpi``).
- Each grounding box gets one text block fitted to it: the block's lines (plain text, as ``--format text``
  writes them) share the box's height equally, each stretched (``Tz``) to the box's width, in the model's
  reading order. Output without boxes (a prompt without grounding) is one block over the whole page, its lines
  from the top, as tall as lets the longest fill the page's width.
- A page whose result came from its own text layer (``--text-layer skip|use``) is left untouched.
- The text uses a font without glyphs (``GlyphLessFont``, as Tesseract's PDF renderer does): a Type 0 font with
  Identity-H encoding whose two-byte codes are the characters' Unicode values (the Basic Multilingual Plane;
  characters beyond it are left out) and whose ToUnicode map is the identity, every glyph half an em wide. No
  font program is embedded, which is why ``--format pdf`` makes no PDF/A: PDF/A requires embedded fonts, and
  PyMuPDF has no PDF/A conversion (ocrmypdf uses Ghostscript for that).
- The document information's ``producer`` names dsocr (and, with provenance, the model and its revision).
"""

from __future__ import annotations

import io
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from dsocr_cli import __version__
from dsocr_cli.defaults import DPI
from dsocr_cli.errors import OutputError
from dsocr_cli.inputs.discover import InputSource
from dsocr_cli.lazy import lazy_module
from dsocr_cli.postprocess.grounding import COORD_MAX, parse_blocks
from dsocr_cli.postprocess.markdown import page_text
from dsocr_cli.results import PageResult
from dsocr_cli.writers.atomic import commit_temp, make_dir, temp_path
from dsocr_cli.writers.base import DocumentWriter, Provenance, Writer

pymupdf = lazy_module("pymupdf")

FONT_NAME = "FDsocrGlyphLess"
"""The text layer's font resource name on each page."""
_ASCENT, _DESCENT, _WIDTH = 0.8, 0.2, 0.5
"""The font's ascent and descent (of the font size) and every glyph's advance (of an em)."""
_MIN_FONT_SIZE = 0.5
WHOLE_PAGE = (0.0, 0.0, 1.0, 1.0)
"""The box of text the model gave without one."""


@dataclass(frozen=True)
class Original:
    """The input a searchable PDF is made from: a PDF whose pages are kept, or an image (``kind``)."""

    source: InputSource
    kind: str
    password: str | None = None


TextBlock = tuple[tuple[float, float, float, float], list[str]]
"""A box in 0..1 fractions of the displayed page (x0, y0, x1, y1) and the lines of text to fit in it."""


def text_blocks(raw: str) -> list[TextBlock]:
    """The model's output as boxes with lines, in reading order; output without boxes is one whole-page block."""
    blocks = parse_blocks(raw)
    found: list[TextBlock] = []
    loose: list[str] = []
    for block in blocks:
        lines = [" ".join(line.split()) for line in page_text([block]).splitlines() if line.strip()]
        if not lines:
            continue
        if not block.boxes:
            loose += lines
            continue
        groups = _split(lines, len(block.boxes))
        for box, group in zip(block.boxes, groups, strict=False):
            if group:
                found.append((tuple(c / COORD_MAX for c in box), group))  # type: ignore[misc]
    if loose:
        found.append((WHOLE_PAGE, loose))
    return found


def _split(lines: list[str], parts: int) -> list[list[str]]:
    """``lines`` in ``parts`` consecutive groups as even as can be (all in the first when there are fewer lines)."""
    if parts <= 1 or len(lines) < parts:
        return [lines]
    size, extra = divmod(len(lines), parts)
    groups, start = [], 0
    for index in range(parts):
        end = start + size + (1 if index < extra else 0)
        groups.append(lines[start:end])
        start = end
    return groups


def _encode(text: str) -> str:
    """Two-byte Identity-H codes = the characters' Unicode values (BMP only, no control characters)."""
    return "".join(f"{ord(char):04X}" for char in text if 0x20 <= ord(char) <= 0xFFFF and not 0xD800 <= ord(char) <= 0xDFFF)


def text_layer_stream(page: pymupdf.Page, blocks: list[TextBlock]) -> bytes:
    """The content stream drawing ``blocks`` invisibly on ``page`` (boxes are fractions of the displayed page)."""
    to_pdf = page.derotation_matrix * ~page.transformation_matrix  # displayed page -> PDF user space
    width, height = page.rect.width, page.rect.height
    ops = ["BT", "3 Tr"]
    for (fx0, fy0, fx1, fy1), lines in blocks:
        box = pymupdf.Rect(fx0 * width, fy0 * height, fx1 * width, fy1 * height)
        line_height = box.height / len(lines)
        if (fx0, fy0, fx1, fy1) == WHOLE_PAGE:  # no box to fit: lines as tall as the longest fills the width
            longest = max(len(_encode(line)) // 4 for line in lines) or 1
            line_height = min(line_height, box.width / (longest * _WIDTH) * (_ASCENT + _DESCENT))
        size = max(line_height / (_ASCENT + _DESCENT), _MIN_FONT_SIZE)
        for index, line in enumerate(lines):
            codes = _encode(line)
            if not codes:
                continue
            count = len(codes) // 4
            stretch = box.width * 100 / (count * size * _WIDTH)
            baseline = box.y0 + (index + 1) * line_height - _DESCENT * size
            matrix = pymupdf.Matrix(1, 0, 0, -1, box.x0, baseline) * to_pdf
            ops.append(f"/{FONT_NAME} {size:.3f} Tf {stretch:.3f} Tz")
            ops.append(" ".join(f"{value:.4f}" for value in matrix) + " Tm")
            ops.append(f"<{codes}> Tj")
    ops.append("ET")
    return ("\n".join(ops) + "\n").encode("ascii")


def _to_unicode_cmap() -> bytes:
    ranges = [f"<{high:02X}00> <{high:02X}FF> <{high:02X}00>" for high in range(256) if not 0xD8 <= high <= 0xDF]
    chunks = [ranges[start : start + 100] for start in range(0, len(ranges), 100)]
    body = "".join(f"{len(chunk)} beginbfrange\n" + "\n".join(chunk) + "\nendbfrange\n" for chunk in chunks)
    return (
        "/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n"
        "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n"
        "/CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n"
        "1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n"
        f"{body}endcmap\nCMapName currentdict /CMap defineresource pop\nend\nend\n"
    ).encode("ascii")


def _new_object(doc: pymupdf.Document, text: str, stream: bytes | None = None) -> int:
    xref = doc.get_new_xref()
    doc.update_object(xref, text)
    if stream is not None:
        doc.update_stream(xref, stream, compress=True)
    return xref


def add_font(doc: pymupdf.Document) -> int:
    """The glyph-less font's objects in ``doc``; returns the Type 0 font's xref."""
    to_unicode = _new_object(doc, "<<>>", _to_unicode_cmap())
    descriptor = _new_object(
        doc,
        "<< /Type /FontDescriptor /FontName /GlyphLessFont /Flags 5 /FontBBox [0 -200 500 800] /ItalicAngle 0 "
        "/Ascent 800 /Descent -200 /CapHeight 800 /StemV 80 >>",
    )
    cid_font = _new_object(
        doc,
        "<< /Type /Font /Subtype /CIDFontType2 /BaseFont /GlyphLessFont "
        "/CIDSystemInfo << /Registry (Adobe) /Ordering (Identity) /Supplement 0 >> "
        f"/FontDescriptor {descriptor} 0 R /DW 500 /CIDToGIDMap /Identity >>",
    )
    return _new_object(
        doc,
        "<< /Type /Font /Subtype /Type0 /BaseFont /GlyphLessFont /Encoding /Identity-H "
        f"/DescendantFonts [{cid_font} 0 R] /ToUnicode {to_unicode} 0 R >>",
    )


def overlay(doc: pymupdf.Document, page: pymupdf.Page, blocks: list[TextBlock], font: int) -> None:
    """Add the invisible text of ``blocks`` to ``page``: its content streams stay as they are, wrapped in q/Q."""
    if not blocks:
        return
    kind, value = doc.xref_get_key(page.xref, "Contents")
    if kind == "xref":
        streams = [value]
    elif kind == "array":
        streams = [f"{part} 0 R" for part in value.strip("[] ").replace(" 0 R", "").split()]
    else:
        streams = []
    save = _new_object(doc, "<<>>", b"q\n")
    restore = _new_object(doc, "<<>>", b"Q\n")
    text = _new_object(doc, "<<>>", text_layer_stream(page, blocks))
    parts = [f"{save} 0 R", *streams, f"{restore} 0 R", f"{text} 0 R"]
    _add_font_resource(doc, page, font)
    doc.xref_set_key(page.xref, "Contents", "[" + " ".join(parts) + "]")


def _add_font_resource(doc: pymupdf.Document, page: pymupdf.Page, font: int) -> None:
    """Name ``font`` in the page's resources (those it inherits from the page tree are copied onto it first)."""
    kind, value = doc.xref_get_key(page.xref, "Resources")
    if kind == "null":
        inherited = _inherited(doc, page.xref, "Resources")
        doc.xref_set_key(page.xref, "Resources", inherited or "<<>>")
        kind, value = doc.xref_get_key(page.xref, "Resources")
    owner, prefix = page.xref, "Resources/"
    if kind == "xref":
        owner, prefix = int(value.split()[0]), ""
    font_kind, font_value = doc.xref_get_key(owner, prefix + "Font")
    if font_kind == "xref":
        doc.xref_set_key(int(font_value.split()[0]), FONT_NAME, f"{font} 0 R")
    else:
        doc.xref_set_key(owner, prefix + "Font/" + FONT_NAME, f"{font} 0 R")


def _inherited(doc: pymupdf.Document, xref: int, key: str) -> str | None:
    seen = set()
    while xref not in seen:
        seen.add(xref)
        kind, parent = doc.xref_get_key(xref, "Parent")
        if kind != "xref":
            return None
        xref = int(parent.split()[0])
        found_kind, found = doc.xref_get_key(xref, key)
        if found_kind != "null":
            return found
    return None


def producer(provenance: Provenance | None) -> str:
    """``dsocr 0.1.0`` (with provenance: ``dsocr 0.1.0 (deepseek-ai/DeepSeek-OCR@rev, PyMuPDF 1.28.2)``)."""
    version = (provenance or {}).get("dsocr", __version__)
    if not provenance:
        return f"dsocr {version}"
    model = str(provenance.get("model", ""))
    if provenance.get("revision"):
        model += f"@{provenance['revision']}"
    return f"dsocr {version} ({model}, PyMuPDF {pymupdf.VersionBind})"


_METADATA_KEYS = ("author", "title", "subject", "keywords", "creator", "producer", "creationDate", "modDate", "trapped")


def _metadata(doc: pymupdf.Document) -> dict[str, str]:
    """The document information ``set_metadata`` takes back (the original's, kept)."""
    return {key: value for key, value in (doc.metadata or {}).items() if key in _METADATA_KEYS and value}


class SearchablePdfDocument(DocumentWriter):
    """Image pages go into a temporary PDF beside the target as they arrive (saved incrementally); a PDF's text is
    spooled, one JSON line a page, and laid over its original pages by ``finish``."""

    def __init__(
        self, source: str, target: Path | None, provenance: Provenance | None, original: Original | None, dpi: int
    ) -> None:
        if target is None:
            raise OutputError("--format pdf writes a file; give -o DIR or -o FILE.pdf")
        if original is None:
            raise OutputError(f"{source}: --format pdf needs the input itself")
        super().__init__(source, target, provenance)
        self.original = original
        self.dpi = dpi
        self._temp = temp_path(target)
        self._pages = 0
        self._font_xref = 0
        self._spool: TextIO = tempfile.TemporaryFile(mode="w+", encoding="utf-8")

    def add(self, result: PageResult) -> None:
        blocks = text_blocks(result.text) if result.source == "ocr" else []
        if self.original.kind == "pdf":
            self._spool.write(json.dumps({"number": result.page.number, "blocks": blocks}) + "\n")
        else:
            self._add_image(result, blocks)
        self._pages += 1

    def _add_image(self, result: PageResult, blocks: list[TextBlock]) -> None:
        image = result.page.image
        dpi = image.info.get("dpi")
        x_dpi, y_dpi = (float(dpi[0]), float(dpi[1])) if dpi and dpi[0] and dpi[1] else (self.dpi, self.dpi)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        try:
            if self._pages == 0:
                make_dir(self._temp.parent)
                doc = pymupdf.open()
            else:
                doc = pymupdf.open(self._temp)
            try:
                page = doc.new_page(width=image.width * 72 / x_dpi, height=image.height * 72 / y_dpi)
                page.insert_image(page.rect, stream=buffer.getvalue())
                overlay(doc, page, blocks, self._font(doc))
                if self._pages == 0:
                    doc.save(self._temp, deflate=True)
                else:
                    doc.saveIncr()
            finally:
                doc.close()
        except (OSError, RuntimeError) as exc:
            self._temp.unlink(missing_ok=True)
            raise OutputError(f"cannot write {self.target}: {getattr(exc, 'strerror', None) or exc}") from exc

    def _font(self, doc: pymupdf.Document) -> int:
        """The font of an image document: made once, kept under its xref (incremental saves keep xrefs)."""
        if not self._font_xref:
            self._font_xref = add_font(doc)
        return self._font_xref

    def finish(self) -> list[Path]:
        assert self.target is not None
        if not self._pages:
            raise OutputError(f"cannot write {self.target}: no pages")
        try:
            if self.original.kind == "pdf":
                self._finish_pdf()
            else:
                doc = pymupdf.open(self._temp)
                try:
                    doc.set_metadata({**_metadata(doc), "producer": producer(self.provenance), "creator": "dsocr"})
                    doc.saveIncr()
                finally:
                    doc.close()
        except (OSError, RuntimeError, ValueError) as exc:
            self._temp.unlink(missing_ok=True)
            raise OutputError(f"cannot write {self.target}: {getattr(exc, 'strerror', None) or exc}") from exc
        finally:
            self._spool.close()
        commit_temp(self._temp, self.target)
        return [self.target]

    def _finish_pdf(self) -> None:
        source = self.original.source
        location = source.content_path
        doc = pymupdf.open(location, filetype="pdf") if location is not None else pymupdf.open(stream=source.data, filetype="pdf")
        try:
            if doc.needs_pass and not doc.authenticate(self.original.password or ""):
                raise OutputError(f"{source.name}: encrypted PDF, wrong password")
            self._spool.seek(0)
            records: list[dict[str, Any]] = [json.loads(line) for line in self._spool]
            numbers = [record["number"] for record in records]
            if numbers != list(range(1, doc.page_count + 1)):
                doc.select([number - 1 for number in numbers])
            font = add_font(doc) if any(record["blocks"] for record in records) else 0
            for index, record in enumerate(records):
                if record["blocks"]:
                    overlay(doc, doc[index], [(tuple(box), lines) for box, lines in record["blocks"]], font)
            doc.set_metadata({**_metadata(doc), "producer": producer(self.provenance)})
            make_dir(self._temp.parent)
            doc.save(self._temp, garbage=1)
        finally:
            doc.close()

    def discard(self) -> None:
        self._spool.close()
        self._temp.unlink(missing_ok=True)
        super().discard()


class SearchablePdfWriter(Writer):
    suffix = ".pdf"

    def __init__(self, dpi: int = DPI) -> None:
        """``dpi``: the resolution assumed for images that do not record theirs."""
        self.dpi = dpi

    def open(
        self, source: str, target: Path | None, provenance: Provenance | None = None, original: Original | None = None
    ) -> SearchablePdfDocument:
        return SearchablePdfDocument(source, target, provenance, original, self.dpi)
