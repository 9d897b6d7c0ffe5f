"""The lab's plot: precision against compression ratio, one point per page and mode, drawn with Pillow.

One colour per mode (filled circles), the paper's Fox points as reference (hollow black diamonds for 64 vision
tokens, hollow black squares for 100), axes from 0 to the largest ratio (at least 25x) and 0-100 % precision,
a legend. Pillow is a dependency already, so the plot needs nothing more (no matplotlib). The image is
returned; ``run`` writes it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from dsocr_cli.compress.metrics import FOX_REFERENCE, ReferencePoint

if TYPE_CHECKING:
    from PIL import Image

WIDTH, HEIGHT = 960, 640
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 80, 200, 50, 70
COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75))
GRID = (225, 225, 225)
INK = (30, 30, 30)
POINT_RADIUS = 5


def nice_step(span: float) -> float:
    """A tick step of 1, 2 or 5 x 10^k giving 5 to 10 ticks over ``span``."""
    raw = span / 8
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * power:
            return factor * power
    return 10 * power


def plot(
    points: dict[str, Sequence[tuple[float, float]]],
    title: str,
    reference: Sequence[ReferencePoint] = FOX_REFERENCE,
) -> Image.Image:
    """``points``: mode -> (compression ratio, precision 0..1) per page. Returns an RGB image."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=14)
    small = ImageFont.load_default(size=12)
    ratios = [ratio for series in points.values() for ratio, _ in series] + [p.ratio for p in reference]
    x_max = max([25.0, *ratios]) * 1.05
    step = nice_step(x_max)
    x_max = math.ceil(x_max / step) * step
    left, right = MARGIN_LEFT, WIDTH - MARGIN_RIGHT
    top, bottom = MARGIN_TOP, HEIGHT - MARGIN_BOTTOM

    def at(ratio: float, precision: float) -> tuple[float, float]:
        return (
            left + (right - left) * min(ratio, x_max) / x_max,
            bottom - (bottom - top) * max(0.0, min(precision, 1.0)),
        )

    for index in range(int(round(x_max / step)) + 1):
        value = index * step
        x, _ = at(value, 0)
        draw.line([(x, top), (x, bottom)], fill=GRID)
        draw.text((x, bottom + 6), f"{value:g}x", fill=INK, font=small, anchor="mt")
    for tenth in range(11):
        _, y = at(0, tenth / 10)
        draw.line([(left, y), (right, y)], fill=GRID)
        draw.text((left - 6, y), f"{tenth * 10}%", fill=INK, font=small, anchor="rm")
    draw.rectangle([left, top, right, bottom], outline=INK)
    draw.text(
        ((left + right) / 2, HEIGHT - 24),
        "compression ratio (text tokens / vision tokens)",
        fill=INK,
        font=font,
        anchor="mm",
    )
    label = Image.new("RGB", (120, 20), "white")
    ImageDraw.Draw(label).text((60, 10), "precision", fill=INK, font=font, anchor="mm")
    image.paste(label.rotate(90, expand=True), (14, int((top + bottom) / 2) - 60))
    draw.text((left, 20), title, fill=INK, font=font, anchor="lm")

    for point in reference:
        x, y = at(point.ratio, point.precision)
        r = POINT_RADIUS + 1
        if point.vision_tokens == 64:
            draw.polygon([(x, y - r), (x + r, y), (x, y + r), (x - r, y)], outline=INK)
        else:
            draw.rectangle([x - r + 1, y - r + 1, x + r - 1, y + r - 1], outline=INK)
    legend: list[tuple[str, tuple[int, int, int] | None]] = []
    for index, (mode, series) in enumerate(points.items()):
        colour = COLOURS[index % len(COLOURS)]
        for ratio, precision in series:
            x, y = at(ratio, precision)
            draw.ellipse([x - POINT_RADIUS, y - POINT_RADIUS, x + POINT_RADIUS, y + POINT_RADIUS], fill=colour)
        legend.append((f"{mode} ({len(series)} page(s))", colour))
    y = top + 10
    for label, colour in legend:
        draw.ellipse([right + 20, y - POINT_RADIUS, right + 20 + 2 * POINT_RADIUS, y + POINT_RADIUS], fill=colour)
        draw.text((right + 36, y), label, fill=INK, font=small, anchor="lm")
        y += 22
    x = right + 25
    draw.polygon([(x, y - 6), (x + 6, y), (x, y + 6), (x - 6, y)], outline=INK)
    draw.text((right + 36, y), "paper Fox, 64 tokens", fill=INK, font=small, anchor="lm")
    y += 22
    draw.rectangle([x - 5, y - 5, x + 5, y + 5], outline=INK)
    draw.text((right + 36, y), "paper Fox, 100 tokens", fill=INK, font=small, anchor="lm")
    return image
