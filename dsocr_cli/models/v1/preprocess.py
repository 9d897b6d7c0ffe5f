"""DeepSeek-OCR v1 image preprocessing, identical to the official Hugging Face ``infer()`` path.

A page becomes a global view (stretched for tiny/small, aspect-padded with grey for base/large/gundam)
and, in gundam mode, a grid of 640 px tiles chosen by the official aspect-ratio rule. Resampling is
Pillow's bicubic, as in the official code; pixels are normalised to [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageOps

from dsocr_cli.models.v1.modes import (  # noqa: F401  (re-exported: the tables live in the pure-Python module)
    DOWNSAMPLE_RATIO,
    MAX_CROPS,
    MEAN,
    MIN_CROPS,
    MODES,
    PAD_COLOR,
    PATCH_SIZE,
    STD,
    TILE_SIZE,
    Mode,
    candidate_grids,
    choose_grid,
    count_image_tokens,
    grid_for,
    queries_per_side,
)


@dataclass
class PreparedImage:
    """Model-ready tensors of one page, and where its image tokens go."""

    global_view: torch.Tensor
    """(3, S, S) float32 in [-1, 1]."""
    tiles: torch.Tensor | None
    """(cols*rows, 3, 640, 640) float32, or None when the page is not tiled."""
    grid: tuple[int, int]
    """(cols, rows) of the tile grid; (1, 1) when untiled."""
    num_image_tokens: int
    """Image positions in the prompt: patch tokens + a newline per row + the view separator."""


def to_tensor(image: Image.Image) -> torch.Tensor:
    """uint8 RGB -> (3, H, W) float32 normalised with mean/std 0.5, bit-identical to ToTensor + Normalize."""
    array = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy())
    tensor = array.permute(2, 0, 1).contiguous().to(torch.float32).div(255)
    return tensor.sub_(MEAN).div_(STD)


def prepare_image(image: Image.Image, mode: Mode) -> PreparedImage:
    """Turn an RGB page into the official global view, tiles and token count for ``mode``."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    width, height = image.size
    grid = grid_for(mode, width, height)
    tiles = None
    if grid != (1, 1):
        cols, rows = grid
        stretched = image.resize((cols * TILE_SIZE, rows * TILE_SIZE), Image.Resampling.BICUBIC)
        tiles = torch.stack(
            [
                to_tensor(
                    stretched.crop(
                        (
                            (k % cols) * TILE_SIZE,
                            (k // cols) * TILE_SIZE,
                            (k % cols + 1) * TILE_SIZE,
                            (k // cols + 1) * TILE_SIZE,
                        )
                    )
                )
                for k in range(cols * rows)
            ]
        )
    size = mode.view_size
    if not mode.crop and size <= TILE_SIZE:
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    global_view = ImageOps.pad(image, (size, size), color=PAD_COLOR)
    return PreparedImage(
        global_view=to_tensor(global_view),
        tiles=tiles,
        grid=grid,
        num_image_tokens=count_image_tokens(mode, grid),
    )
