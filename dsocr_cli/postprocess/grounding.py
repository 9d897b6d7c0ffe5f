"""Grounded model output -> blocks with boxes.

The model writes ``<|ref|>LABEL<|/ref|><|det|>[[x1, y1, x2, y2], ...]<|/det|>`` before each block's content, with
coordinates normalised to 0..999. Runaway generation can cut a box list anywhere, so parsing never raises: a broken
box is dropped and the text around it is kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from PIL import Image

Box = tuple[int, int, int, int]
"""(x1, y1, x2, y2) with x1 < x2 and y1 < y2."""

COORD_MAX = 999
"""Model coordinates run 0..COORD_MAX across the page; pixel = int(c / COORD_MAX * size)."""

_REF = re.compile(r"<\|ref\|>((?:(?!<\|/?ref\|>).)*?)<\|/ref\|>")
_DET_OPEN = "<|det|>"
_DET_CLOSE = "<|/det|>"
# A box list cut off before <|/det|>: take up to the first "]]", else every box-list character, so that
# content that follows a missing close tag stays text.
_UNCLOSED_DET = re.compile(r"[\d\s,.\[\]-]*?\]\]|[\d\s,.\[\]-]*")
_NUMBER = r"\s*(-?\d+(?:\.\d+)?)\s*"
_BOX = re.compile(r"\[" + ",".join([_NUMBER] * 4) + r"\]")
_STRAY_TAGS = re.compile(r"<\|ref\|>[^<\n]*\Z|<\|det\|>[^<]*?<\|/det\|>|<\|/?(?:ref|det)\|>|<\|grounding\|>")
"""A label cut off at the end, a box list with no label, or a lone tag: markup that must not reach the text."""


@dataclass
class Block:
    """One layout region: its label (None for un-grounded text), content and boxes in 0..999 coordinates."""

    label: str | None
    text: str
    boxes: list[Box] = field(default_factory=list)


def parse_blocks(raw: str) -> list[Block]:
    """Split raw model output into blocks; un-grounded output becomes one block labelled None."""
    refs = list(_REF.finditer(raw))
    blocks: list[Block] = []
    lead = _strip_tags(raw[: refs[0].start()] if refs else raw)
    if lead:
        blocks.append(Block(None, lead))
    for index, ref in enumerate(refs):
        end = refs[index + 1].start() if index + 1 < len(refs) else len(raw)
        boxes, content_start = _read_det(raw, ref.end(), end)
        blocks.append(Block(ref.group(1).strip(), _strip_tags(raw[content_start:end]), boxes))
    return blocks


def box_to_pixels(box: Box, width: int, height: int) -> Box:
    """Scale a 0..999 box to page pixels, clamped to the page (the model may point past its edge)."""
    x1, y1, x2, y2 = box
    return (_scale(x1, width), _scale(y1, height), _scale(x2, width), _scale(y2, height))


def crop_box(image: Image.Image, box: Box) -> Image.Image:
    """The page region under ``box``, at least one pixel wide and high so a sliver box still yields an image."""
    x1, y1, x2, y2 = box_to_pixels(box, image.width, image.height)
    x1, y1 = min(x1, image.width - 1), min(y1, image.height - 1)
    return image.crop((x1, y1, max(x2, x1 + 1), max(y2, y1 + 1)))


def _scale(coord: int, size: int) -> int:
    return min(size, max(0, int(coord / COORD_MAX * size)))


def _read_det(raw: str, pos: int, end: int) -> tuple[list[Box], int]:
    """The boxes of the ``<|det|>`` list at ``pos`` (if any) and where the block's content starts."""
    if not raw.startswith(_DET_OPEN, pos):
        return [], pos
    body_start = pos + len(_DET_OPEN)
    close = raw.find(_DET_CLOSE, body_start, end)
    if close >= 0:
        return _parse_boxes(raw[body_start:close]), close + len(_DET_CLOSE)
    body = _UNCLOSED_DET.match(raw, body_start, end)
    assert body is not None  # the second alternative matches the empty string
    return _parse_boxes(body.group()), body.end()


def _parse_boxes(body: str) -> list[Box]:
    """Every complete four-number box, clamped to 0..999 and ordered; empty boxes are dropped."""
    boxes: list[Box] = []
    for match in _BOX.finditer(body):
        x1, y1, x2, y2 = (min(COORD_MAX, max(0, int(float(value)))) for value in match.groups())
        box = (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))
        if box[0] < box[2] and box[1] < box[3]:
            boxes.append(box)
    return boxes


def _strip_tags(text: str) -> str:
    return _STRAY_TAGS.sub("", text).strip()
