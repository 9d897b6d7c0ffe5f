"""Post-processing of real-shaped DeepSeek-OCR output: what a user finds in the Markdown, text and HTML of a page."""

from __future__ import annotations

import re

from PIL import Image, ImageDraw

from dsocr_cli.postprocess.grounding import Block, box_to_pixels, crop_box, parse_blocks
from dsocr_cli.postprocess.markdown import page_html, page_markdown, page_text
from dsocr_cli.postprocess.sanitize import sanitize_table
from dsocr_cli.postprocess.tables import split_tables, table_to_markdown, table_to_text

GROUNDED_PAGE = r"""<|ref|>title<|/ref|><|det|>[[88, 52, 910, 96]]<|/det|>
# Attention Is All You Need

<|ref|>text<|/ref|><|det|>[[88, 120, 910, 210]]<|/det|>
We propose the Transformer, with \(d_{\text{model}} = 512\) and cost \(O(n^2 \cdot d)\).

<|ref|>sub_title<|/ref|><|det|>[[88, 230, 400, 255]]<|/det|>
## 3.2 Scaled Dot-Product Attention

<|ref|>equation<|/ref|><|det|>[[300, 270, 700, 320]]<|/det|>
\[
\mathrm{Attention}(Q, K, V) \coloneqq \mathrm{softmax}\left(\frac{Q K^{T}}{s}\right) V, \quad s \eqqcolon \sqrt{d_k}
\]

<|ref|>table_caption<|/ref|><|det|>[[88, 340, 910, 360]]<|/det|>
<center>Table 1: Complexity per layer | path length</center>

<|ref|>table<|/ref|><|det|>[[88, 365, 910, 480]]<|/det|>
<table><tr><td>Layer Type</td><td>Complexity per Layer</td><td>Max Path | Length</td></tr><tr><td>Self-Attention</td><td>\(O(n^2 \cdot d)\)</td><td>\(O(1)\)</td></tr><tr><td>Recurrent</td><td>\(O(n \cdot d^2)\)</td><td>\(O(n)\)</td></tr></table>

<|ref|>image<|/ref|><|det|>[[100, 500, 500, 800]]<|/det|>


<|ref|>image_caption<|/ref|><|det|>[[100, 810, 500, 840]]<|/det|>
<center>Figure 1: The Transformer - model architecture.</center>
"""

SPAN_TABLE = (
    '<table><tr><td rowspan="2">Model</td><td colspan="2">BLEU</td></tr>'
    "<tr><td>EN-DE</td><td>EN-FR</td></tr>"
    "<tr><td>Transformer (big)</td><td>28.4</td><td>41.8</td></tr></table>"
)

NESTED_TABLE = (
    "<table><tr><td>Setting</td><td>Values</td></tr>"
    "<tr><td>base</td><td><table><tr><td>N</td><td>6</td></tr></table></td></tr></table>"
)

RUNAWAY_PAGE = (
    "<|ref|>text<|/ref|><|det|>[[60, 100, 940, 180]]<|/det|>\nThe results are listed below.\n\n"
    "<|ref|>text<|/ref|><|det|>[[60, 200, 940]]<|/det|>\nA box with three numbers is broken.\n\n"
    "<|ref|>table<|/ref|><|det|>[[60, 300, 940, 900]]<|/det|>\n<table><tr><td>1</td><td>2</td></tr>"
    + "<tr><td>1</td><td>2</td></tr>" * 40
    + "<tr><td>1</td><t"
)

FREE_OCR = """# 岳阳楼记

庆历四年春，滕子京谪守巴陵郡。越明年，政通人和，百废具兴。



Energy is \\(E = mc^2\\) and

<table><tr><td>a</td><td>b</td></tr><tr><td>1</td><td>2</td></tr></table>
"""

LOCATE_ANSWER = "<|ref|>先天下之忧而忧<|/ref|><|det|>[[120, 340, 880, 392]]<|/det|>"


def page_image(width: int = 400, height: int = 560) -> Image.Image:
    """A page whose pixels encode their position, so a crop shows which region it came from."""
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    for y in range(0, height, 20):
        draw.rectangle((0, y, width, y + 9), fill=(y % 256, 80, 160))
    return image


