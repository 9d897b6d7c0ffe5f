"""``dsocr compress``'s library: the metrics on known strings, the Fox-style buckets on synthetic results, page
rendering and its geometry, and the vision-token counts against what each family's model builds."""

from __future__ import annotations

import random

import pytest

from dsocr_cli.compress.metrics import (
    FOX_REFERENCE,
    Measurement,
    edit_distance,
    fox_precision,
    fox_table,
    levenshtein,
    words,
)
from dsocr_cli.compress.render import PAGE_SIZES, Layout, parse_page_size, render_text
from dsocr_cli.errors import UsageError
from tests.conftest import Family

# ---------------------------------------------------------------- metrics


def table_distance(a: str, b: str) -> int:
    """The textbook dynamic-programming Levenshtein distance, to check the bit-parallel one against."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


TRUTH = "the quick brown fox jumps over the lazy dog"
"""9 words, 8 distinct (``the`` twice), 43 characters."""


def test_identical_text_is_full_precision_and_no_distance() -> None:
    assert fox_precision(TRUTH, TRUTH) == 1.0
    assert edit_distance(TRUTH, TRUTH) == 0.0


def test_one_substituted_word_and_one_substituted_character() -> None:
    output = TRUTH.replace("fox", "cat")
    assert fox_precision(TRUTH, output) == 7 / 8  # 'fox' of the 8 distinct words is missing
    assert edit_distance(TRUTH, output) == 3 / 43
    one_char = TRUTH.replace("fox", "fix")
    assert fox_precision(TRUTH, one_char) == 7 / 8
    assert edit_distance(TRUTH, one_char) == 1 / 43


def test_truncated_output_loses_precision_for_the_words_it_dropped() -> None:
    output = "the quick brown fox"  # 4 of the 8 distinct words, 24 characters deleted
    assert fox_precision(TRUTH, output) == 4 / 8
    assert edit_distance(TRUTH, output) == 24 / 43
    assert fox_precision(TRUTH, "") == 0.0
    assert edit_distance(TRUTH, "") == 1.0


def test_reordered_words_keep_precision_but_not_edit_distance() -> None:
    output = "over the lazy dog the quick brown fox jumps"
    assert fox_precision(TRUTH, output) == 1.0
    assert edit_distance(TRUTH, output) == table_distance(TRUTH, output) / 43
    assert 0 < edit_distance(TRUTH, output) < 1


def test_precision_counts_distinct_ground_truth_words_and_ignores_extra_output() -> None:
    assert fox_precision("a a a b", "a") == 1 / 2
    assert fox_precision(TRUTH, TRUTH + " and some more words the model made up") == 1.0
    assert fox_precision("Fox, dog.", "fox dog") == 0.0  # case and punctuation are kept, as Fox does
    assert fox_precision("", "anything") is None and fox_precision(" \n", "") is None


def test_edit_distance_is_over_the_longer_text_in_characters() -> None:
    assert edit_distance("", "") == 0.0
    assert edit_distance("abc", "abcdef") == 3 / 6
    assert edit_distance("中文字符", "中文") == 2 / 4  # code points, not bytes


def test_chinese_text_is_cut_into_characters() -> None:
    assert words("中文 OCR 测试") == ["中", "文", "OCR", "测", "试"]
    assert fox_precision("中文测试", "中文") == 2 / 4


def test_bit_parallel_levenshtein_equals_the_table_on_random_strings() -> None:
    rng = random.Random(7)
    alphabet = "ab c\n中é"
    for _ in range(500):
        a = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        b = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        assert levenshtein(a, b) == table_distance(a, b), (a, b)
    long = "x" * 200 + "y" * 50
    assert levenshtein(long, long[::-1]) == table_distance(long, long[::-1])


def test_fox_table_buckets_synthetic_results() -> None:
    rows = [
        ("p1", Measurement(650, "tiny", 64, 0.9, 0.1)),
        ("p1", Measurement(650, "small", 100, 1.0, 0.0)),
        ("p2", Measurement(699, "tiny", 64, 0.7, 0.3)),
        ("p2", Measurement(699, "small", 100, 0.8, None)),
        ("p3", Measurement(700, "tiny", 64, None, None)),  # decoded, but its ground truth had no words
        ("p4", Measurement(1250, "small", 100, 0.5, 0.5)),
    ]
    table = fox_table(rows, 100, ["tiny", "small"])
    assert [(b.low, b.high, b.pages) for b in table] == [(600, 700, 2), (700, 800, 1), (1200, 1300, 1)]
    tiny, small = table[0].cells["tiny"], table[0].cells["small"]
    assert (tiny.pages, tiny.vision_tokens, tiny.precision, tiny.edit_distance) == (2, 64, 0.8, 0.2)
    assert tiny.ratio == (650 / 64 + 699 / 64) / 2
    assert (small.precision, small.edit_distance, small.ratio) == (0.9, 0.0, (6.5 + 6.99) / 2)
    assert table[1].cells["tiny"].precision is None and "small" not in table[1].cells
    assert list(table[2].cells) == ["small"] and table[2].cells["small"].ratio == 12.5
    with pytest.raises(ValueError):
        fox_table(rows, 0, ["tiny"])


def test_the_paper_reference_holds_the_figures_the_issue_quotes() -> None:
    cells = {(p.low, p.vision_tokens): (p.precision, p.ratio) for p in FOX_REFERENCE}
    assert cells[(600, 64)] == (0.965, 10.5) and cells[(600, 100)] == (0.985, 6.7)
    assert cells[(1200, 64)] == (0.591, 19.7) and cells[(1200, 100)] == (0.871, 12.6)
    assert len(FOX_REFERENCE) == 4  # only the cells the issue quotes from the paper


# ---------------------------------------------------------------- rendering


def ink_box(image) -> tuple[int, int, int, int]:
    """The bounding box of everything not white."""
    box = image.convert("L").point(lambda v: 255 - v).getbbox()
    assert box is not None
    return box


PROSE = " ".join(f"Sentence {n} of the test text, with a few ordinary words in it." for n in range(400))


def test_page_sizes_by_name_and_in_units() -> None:
    assert parse_page_size("A4") == PAGE_SIZES["a4"] and parse_page_size("letter") == (612.0, 792.0)
    assert parse_page_size("612x792") == (612.0, 792.0)
    width, height = parse_page_size("210x297mm")
    assert (round(width, 1), round(height, 1)) == (595.3, 841.9)
    assert parse_page_size("8.5x11in") == (612.0, 792.0)
    for bad in ("A7", "12", "0x100", "axb"):
        with pytest.raises(UsageError):
            parse_page_size(bad)
    with pytest.raises(UsageError, match="no room"):
        Layout(page_size=(100, 100), margin=60).check()


def test_pages_are_filled_in_reading_order_and_hold_the_text_they_show() -> None:
    rendered = render_text(PROSE, "prose.txt", Layout(dpi=72))
    pages = rendered.pages
    assert len(pages) > 1 and rendered.missing_glyphs == 0
    assert [p.number for p in pages] == list(range(1, len(pages) + 1))
    assert all(p.image.size == (596, 842) and p.image.mode == "RGB" for p in pages)  # A4 at 72 dpi, rounded up
    assert pages[0].text.startswith("Sentence 0 of")
    assert " ".join(" ".join(p.text for p in pages).split()) == " ".join(PROSE.split())
    bottoms = [ink_box(p.image)[3] for p in pages]  # 72 dpi: 1 px per point
    assert all(842 - 72 - 11 * 1.2 <= bottom <= 842 - 72 for bottom in bottoms[:-1])  # full pages, then the rest
    assert all(ink_box(p.image)[:2] >= (72, 72) for p in pages)  # inside the margins
    assert pages[0].image.getextrema() == ((0, 255),) * 3  # black text on white


def test_pixel_size_follows_page_size_and_dpi() -> None:
    assert render_text("x", "x", Layout()).pages[0].image.size == (1191, 1684)  # A4 at 144 dpi
    letter = Layout(page_size=parse_page_size("letter"), dpi=100)
    assert render_text("x", "x", letter).pages[0].image.size == (850, 1100)


def test_paragraphs_reflow_unless_lines_are_kept() -> None:
    text = "one\ntwo\n\nthree"
    reflowed = render_text(text, "t", Layout(dpi=72)).pages[0]
    kept = render_text(text, "t", Layout(dpi=72, keep_lines=True)).pages[0]
    assert reflowed.text == kept.text == text
    # Reflowed, 'one two' share a line: the inked area is shorter than with every line kept.
    assert ink_box(reflowed.image)[3] < ink_box(kept.image)[3]


def test_cjk_text_renders_with_the_fallback_font_and_wraps_between_characters() -> None:
    text = "光学压缩" * 200
    rendered = render_text(text, "zh.txt", Layout(dpi=72))
    assert rendered.missing_glyphs == 0
    assert "".join(p.text for p in rendered.pages) == text
    page = rendered.pages[0].image.convert("L")
    assert page.getextrema()[0] < 128  # glyphs were drawn, not empty boxes alone
    assert render_text("\U0001d11e", "music", Layout(dpi=72)).missing_glyphs == 1  # neither font has it


def test_a_missing_font_file_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--font 'nofont.ttf'"):
        render_text("x", "x", Layout(font="nofont.ttf"))


# ---------------------------------------------------------------- vision tokens: the model's own count

SIZES = ((1191, 1684), (850, 1100), (1684, 1191), (400, 300), (600, 600))
"""A4 portrait at 144 dpi, letter at 100, A4 landscape, small pages below one tile."""


def test_each_modes_count_is_the_number_of_image_positions_the_model_builds(family: Family, family_runner) -> None:
    from PIL import Image

    image_id = family_runner.loaded.token_ids.image
    prompt = family_runner.resolve_prompt("free")
    for width, height in SIZES:
        page = Image.new("RGB", (width, height), "white")
        for name, mode in family.family.modes.items():
            counted = mode.image_tokens(width, height)
            prepared = family_runner.prepare_image(page, name)
            request = family_runner.request(prepared, prompt)
            assert counted == prepared.num_image_tokens == request.input_ids.count(image_id), (name, width, height)


def test_the_lab_reaches_families_through_the_protocol_and_never_imports_the_cli() -> None:
    """``dsocr_cli.compress`` sits beside ``convert``: on the engine, below the CLI (``tests/test_layers.py``)."""
    from tests.test_layers import FAMILY_PACKAGES, PACKAGE, violations

    assert not violations(PACKAGE / "compress", [*FAMILY_PACKAGES, "dsocr_cli.cli", "dsocr_cli.server"])
