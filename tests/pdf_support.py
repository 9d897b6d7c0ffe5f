"""PDFs for the searchable-PDF and text-layer tests, made here with PyMuPDF: scans (image-only pages), born-digital
pages, mixed documents and a page whose text layer maps every glyph to garbage."""

from __future__ import annotations

import io
from pathlib import Path

import pymupdf

from dsocr_cli.testing.images import make_page_image

A4 = (595.0, 842.0)


def image_bytes(seed: int, size: tuple[int, int] = (620, 877), fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    make_page_image(*size, seed=seed).save(buffer, format=fmt)
    return buffer.getvalue()


def add_scanned_page(doc: pymupdf.Document, seed: int, size: tuple[float, float] = A4, fmt: str = "JPEG") -> None:
    """A page holding one full-page image and nothing else, as a scanner makes it."""
    page = doc.new_page(width=size[0], height=size[1])
    page.insert_image(page.rect, stream=image_bytes(seed, fmt=fmt))


def add_text_page(doc: pymupdf.Document, number: int, size: tuple[float, float] = A4) -> None:
    """A born-digital page: a heading and a paragraph of real text."""
    page = doc.new_page(width=size[0], height=size[1])
    page.insert_text((72, 90), f"Chapter {number}", fontsize=20)
    for line in range(12):
        page.insert_text((72, 130 + 16 * line), f"Line {line} of page {number}: the quick brown fox jumps", fontsize=11)


def make_scanned_pdf(path: Path, pages: int = 2, sizes: list[tuple[float, float]] | None = None) -> Path:
    doc = pymupdf.open()
    for index in range(pages):
        add_scanned_page(doc, seed=index, size=(sizes or [A4] * pages)[index])
    doc.save(str(path))
    doc.close()
    return path


def make_born_digital_pdf(path: Path, pages: int) -> Path:
    doc = pymupdf.open()
    for number in range(1, pages + 1):
        add_text_page(doc, number)
    doc.save(str(path))
    doc.close()
    return path


def make_mixed_pdf(path: Path, kinds: str) -> Path:
    """``kinds``: one letter a page, ``t`` born-digital text, ``s`` scanned image."""
    doc = pymupdf.open()
    for index, kind in enumerate(kinds, 1):
        if kind == "t":
            add_text_page(doc, index)
        else:
            add_scanned_page(doc, seed=index)
    doc.save(str(path))
    doc.close()
    return path


def make_garbled_pdf(path: Path) -> Path:
    """A scan with a text layer whose font maps every code to a private-use character (U+E000...): text is
    there, but nothing it says can be read, as with a broken ToUnicode map."""
    doc = pymupdf.open()
    add_scanned_page(doc, seed=7)
    page = doc[0]
    cmap = (
        "/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n"
        "/CMapName /Garbage def\n/CMapType 2 def\n1 begincodespacerange\n<00> <FF>\nendcodespacerange\n"
        "1 beginbfrange\n<00> <FF> <E000>\nendbfrange\nendcmap\nCMapName currentdict /CMap defineresource pop\nend\nend\n"
    )

    def new(text: str, stream: bytes | None = None) -> int:
        xref = doc.get_new_xref()
        doc.update_object(xref, text)
        if stream is not None:
            doc.update_stream(xref, stream)
        return xref

    to_unicode = new("<<>>", cmap.encode())
    font = new(f"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /ToUnicode {to_unicode} 0 R >>")
    lines = "".join(f"BT /FGarbage 11 Tf 72 {760 - 16 * i} Td (Some words that come out as garbage {i}) Tj ET\n" for i in range(30))
    content = new("<<>>", lines.encode())
    kind, value = doc.xref_get_key(page.xref, "Contents")
    streams = [value] if kind == "xref" else [f"{p} 0 R" for p in value.strip("[] ").replace(" 0 R", "").split()]
    doc.xref_set_key(page.xref, "Contents", "[" + " ".join([*streams, f"{content} 0 R"]) + "]")
    kind, value = doc.xref_get_key(page.xref, "Resources")
    if kind == "xref":
        doc.xref_set_key(int(value.split()[0]), "Font/FGarbage", f"{font} 0 R")
    else:
        doc.xref_set_key(page.xref, "Resources/Font/FGarbage", f"{font} 0 R")
    doc.save(str(path))
    doc.close()
    return path


def image_streams(path: Path) -> list[bytes]:
    """The raw (still encoded) bytes of every image in the PDF, page by page."""
    with pymupdf.open(path) as doc:
        return [doc.xref_stream_raw(image[0]) for page in doc for image in page.get_images(full=True)]


def content_streams(path: Path, number: int) -> list[bytes]:
    """Page ``number``'s content streams, decoded, in order."""
    with pymupdf.open(path) as doc:
        page = doc[number - 1]
        return [doc.xref_stream(xref) for xref in page.get_contents()]


def make_png(path: Path, size: tuple[int, int] = (800, 1000), dpi: int | None = None) -> Path:
    image = make_page_image(*size, seed=3)
    if dpi:
        image.save(path, dpi=(dpi, dpi))
    else:
        image.save(path)
    return path

