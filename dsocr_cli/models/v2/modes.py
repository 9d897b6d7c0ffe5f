"""DeepSeek-OCR-2 resolution modes and the official tiling and token-count rules, in pure Python.

v2's encoder has learnable queries for two view sizes only (``query_1024``: 256, ``query_768``: 144),
so it has two modes: ``base`` (the 1024 px global view alone) and ``gundam`` (768 px crops plus the
1024 px global view; the official default). Tiling reuses v1's aspect-ratio rule and its exact tie-break
(``dsocr_cli.models.v1.modes.choose_grid``) with v2's tile size and crop limits. Token layout: local
crops, then the global view, then one view separator; no per-row newline tokens (v1 has them), so a
page has ``256 + 144·k + 1`` image positions for ``k`` crops.

Fidelity: these rules follow the official code (``process/image_process.py``); tests/test_v2_tiling.py checks
the grid and count rule on 20+ page sizes and tests/test_golden_v2.py the ids against the official code.
"""

from __future__ import annotations

from dataclasses import dataclass

from dsocr_cli.models.v1.modes import MEAN, PAD_COLOR, PATCH_SIZE, STD, candidate_grids, choose_grid  # noqa: F401

BASE_SIZE = 1024
"""Side of the global view."""
TILE_SIZE = 768
"""Side of a local crop."""
MIN_CROPS = 2
MAX_CROPS = 6
GLOBAL_TOKENS = 256
"""``query_1024``: 16 x 16 queries for the 1024 px view."""
TILE_TOKENS = 144
"""``query_768``: 12 x 12 queries per 768 px crop."""
SEPARATOR_TOKENS = 1


@dataclass(frozen=True)
class Mode:
    """A v2 mode: the global view always, and 768 px crops when ``crop``."""

    name: str
    crop: bool
    base_size: int = BASE_SIZE
    image_size: int = TILE_SIZE

    @property
    def view_size(self) -> int:
        """The largest single view the encoder sees (the global view)."""
        return self.base_size


MODES: dict[str, Mode] = {mode.name: mode for mode in (Mode("base", crop=False), Mode("gundam", crop=True))}
DEFAULT_MODE = "gundam"
"""The official default: 1024 global view + 768 crops."""


def grid_for(mode: Mode, width: int, height: int) -> tuple[int, int]:
    """The crop grid (cols, rows) of a ``width`` x ``height`` page: (1, 1) (no crops) unless cropping and a
    side exceeds 768 px; otherwise v1's rule over 2..6 crops."""
    if not mode.crop or (width <= TILE_SIZE and height <= TILE_SIZE):
        return (1, 1)
    return choose_grid(width, height, MIN_CROPS, MAX_CROPS, TILE_SIZE)


def crops_of(grid: tuple[int, int]) -> int:
    """Local crops of a grid: (1, 1) means none."""
    cols, rows = grid
    return 0 if grid == (1, 1) else cols * rows


def count_image_tokens(grid: tuple[int, int]) -> int:
    """``256 + 144·k + 1``: local crops, the global view, one separator."""
    return GLOBAL_TOKENS + TILE_TOKENS * crops_of(grid) + SEPARATOR_TOKENS


def max_image_tokens(mode: Mode) -> int:
    """Image positions of the largest page ``mode`` produces (gundam: 6 crops, 1,121)."""
    return count_image_tokens((MAX_CROPS, 1) if mode.crop else (1, 1))


def image_tokens(mode: Mode, width: int, height: int) -> int:
    return count_image_tokens(grid_for(mode, width, height))


def pad_offsets(width: int, height: int, size: int = BASE_SIZE) -> tuple[int, int]:
    """Where ``ImageOps.pad`` puts a ``width`` x ``height`` page in the ``size`` square: the page is scaled to
    fit (``ImageOps.contain``) and centred with Python's ``round`` (half to even), as the official code gets
    it from Pillow; transformers' native processor floors instead (1 px off when ``(size - side) % 4 == 3``)."""
    if width > height:
        fitted = (size, round(height / width * size))
    elif width < height:
        fitted = (round(width / height * size), size)
    else:
        fitted = (size, size)
    return round((size - fitted[0]) / 2), round((size - fitted[1]) / 2)