def test_grounded_page_splits_into_labelled_blocks_with_boxes() -> None:
    blocks = parse_blocks(GROUNDED_PAGE)

    assert [block.label for block in blocks] == [
        "title", "text", "sub_title", "equation", "table_caption", "table", "image", "image_caption",
    ]
    assert blocks[0] == Block("title", "# Attention Is All You Need", [(88, 52, 910, 96)])
    assert blocks[6].text == ""
    assert all("<|" not in block.text for block in blocks)


def test_markdown_has_no_grounding_tags_and_keeps_headings_and_math() -> None:
    markdown = page_markdown(parse_blocks(GROUNDED_PAGE), page_image(), 1, "paper_images").text

    assert "<|" not in markdown and "<center>" not in markdown
    assert markdown.startswith("# Attention Is All You Need\n\n")
    assert "## 3.2 Scaled Dot-Product Attention" in markdown
    assert r"\(d_{\text{model}} = 512\)" in markdown
    assert "\\[\n\\mathrm{Attention}(Q, K, V) := " in markdown
    assert r"s =: \sqrt{d_k}" in markdown
    assert "Table 1: Complexity per layer | path length" in markdown
    assert "\n\n\n" not in markdown


def test_simple_table_becomes_pipe_table_with_escaped_pipes() -> None:
    markdown = page_markdown(parse_blocks(GROUNDED_PAGE), page_image(), 1, "paper_images").text

    assert "| Layer Type | Complexity per Layer | Max Path \\| Length |\n| --- | --- | --- |\n" in markdown
    assert "| Recurrent | \\(O(n \\cdot d^2)\\) | \\(O(n)\\) |" in markdown
    assert "<table>" not in markdown


def test_tables_html_option_keeps_the_model_table_html() -> None:
    blocks = parse_blocks(GROUNDED_PAGE)

    markdown = page_markdown(blocks, page_image(), 1, "paper_images", tables="html").text

    assert blocks[5].text in markdown
    assert "| --- |" not in markdown


def test_figure_becomes_numbered_link_and_crop_of_its_box() -> None:
    image = page_image()

    page = page_markdown(parse_blocks(GROUNDED_PAGE), image, 7, "paper_images")

    assert "![](paper_images/p007_1.png)\n\nFigure 1: The Transformer - model architecture." in page.text
    [(name, crop)] = page.images
    assert name == "paper_images/p007_1.png"
    x1, y1, x2, y2 = int(100 / 999 * 400), int(500 / 999 * 560), int(500 / 999 * 400), int(800 / 999 * 560)
    assert crop.size == (x2 - x1, y2 - y1)
    assert crop.getpixel((0, 0)) == image.getpixel((x1, y1))


def test_every_figure_box_on_a_page_gets_its_own_number() -> None:
    raw = (
        "<|ref|>image<|/ref|><|det|>[[10, 10, 300, 300], [400, 10, 700, 300]]<|/det|>\n\n"
        "<|ref|>text<|/ref|><|det|>[[10, 320, 990, 400]]<|/det|>\nTwo panels above, one below.\n\n"
        "<|ref|>image<|/ref|><|det|>[[10, 420, 990, 900]]<|/det|>\n"
    )

    page = page_markdown(parse_blocks(raw), page_image(), 12, "doc_images")

    assert [name for name, _ in page.images] == [f"doc_images/p012_{k}.png" for k in (1, 2, 3)]
    assert re.findall(r"!\[\]\((.*?)\)", page.text) == [name for name, _ in page.images]


def test_figure_link_with_spaces_in_folder_name_still_parses() -> None:
    raw = "<|ref|>image<|/ref|><|det|>[[10, 10, 300, 300]]<|/det|>\n"

    page = page_markdown(parse_blocks(raw), page_image(), 1, "annual report_images")

    assert page.text == "![](<annual report_images/p001_1.png>)"


