"""DeepSeek-OCR v1 image preprocessing, identical to the official Hugging Face ``infer()`` path.

A page becomes a global view (stretched for tiny/small, aspect-padded with grey for base/large/gundam)
and, in gundam mode, a grid of 640 px tiles chosen by the official aspect-ratio rule. Resampling is
Pillow's bicubic, as in the official code; pixels are normalised to [-1, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageOps

PATCH_SIZE = 16
DOWNSAMPLE_RATIO = 4
TILE_SIZE = 640
MIN_CROPS = 2
MAX_CROPS = 9
MEAN = 0.5
STD = 0.5
PAD_COLOR = (int(MEAN * 255),) * 3
"""(127, 127, 127): the official pad colour is the normalisation mean in 0..255, truncated."""


@dataclass(frozen=True)
class Mode:
    """A resolution mode: ``base_size`` is the global view, ``image_size`` the tile (crop) or view size."""

    name: str
    base_size: int
    image_size: int
    crop: bool

    @property
    def view_size(self) -> int:
        """Side of the global view: the official non-crop path pads to ``image_size``, crop mode to ``base_size``."""
        return self.base_size if self.crop else self.image_size


MODES: dict[str, Mode] = {
    mode.name: mode
    for mode in (
        Mode("tiny", 512, 512, False),
        Mode("small", 640, 640, False),
        Mode("base", 1024, 1024, False),
        Mode("large", 1280, 1280, False),
        Mode("gundam", 1024, 640, True),
    )
}


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


def queries_per_side(size: int) -> int:
    """Vision tokens per side of a ``size`` px view: 16 px patches, then the 4x4 convolutional compressor."""
    return math.ceil((size // PATCH_SIZE) / DOWNSAMPLE_RATIO)


def count_image_tokens(mode: Mode, grid: tuple[int, int]) -> int:
    """Official token layout (spec §5.1): global rows with newlines, one separator, stitched tile rows with newlines."""
    q = queries_per_side(mode.view_size)
    total = q * (q + 1) + 1
    cols, rows = grid
    if cols > 1 or rows > 1:
        q_tile = queries_per_side(mode.image_size)
        total += (q_tile * rows) * (q_tile * cols + 1)
    return total


def candidate_grids(min_num: int = MIN_CROPS, max_num: int = MAX_CROPS) -> list[tuple[int, int]]:
    """(cols, rows) grids with min_num <= cols*rows <= max_num, in the official order.

    The official code builds a Python set of tuples and stable-sorts it by area, so grids of equal area
    keep the set's iteration order; that order decides exact aspect-ratio ties and is reproduced here.
    """
    grids = {
        (cols, rows)
        for n in range(min_num, max_num + 1)
        for cols in range(1, n + 1)
        for rows in range(1, n + 1)
        if min_num <= cols * rows <= max_num
    }
    return sorted(grids, key=lambda grid: grid[0] * grid[1])


def choose_grid(
    width: int, height: int, min_num: int = MIN_CROPS, max_num: int = MAX_CROPS, tile: int = TILE_SIZE
) -> tuple[int, int]:
    """The tile grid for a ``width`` x ``height`` page: closest aspect ratio; exact ties go to the larger
    grid when the page has more than half a tile of pixels per tile of that grid."""
    aspect = width / height
    best, best_diff = (1, 1), float("inf")
    for cols, rows in candidate_grids(min_num, max_num):
        diff = abs(aspect - cols / rows)
        if diff < best_diff:
            best, best_diff = (cols, rows), diff
        elif diff == best_diff and width * height > 0.5 * tile * tile * cols * rows:
            best = (cols, rows)
    return best


def grid_for(mode: Mode, width: int, height: int) -> tuple[int, int]:
    """The grid a page gets in ``mode``: none unless cropping and the page exceeds one tile."""
    if not mode.crop or (width <= TILE_SIZE and height <= TILE_SIZE):
        return (1, 1)
    return choose_grid(width, height)


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
