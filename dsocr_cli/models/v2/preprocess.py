"""DeepSeek-OCR-2 image preprocessing, as the official code does it.

A page becomes the 1024 px global view (``ImageOps.pad``: aspect-preserving bicubic resize, grey
(127, 127, 127) fill, centred with Pillow's round-half-even offset, which transformers' native processor
floors; ``modes.pad_offsets``) and, in ``gundam`` mode when a side exceeds 768 px, 2..6 crops of 768 px
cut from the page stretched (bicubic) to the chosen grid, row by row. Pixels are normalised to [-1, 1]
bit-identically to v1 (``dsocr_cli.models.v1.preprocess.to_tensor``).

Orientation and transparency: the page is turned upright by its EXIF orientation and transparency is
composited on white (dsocr's rule for both families; the official loaders drop the alpha channel, which
can show a black page). dsocr's input readers already do both; doing it here again is a no-op for their
images and keeps library callers safe.

Fidelity: the rules follow the official code as summarised in the project's v2 facts; golden numbers
from the official code are not asserted here yet (a later change adds them).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image, ImageOps

from dsocr_cli.models.v1.preprocess import to_tensor
from dsocr_cli.models.v2.modes import BASE_SIZE, PAD_COLOR, TILE_SIZE, Mode, count_image_tokens, grid_for

TRANSPARENT_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


@dataclass
class PreparedImage:
    """Model-ready tensors of one v2 page."""

    global_view: torch.Tensor
    """(3, 1024, 1024) float32 in [-1, 1]."""
    tiles: torch.Tensor | None
    """(cols*rows, 3, 768, 768) float32, or None when the page has no crops."""
    grid: tuple[int, int]
    """(cols, rows) of the crop grid; (1, 1) when there are none."""
    num_image_tokens: int
    """``256 + 144·k + 1``."""


def upright_rgb(image: Image.Image) -> Image.Image:
    """EXIF orientation applied, transparency composited on white, RGB."""
    image = ImageOps.exif_transpose(image)
    if image.mode in TRANSPARENT_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def crops(image: Image.Image, grid: tuple[int, int]) -> torch.Tensor:
    """The page stretched to ``grid`` x 768 px and cut into crops, left to right, top to bottom."""
    cols, rows = grid
    stretched = image.resize((cols * TILE_SIZE, rows * TILE_SIZE), Image.Resampling.BICUBIC)
    boxes = [
        ((k % cols) * TILE_SIZE, (k // cols) * TILE_SIZE, (k % cols + 1) * TILE_SIZE, (k // cols + 1) * TILE_SIZE)
        for k in range(cols * rows)
    ]
    return torch.stack([to_tensor(stretched.crop(box)) for box in boxes])


def prepare_image(image: Image.Image, mode: Mode) -> PreparedImage:
    """The official global view, crops and token count of one page in ``mode``."""
    image = upright_rgb(image)
    width, height = image.size
    grid = grid_for(mode, width, height)
    tiles = crops(image, grid) if grid != (1, 1) else None
    global_view = ImageOps.pad(image, (BASE_SIZE, BASE_SIZE), color=PAD_COLOR)
    return PreparedImage(
        global_view=to_tensor(global_view), tiles=tiles, grid=grid, num_image_tokens=count_image_tokens(grid)
    )