def test_figure_boxes_at_and_beyond_page_edges_are_clamped() -> None:
    raw = (
        "<|ref|>image<|/ref|><|det|>[[0, 0, 999, 120]]<|/det|>\n\n"
        "<|ref|>image<|/ref|><|det|>[[-15, 880, 1020, 1200]]<|/det|>\n\n"
        "<|ref|>image<|/ref|><|det|>[[998, 998, 1500, 1500]]<|/det|>\n"
    )
    image = page_image(400, 560)

    blocks = parse_blocks(raw)
    page = page_markdown(blocks, image, 1, "x")

    assert [block.boxes for block in blocks] == [[(0, 0, 999, 120)], [(0, 880, 999, 999)], [(998, 998, 999, 999)]]
    assert box_to_pixels(blocks[1].boxes[0], 400, 560) == (0, int(880 / 999 * 560), 400, 560)
    sizes = [crop.size for _, crop in page.images]
    assert sizes[0] == (400, int(120 / 999 * 560))
    assert sizes[1] == (400, 560 - int(880 / 999 * 560))
    assert all(w >= 1 and h >= 1 for w, h in sizes)


def test_sliver_box_still_crops_one_pixel() -> None:
    assert crop_box(page_image(400, 560), (999, 999, 999, 999)).size == (1, 1)


def test_table_with_spans_stays_html_in_markdown() -> None:
    raw = f"<|ref|>table<|/ref|><|det|>[[50, 100, 950, 300]]<|/det|>\n{SPAN_TABLE}\n"

    markdown = page_markdown(parse_blocks(raw), page_image(), 1, "x").text

    assert markdown == SPAN_TABLE
    assert table_to_markdown(SPAN_TABLE) is None


def test_nested_table_stays_html() -> None:
    assert table_to_markdown(NESTED_TABLE) is None
    assert split_tables(f"Before {NESTED_TABLE} after") == [
        ("Before ", False), (NESTED_TABLE, True), (" after", False),
    ]


def test_table_with_line_breaks_in_a_cell_stays_html() -> None:
    table = (
        "<table><tr><td>Name</td><td>Address</td></tr>"
        "<tr><td>Ann</td><td>1 Main St<br>Springfield</td></tr></table>"
    )

    assert table_to_markdown(table) is None


def test_truncated_runaway_page_keeps_text_and_drops_broken_boxes() -> None:
    blocks = parse_blocks(RUNAWAY_PAGE)

    assert [(block.label, block.boxes) for block in blocks] == [
        ("text", [(60, 100, 940, 180)]),
        ("text", []),
        ("table", [(60, 300, 940, 900)]),
    ]
    assert blocks[1].text == "A box with three numbers is broken."
    markdown = page_markdown(blocks, page_image(), 1, "x").text
    assert markdown.startswith("The results are listed below.\n\nA box with three numbers is broken.\n\n<table>")
    assert markdown.endswith("<tr><td>1</td><td>2</td></tr><tr><td>1</td></tr></table>")


def test_output_cut_inside_a_box_list_keeps_everything_before_it() -> None:
    raw = GROUNDED_PAGE + "\n<|ref|>text<|/ref|><|det|>[[60, 910, 940, 95"

    blocks = parse_blocks(raw)

    assert parse_blocks(GROUNDED_PAGE + "\n<|ref|>tab") == parse_blocks(GROUNDED_PAGE)
    assert blocks[:-1] == parse_blocks(GROUNDED_PAGE)
    assert blocks[-1] == Block("text", "", [])
    assert page_markdown(blocks, page_image(), 1, "x").text == page_markdown(blocks[:-1], page_image(), 1, "x").text


def test_unclosed_det_list_keeps_the_content_after_it() -> None:
    raw = "<|ref|>text<|/ref|><|det|>[[10, 20, 990, 80]]\n2024 revenue grew by 12%."

    [block] = parse_blocks(raw)

    assert block == Block("text", "2024 revenue grew by 12%.", [(10, 20, 990, 80)])


def test_stray_grounding_tags_never_reach_the_text() -> None:
    raw = "Intro <|det|>[[1, 2, 3, 4]]<|/det|>line.\n\n<|ref|>text<|/ref|><|det|>[[5, 5, 900, 60]]<|/det|>\nBody <|/ref|>end."

    blocks = parse_blocks(raw)

    assert [block.text for block in blocks] == ["Intro line.", "Body end."]


