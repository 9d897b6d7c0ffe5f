"""A PDF page's own text layer, read with PyMuPDF: measurements for ``dsocr_cli.text_layer.judge``, and the
page's text as grounded blocks, so that every writer treats it as it treats the model's output.

The blocks are PyMuPDF's text blocks (``Page.get_text("dict")``) in its reading order, each with its box in
the model's 0..999 coordinates of the page as displayed (rotation applied). A block set in a larger font than
the page's body text (the size most characters have) becomes a heading, written as the model writes one (one
``#`` line): ``title`` (``#``) at ``TITLE_RATIO`` times the body size, ``sub_title`` (``##``) at ``SUBTITLE_RATIO``. Tables and formulas come out as the text layer has them (lines of
text); only OCR rebuilds their structure.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from dsocr_cli.lazy import lazy_module
from dsocr_cli.postprocess.grounding import COORD_MAX
from dsocr_cli.text_layer import TextLayerStats, count_chars

pymupdf = lazy_module("pymupdf")

TITLE_RATIO = 1.6
SUBTITLE_RATIO = 1.2


@dataclass(frozen=True)
class TextLayer:
    """One page's text layer: its measurements and its text as grounded model-style output."""

    stats: TextLayerStats
    grounded: str


Rect = tuple[float, float, float, float]


def read_text_layer(page: pymupdf.Page) -> TextLayer:
    """Measure and read ``page``'s text layer (a few milliseconds a page; no rendering)."""
    bounds = pymupdf.Rect(page.rect * page.derotation_matrix)  # extraction's space: the unrotated page
    bounds.normalize()
    data = page.get_text("dict", flags=_text_flags())
    images = [_clip(info["bbox"], bounds) for info in page.get_image_info()]
    images = [rect for rect in images if rect is not None]
    chars = invalid = 0
    text_area = image_text_area = 0.0
    sizes: Counter[float] = Counter()
    blocks: list[tuple[Rect, list[str], float]] = []
    for block in data.get("blocks", ()):
        if block.get("type") != 0:
            continue
        lines: list[str] = []
        largest = 0.0
        for line in block.get("lines", ()):
            text = "".join(span.get("text", "") for span in line.get("spans", ()))
            for span in line.get("spans", ()):
                span_chars, span_invalid = count_chars(span.get("text", ""))
                if not span_chars:
                    continue
                chars += span_chars
                invalid += span_invalid
                size = round(float(span.get("size", 0.0)), 1)
                sizes[size] += span_chars
                largest = max(largest, size)
                box = _clip(span["bbox"], bounds)
                if box is not None:
                    text_area += _area(box)
                    image_text_area += max((_area(_clip(box, image) or (0, 0, 0, 0)) for image in images), default=0.0)
            if text.strip():
                lines.append(" ".join(text.split()))
        if lines:
            blocks.append((tuple(block["bbox"]), lines, largest))
    stats = TextLayerStats(
        chars=chars,
        invalid=invalid,
        page_area=_area(tuple(bounds)),
        text_area=text_area,
        image_area=union_area(images),
        image_text_area=image_text_area,
    )
    body = sizes.most_common(1)[0][0] if sizes else 0.0
    return TextLayer(stats, _grounded(page, blocks, body))


def _grounded(page: pymupdf.Page, blocks: list[tuple[Rect, list[str], float]], body: float) -> str:
    """The blocks as the model writes them: ``<|ref|>label<|/ref|><|det|>[[x1, y1, x2, y2]]<|/det|>`` + text."""
    width, height = page.rect.width, page.rect.height
    parts = []
    for rect, lines, largest in blocks:
        shown = pymupdf.Rect(rect) * page.rotation_matrix
        shown.normalize()
        box = [
            _coord(shown.x0, width),
            _coord(shown.y0, height),
            _coord(shown.x1, width),
            _coord(shown.y1, height),
        ]
        if box[2] <= box[0] or box[3] <= box[1]:
            continue
        label = "text"
        if body and largest >= TITLE_RATIO * body:
            label = "title"
        elif body and largest >= SUBTITLE_RATIO * body:
            label = "sub_title"
        text = "\n".join(lines)
        if label != "text":  # as the model writes headings: one Markdown heading line
            text = ("# " if label == "title" else "## ") + " ".join(lines)
        text = text.replace("<|", "< |")  # never the model's markup
        parts.append(f"<|ref|>{label}<|/ref|><|det|>[{box}]<|/det|>\n{text}\n\n")
    return "".join(parts)


def _coord(value: float, size: float) -> int:
    return min(COORD_MAX, max(0, round(value / max(size, 1e-9) * COORD_MAX)))


def _clip(rect: Rect | pymupdf.Rect, bounds: Rect | pymupdf.Rect) -> Rect | None:
    x0, y0, x1, y1 = max(rect[0], bounds[0]), max(rect[1], bounds[1]), min(rect[2], bounds[2]), min(rect[3], bounds[3])
    if x1 <= x0 or y1 <= y0:
        return None
    return (x0, y0, x1, y1)


def _area(rect: Rect) -> float:
    return max(0.0, rect[2] - rect[0]) * max(0.0, rect[3] - rect[1])


def union_area(rects: list[Rect]) -> float:
    """The area the rectangles cover together, overlaps counted once (a sweep over x)."""
    xs = sorted({x for rect in rects for x in (rect[0], rect[2])})
    total = 0.0
    for left, right in zip(xs, xs[1:], strict=False):
        spans = sorted((rect[1], rect[3]) for rect in rects if rect[0] <= left and rect[2] >= right)
        covered, top, bottom = 0.0, None, None
        for y0, y1 in spans:
            if top is None or bottom is None or y0 > bottom:
                if top is not None and bottom is not None:
                    covered += bottom - top
                top, bottom = y0, y1
            else:
                bottom = max(bottom, y1)
        if top is not None and bottom is not None:
            covered += bottom - top
        total += covered * (right - left)
    return total


def _text_flags() -> int:
    """Ligatures and whitespace as drawn, text clipped to the media box."""
    return pymupdf.TEXT_PRESERVE_LIGATURES | pymupdf.TEXT_PRESERVE_WHITESPACE | pymupdf.TEXT_MEDIABOX_CLIP
