"""Synthetic page images: deterministic text-like pages for tests and benchmarks."""

from __future__ import annotations

import random

from PIL import Image, ImageDraw

LOREM = (
    "DeepSeek-OCR compresses a page into a few vision tokens and writes it back as Markdown. "
    "Tables, formulas and figures keep their layout so that documents convert faithfully. "
).split()


def make_page_image(width: int, height: int, seed: int = 0) -> Image.Image:
    """A white page with a title bar, lines of text and a grey figure box, reproducible from ``seed``."""
    rng = random.Random(seed)
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    margin = max(4, width // 20)
    line = max(10, height // 60)
    draw.rectangle([margin, margin, width - margin, margin + 2 * line], fill=(30, 60, 120))
    y = margin + 3 * line
    while y < height - margin - line:
        if rng.random() < 0.08:
            box_h = min(6 * line, height - margin - y)
            draw.rectangle([margin, y, width // 2, y + box_h], fill=(rng.randrange(120, 220),) * 3)
            y += box_h + line
            continue
        words = " ".join(rng.choice(LOREM) for _ in range(max(1, width // 60)))
        draw.text((margin, y), words, fill=(0, 0, 0))
        y += line
    return image