def test_free_ocr_output_is_one_untagged_block_with_collapsed_blank_lines() -> None:
    blocks = parse_blocks(FREE_OCR)

    assert blocks == [Block(None, FREE_OCR.strip(), [])]
    markdown = page_markdown(blocks, page_image(), 1, "x").text
    assert markdown.startswith("# 岳阳楼记\n\n庆历四年春，滕子京谪守巴陵郡。越明年，政通人和，百废具兴。\n\nEnergy")
    assert "| a | b |\n| --- | --- |\n| 1 | 2 |" in markdown
    assert "\n\n\n" not in markdown


def test_locate_answer_gives_the_query_and_its_box() -> None:
    blocks = parse_blocks(LOCATE_ANSWER)

    assert blocks == [Block("先天下之忧而忧", "", [(120, 340, 880, 392)])]
    assert box_to_pixels(blocks[0].boxes[0], 1000, 2000) == (120, 680, 880, 784)


def test_unknown_label_is_kept_as_text() -> None:
    raw = "<|ref|>footnote<|/ref|><|det|>[[50, 950, 950, 990]]<|/det|>\n* Equal contribution.\n"

    assert page_markdown(parse_blocks(raw), page_image(), 1, "x").text == "* Equal contribution."


def test_plain_text_has_no_markup_and_tab_separated_tables() -> None:
    text = page_text(parse_blocks(GROUNDED_PAGE))

    assert text.startswith("Attention Is All You Need\n\n")
    assert "\n3.2 Scaled Dot-Product Attention\n" in text
    assert "Layer Type\tComplexity per Layer\tMax Path | Length\nSelf-Attention\t" in text
    assert "\\mathrm{Attention}(Q, K, V) := " in text
    for markup in ("#", "<", "![", "| ---"):
        assert markup not in text


def test_plain_text_keeps_spanned_columns_aligned() -> None:
    assert table_to_text(SPAN_TABLE) == "Model\tBLEU\t\n\tEN-DE\tEN-FR\nTransformer (big)\t28.4\t41.8"


def test_html_page_has_headings_paragraphs_tables_and_embedded_figures() -> None:
    fragment = page_html(parse_blocks(GROUNDED_PAGE), page_image())

    assert "<h1>Attention Is All You Need</h1>" in fragment
    assert "<h2>3.2 Scaled Dot-Product Attention</h2>" in fragment
    assert '<p class="equation">\\[\n\\mathrm{Attention}(Q, K, V) := ' in fragment
    assert "<table><tr><td>Layer Type</td>" in fragment
    assert re.search(r'<figure><img src="data:image/png;base64,[A-Za-z0-9+/=]+" alt=""></figure>', fragment)
    assert '<p class="image_caption">Figure 1: The Transformer - model architecture.</p>' in fragment


def test_html_escapes_model_text_and_sanitises_table_html() -> None:
    raw = (
        "<|ref|>text<|/ref|><|det|>[[50, 50, 950, 100]]<|/det|>\nIf a < b & <script>alert(1)</script>\n\n"
        "<|ref|>table<|/ref|><|det|>[[50, 120, 950, 400]]<|/det|>\n"
        '<table border="1" onclick="steal()"><tr><td colspan="2" style="color:red"><img src=x onerror=alert(1)>'
        "<b>Total</b> &amp; more</td></tr><tr><td rowspan=3>x</td><td>y</td></tr></table>\n"
    )

    fragment = page_html(parse_blocks(raw), page_image())

    assert "<p class=\"text\">If a &lt; b &amp; &lt;script&gt;alert(1)&lt;/script&gt;</p>" in fragment
    assert (
        '<table><tr><td colspan="2">Total &amp; more</td></tr><tr><td rowspan="3">x</td><td>y</td></tr></table>'
        in fragment
    )
    for unsafe in ("onclick", "onerror", "style=", "<img", "<b>", "<script"):
        assert unsafe not in fragment


def test_sanitised_table_from_a_cut_off_page_is_balanced() -> None:
    assert sanitize_table("<table><tr><td>1</td><td>2 <") == "<table><tr><td>1</td><td>2 </td></tr></table>"
