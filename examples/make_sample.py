"""Generate ``examples/sample.pdf``, the one-page document the README's first command converts.

Run it from the repository root (PyMuPDF is already a dsocr dependency)::

    python examples/make_sample.py                  # rewrites examples/sample.pdf
    python examples/make_sample.py /tmp/out.pdf     # writes somewhere else

The page is born-digital: a title, two paragraphs, a table and a vector bar chart with its caption,
set in the fonts built into PyMuPDF (Helvetica and Times), so it builds offline. The output is
deterministic: the metadata dates are empty, the file ID is not regenerated and the save is
reproducible, so re-running the script gives the same bytes. ``tests/test_examples.py`` checks that
the committed file still renders to the same pixels as this script's output.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pymupdf

DEFAULT_OUTPUT = Path(__file__).with_name("sample.pdf")

TITLE = "Optical Character Recognition in Practice"
SUBTITLE = "Technical note 7  \u00b7  Document Processing Group  \u00b7  March 2024"

PARAGRAPHS = [
    "Optical character recognition (OCR) turns images of text into characters a computer can search, "
    "edit and index. Classic systems work in stages: they clean up the scanned page, find the text "
    "lines, cut them into glyphs and match each glyph against trained shapes. Such pipelines do well "
    "on clean, single-column print but lose the structure of a page: columns run together, "
    "tables become loose words and figures vanish.",
    "Vision-language models read the whole page at once. The page image is encoded into a few hundred "
    "vision tokens, and a language decoder writes the content back as structured text, including "
    "headings, reading order and tables. Table 1 compares character error rates on four kinds of "
    "documents, and Figure 1 shows how decoding precision falls as the page is compressed into fewer "
    "tokens.",
]

TABLE_CAPTION = "Table 1. Character error rate (CER) by document type, lower is better."
TABLE_HEADER = ["Document type", "Pages", "Classic OCR CER", "Model CER"]
TABLE_ROWS = [
    ["Born-digital report", "120", "0.8%", "0.3%"],
    ["Scanned letter", "85", "2.9%", "1.1%"],
    ["Historical newspaper", "64", "9.6%", "4.2%"],
    ["Receipt photo", "150", "7.3%", "2.8%"],
]

FIGURE_CAPTION = (
    "Figure 1. Decoding precision against compression ratio (text tokens per vision token). "
    "Precision stays near 97% up to 10\u00d7 and drops quickly beyond it."
)
BARS = [("5\u00d7", 98.5), ("10\u00d7", 96.8), ("12\u00d7", 90.1), ("15\u00d7", 83.4), ("20\u00d7", 59.1)]

# A4, in points.
WIDTH, HEIGHT = 595, 842
MARGIN = 64
INK = (0.1, 0.1, 0.1)
GREY = (0.4, 0.4, 0.4)
RULE = (0.55, 0.55, 0.55)
ACCENT = (0.16, 0.35, 0.6)
HEADER_FILL = (0.9, 0.92, 0.95)

SERIF = "tiro"
SANS = "helv"
SANS_BOLD = "hebo"


def text_box(page: pymupdf.Page, top: float, text: str, *, font: str, size: float, color=INK, align=0) -> float:
    """Set ``text`` between the margins from ``top``; returns the y just below the last line."""
    line_height = 1.35
    rect = pymupdf.Rect(MARGIN, top, WIDTH - MARGIN, HEIGHT - MARGIN)
    left = page.insert_textbox(rect, text, fontname=font, fontsize=size, color=color, align=align,
                               lineheight=line_height)
    if left < 0:
        raise ValueError(f"text does not fit: {text[:40]!r}")
    used = rect.height - left
    return top + used


def draw_table(page: pymupdf.Page, top: float) -> float:
    """A ruled table, header row shaded; returns the y of its bottom rule."""
    widths = [170, 70, 113, 114]
    row_height = 20
    size = 9.5
    x_edges = [MARGIN]
    for width in widths:
        x_edges.append(x_edges[-1] + width)
    rows = [TABLE_HEADER, *TABLE_ROWS]
    bottom = top + row_height * len(rows)
    page.draw_rect(pymupdf.Rect(x_edges[0], top, x_edges[-1], top + row_height), color=None, fill=HEADER_FILL)
    for index, row in enumerate(rows):
        baseline = top + index * row_height + 13.5
        font = SANS_BOLD if index == 0 else SANS
        for column, cell in enumerate(row):
            if column == 0:
                x = x_edges[0] + 6
            else:  # numbers right-aligned
                x = x_edges[column + 1] - 8 - pymupdf.get_text_length(cell, fontname=font, fontsize=size)
            page.insert_text((x, baseline), cell, fontname=font, fontsize=size, color=INK)
    page.draw_line((x_edges[0], top), (x_edges[-1], top), color=INK, width=1)
    page.draw_line((x_edges[0], top + row_height), (x_edges[-1], top + row_height), color=INK, width=0.6)
    for index in range(2, len(rows)):
        y = top + index * row_height
        page.draw_line((x_edges[0], y), (x_edges[-1], y), color=RULE, width=0.3)
    page.draw_line((x_edges[0], bottom), (x_edges[-1], bottom), color=INK, width=1)
    return bottom


def draw_chart(page: pymupdf.Page, top: float) -> float:
    """A vector bar chart with a y axis from 0 to 100%; returns the y of its lowest label."""
    plot_left, plot_right = MARGIN + 110, WIDTH - MARGIN - 70
    plot_top, plot_bottom = top + 10, top + 150
    size = 8.5
    span = plot_bottom - plot_top
    for value in range(0, 101, 25):
        y = plot_bottom - span * value / 100
        if value:
            page.draw_line((plot_left, y), (plot_right, y), color=(0.82, 0.82, 0.82), width=0.4, dashes="[2 2] 0")
        label = f"{value}%"
        x = plot_left - 6 - pymupdf.get_text_length(label, fontname=SANS, fontsize=size)
        page.insert_text((x, y + 3), label, fontname=SANS, fontsize=size, color=GREY)
    slot = (plot_right - plot_left) / len(BARS)
    bar_width = slot * 0.55
    for index, (label, value) in enumerate(BARS):
        centre = plot_left + slot * (index + 0.5)
        y = plot_bottom - span * value / 100
        page.draw_rect(pymupdf.Rect(centre - bar_width / 2, y, centre + bar_width / 2, plot_bottom),
                       color=None, fill=ACCENT)
        number = f"{value:.1f}"
        page.insert_text((centre - pymupdf.get_text_length(number, fontname=SANS, fontsize=size) / 2, y - 4),
                         number, fontname=SANS, fontsize=size, color=INK)
        page.insert_text((centre - pymupdf.get_text_length(label, fontname=SANS, fontsize=size) / 2,
                          plot_bottom + 13), label, fontname=SANS, fontsize=size, color=INK)
    page.draw_line((plot_left, plot_top - 4), (plot_left, plot_bottom), color=INK, width=0.8)
    page.draw_line((plot_left, plot_bottom), (plot_right, plot_bottom), color=INK, width=0.8)
    axis_label = "Compression ratio"
    width = pymupdf.get_text_length(axis_label, fontname=SANS, fontsize=size)
    page.insert_text(((plot_left + plot_right - width) / 2, plot_bottom + 28), axis_label,
                     fontname=SANS, fontsize=size, color=GREY)
    y_label = "Precision"
    page.insert_text((plot_left - 48, plot_top - 8), y_label, fontname=SANS, fontsize=size, color=GREY)
    return plot_bottom + 28


def build() -> pymupdf.Document:
    doc = pymupdf.open()
    page = doc.new_page(width=WIDTH, height=HEIGHT)

    y = MARGIN + 8
    page.insert_text((MARGIN, y + 14), TITLE, fontname=SANS_BOLD, fontsize=20, color=INK)
    y += 32
    page.insert_text((MARGIN, y), SUBTITLE, fontname=SANS, fontsize=9, color=GREY)
    y += 10
    page.draw_line((MARGIN, y), (WIDTH - MARGIN, y), color=ACCENT, width=1.2)
    y += 18

    for paragraph in PARAGRAPHS:
        y = text_box(page, y, paragraph, font=SERIF, size=11, align=pymupdf.TEXT_ALIGN_JUSTIFY) + 10

    y += 8
    y = text_box(page, y, TABLE_CAPTION, font=SANS, size=9, color=GREY) + 2
    y = draw_table(page, y) + 30

    y = draw_chart(page, y) + 16
    y = text_box(page, y, FIGURE_CAPTION, font=SANS, size=9, color=GREY)

    footer = "dsocr sample document  \u00b7  page 1 of 1"
    width = pymupdf.get_text_length(footer, fontname=SANS, fontsize=8)
    page.insert_text(((WIDTH - width) / 2, HEIGHT - 36), footer, fontname=SANS, fontsize=8, color=GREY)

    doc.set_metadata({
        "title": TITLE,
        "author": "dsocr",
        "subject": "Sample document for dsocr convert",
        "creator": "examples/make_sample.py",
        "producer": "PyMuPDF",
        "creationDate": "",
        "modDate": "",
    })
    return doc


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        print(f"usage: python {Path(__file__).name} [OUTPUT.pdf]", file=sys.stderr)
        return 2
    output = Path(argv[0]) if argv else DEFAULT_OUTPUT
    doc = build()
    doc.save(output, garbage=4, deflate=True, no_new_id=True, reproducible=True)
    doc.close()
    print(f"wrote {output} ({output.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
