"""DeepSeek-OCR v1 resolution modes and the official token-count and tiling rules, in pure Python.

Kept apart from ``preprocess`` (which needs torch and Pillow) so that the CLI can list modes and the
registry can describe the family without importing the model stack.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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


def max_image_tokens(mode: Mode) -> int:
    """Image positions of the largest page ``mode`` produces (Gundam: a 1x9 grid plus the global view)."""
    grids = candidate_grids() if mode.crop else [(1, 1)]
    return max(count_image_tokens(mode, grid) for grid in grids)


def image_tokens(mode: Mode, width: int, height: int) -> int:
    """Image positions of a ``width`` x ``height`` page in ``mode``."""
    return count_image_tokens(mode, grid_for(mode, width, height))
