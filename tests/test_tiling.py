"""Preprocessing geometry: tile grids and image-token counts follow the official rule."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from dsocr_cli.models.v1.preprocess import (
    MODES,
    candidate_grids,
    count_image_tokens,
    grid_for,
    prepare_image,
)
from tests.conftest import FIXTURES

OFFICIAL = json.loads((FIXTURES / "official_tiling.json").read_text())["grids"]


@pytest.mark.parametrize(("width", "height", "cols", "rows"), OFFICIAL, ids=[f"{w}x{h}" for w, h, *_ in OFFICIAL])
def test_gundam_grid_matches_official_rule(width: int, height: int, cols: int, rows: int) -> None:
    assert grid_for(MODES["gundam"], width, height) == (cols, rows)
    expected_tokens = 273 + (10 * rows * (10 * cols + 1) if (cols, rows) != (1, 1) else 0)
    assert count_image_tokens(MODES["gundam"], (cols, rows)) == expected_tokens


def test_candidate_order_matches_official_listing() -> None:
    assert candidate_grids()[:12] == [(1, 2), (2, 1), (3, 1), (1, 3), (2, 2), (4, 1), (1, 4), (5, 1), (1, 5), (1, 6), (6, 1), (3, 2)]


@pytest.mark.parametrize(("mode", "tokens"), [("tiny", 73), ("small", 111), ("base", 273), ("large", 421)])
def test_single_view_modes_have_fixed_token_counts(mode: str, tokens: int) -> None:
    for size in [(300, 200), (1190, 1684), (5000, 300)]:
        prepared = prepare_image(Image.new("RGB", size, "white"), MODES[mode])
        assert prepared.num_image_tokens == tokens
        assert prepared.tiles is None


def test_gundam_a4_page_gets_six_tiles_and_903_tokens() -> None:
    prepared = prepare_image(Image.new("RGB", (1190, 1684), "white"), MODES["gundam"])
    assert prepared.grid == (2, 3)
    assert prepared.tiles is not None and tuple(prepared.tiles.shape) == (6, 3, 640, 640)
    assert tuple(prepared.global_view.shape) == (3, 1024, 1024)
    assert prepared.num_image_tokens == 903


def test_padding_is_grey_and_pixels_are_normalised() -> None:
    prepared = prepare_image(Image.new("RGB", (2000, 1000), (255, 255, 255)), MODES["base"])
    view = prepared.global_view
    assert view.max().item() == 1.0
    assert view[:, 0, 0].tolist() == pytest.approx([127 / 255 * 2 - 1] * 3)
    assert view[:, 512, 512].tolist() == [1.0, 1.0, 1.0]


def test_tiny_mode_stretches_instead_of_padding() -> None:
    prepared = prepare_image(Image.new("RGB", (2000, 1000), (255, 255, 255)), MODES["tiny"])
    assert tuple(prepared.global_view.shape) == (3, 512, 512)
    assert prepared.global_view.min().item() == 1.0
