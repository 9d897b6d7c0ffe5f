"""DeepSeek-OCR-2 tiling and token counts: the official rule, re-derived here from its statement.

The rule (official ``process/image_process.py``, as the project's v2 facts state it): no crops when both
sides are <= 768 px; otherwise the (cols, rows) grid with 2 <= cols·rows <= 6 whose aspect ratio is
closest to the page's, an exact tie going to the later (larger) grid when the page area exceeds half the
grid's 768 px tiles; 256 + 144·k + 1 image positions. Golden numbers from running the official code are
not part of these tests (a later change adds them).
"""

from __future__ import annotations

import io

import pytest
import torch
from PIL import Image, ImageOps

from dsocr_cli.models.v2 import modes
from dsocr_cli.models.v2.preprocess import prepare_image

PAGES = [
    (300, 400),
    (768, 768),
    (769, 768),
    (768, 769),
    (1024, 1024),
    (1190, 1684),
    (1684, 1190),
    (2480, 3508),
    (3508, 2480),
    (1000, 3000),
    (3000, 1000),
    (800, 5000),
    (5000, 800),
    (1536, 768),
    (768, 1536),
    (1537, 770),
    (2304, 768),
    (1500, 1000),
    (1000, 1500),
    (4000, 4000),
    (640, 2000),
    (2000, 640),
    (1275, 1650),
    (612, 792),
    (1700, 2200),
    (900, 1200),
    (4000, 1000),
    (1000, 5000),
]


def reference_grid(width: int, height: int) -> tuple[int, int]:
    """The rule written out independently of ``dsocr_cli.models.v1.modes.choose_grid``."""
    if width <= 768 and height <= 768:
        return (1, 1)
    ratios = sorted(
        {(i, j) for n in range(2, 7) for i in range(1, n + 1) for j in range(1, n + 1) if 2 <= i * j <= 6},
        key=lambda r: r[0] * r[1],
    )
    aspect = width / height
    best, best_diff = (1, 1), float("inf")
    for cols, rows in ratios:
        diff = abs(aspect - cols / rows)
        if diff < best_diff:
            best, best_diff = (cols, rows), diff
        elif diff == best_diff and width * height > 0.5 * 768 * 768 * cols * rows:
            best = (cols, rows)
    return best


@pytest.mark.parametrize(("width", "height"), PAGES)
def test_grid_and_token_count_follow_the_official_rule(width: int, height: int) -> None:
    grid = reference_grid(width, height)
    k = 0 if grid == (1, 1) else grid[0] * grid[1]
    assert modes.grid_for(modes.MODES["gundam"], width, height) == grid
    assert modes.image_tokens(modes.MODES["gundam"], width, height) == 256 + 144 * k + 1
    assert modes.image_tokens(modes.MODES["base"], width, height) == 257
    assert 2 <= k <= 6 or k == 0


def test_at_least_twenty_page_sizes_and_every_crop_count_is_seen() -> None:
    assert len(set(PAGES)) >= 20
    counts = {modes.grid_for(modes.MODES["gundam"], w, h) for w, h in PAGES}
    assert {c * r for c, r in counts if (c, r) != (1, 1)} == {2, 3, 4, 5, 6}


def test_largest_page_budget_is_six_crops() -> None:
    assert modes.max_image_tokens(modes.MODES["gundam"]) == 256 + 144 * 6 + 1 == 1121
    assert modes.max_image_tokens(modes.MODES["base"]) == 257


@pytest.mark.parametrize(("width", "height"), [(1190, 1684), (2480, 3508), (900, 1200), (1500, 1000)])
def test_prepared_page_has_the_grid_crops_and_token_count(width: int, height: int) -> None:
    from dsocr_cli.testing.images import make_page_image

    prepared = prepare_image(make_page_image(width, height), modes.MODES["gundam"])
    cols, rows = reference_grid(width, height)
    assert prepared.grid == (cols, rows)
    assert prepared.global_view.shape == (3, 1024, 1024)
    assert prepared.tiles is not None and prepared.tiles.shape == (cols * rows, 3, 768, 768)
    assert prepared.num_image_tokens == 256 + 144 * cols * rows + 1


def rounding_sides() -> list[int]:
    """Fitted sides s with (1024 - s) % 4 == 3: the pad offset (1024 - s) / 2 ends in .5 and rounds to even."""
    return [s for s in range(700, 1000) if (1024 - s) % 4 == 3][:6]


@pytest.mark.parametrize("side", rounding_sides())
def test_pad_offset_rounds_half_to_even_like_pillow(side: int) -> None:
    """A 1024 x side page keeps its size; its offset is round((1024 - side) / 2), one more than the floor."""
    offset_x, offset_y = modes.pad_offsets(1024, side)
    assert offset_x == 0
    assert offset_y == round((1024 - side) / 2) == (1024 - side) // 2 + 1
    page = Image.new("RGB", (1024, side), (0, 0, 0))
    prepared = prepare_image(page, modes.MODES["base"])
    black_rows = (prepared.global_view[0, :, 512] < -0.5).nonzero().flatten()
    assert (black_rows[0].item(), black_rows[-1].item()) == (offset_y, offset_y + side - 1)
    grey = torch.tensor(127 / 255 * 2 - 1)
    assert torch.allclose(prepared.global_view[:, offset_y - 1, 512], grey.expand(3))
    assert ImageOps.pad(page, (1024, 1024), color=modes.PAD_COLOR).getpixel((512, offset_y)) == (0, 0, 0)


@pytest.mark.parametrize("side", [s for s in range(700, 1000) if (1024 - s) % 4 == 1][:3])
def test_pad_offset_where_the_half_rounds_down(side: int) -> None:
    assert modes.pad_offsets(side, 1024) == ((1024 - side) // 2, 0)


def test_pad_offsets_of_scaled_pages_match_imageops_pad() -> None:
    for width, height in [(1190, 1684), (612, 792), (3000, 1000), (1275, 1650), (333, 1001)]:
        page = Image.new("RGB", (width, height), (0, 0, 0))
        padded = ImageOps.pad(page, (1024, 1024), color=modes.PAD_COLOR)
        x, y = modes.pad_offsets(width, height)
        assert padded.getpixel((x, y)) == (0, 0, 0)
        assert x == 0 or padded.getpixel((x - 1, y)) == modes.PAD_COLOR
        assert y == 0 or padded.getpixel((x, y - 1)) == modes.PAD_COLOR


def test_transparency_is_composited_on_white_and_exif_turns_the_page() -> None:
    rgba = Image.new("RGBA", (400, 300), (0, 0, 0, 0))
    prepared = prepare_image(rgba, modes.MODES["base"])
    assert prepared.global_view[:, 512, 512].tolist() == [1.0, 1.0, 1.0]  # white, not black
    page = Image.new("RGB", (1024, 500), (0, 0, 0))
    exif = page.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view": upright, the page is 500 x 1024
    buffer = io.BytesIO()
    page.save(buffer, format="PNG", exif=exif)
    buffer.seek(0)
    turned = prepare_image(Image.open(buffer), modes.MODES["base"])
    grey = 127 / 255 * 2 - 1
    assert turned.global_view[0, 512, 100].item() == pytest.approx(grey)  # left margin: padding
    assert turned.global_view[0, 512, 512].item() == -1.0  # the black page, now portrait
    assert turned.global_view[0, 100, 512].item() == -1.0
