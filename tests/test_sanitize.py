"""Model HTML and links never reach a reader through the Markdown output, just as through the HTML output.

A page can make the model write anything, markup included. The checks render the Markdown the way a reader's
viewer would (CommonMark with raw HTML allowed, the most permissive setting) and inspect the resulting elements.
"""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from PIL import Image

from dsocr_cli.postprocess.grounding import parse_blocks
from dsocr_cli.postprocess.markdown import page_html, page_markdown
from dsocr_cli.postprocess.sanitize import safe_url, sanitize_markdown
from dsocr_cli.results import Page, PageResult
from dsocr_cli.writers.markdown import MarkdownWriter

markdown_it = pytest.importorskip("markdown_it")  # installed with rich, which dsocr depends on

ATTACKS = [
    "<script>alert(1)</script>",
    "<ScRiPt>alert(1)</sCrIpT>",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">click</a>',
    '<a href="jav&#x61;script:alert(1)">click</a>',
    "<svg onload=alert(1)>",
    "<iframe src=https://evil.example></iframe>",
    "<style>body{display:none}</style>",
    "<script\nsrc=https://evil.example/x.js>\n</script>",
    "- <div onclick=alert(1)>list item</div>",
    "<img src=x onerror=alert(1)//<b>",
    "<!-- hidden --><![CDATA[x]]>",
    "<javascript:alert(1)>",
    "[x](javascript:alert(1))",
    "[x](JaVaScRiPt:alert(1))",
    "[x](jav&#x61;script:alert(1))",
    "[x](java&Tab;script:alert(1))",
    "[x](<javascript:alert(1)>)",
    '[x]( javascript:alert(1) "title")',
    "![](javascript:alert(1))",
    "![chart](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+)",
    "[x](data:text/html,<script>alert(1)</script>)",
    "[ref link][r]\n\n[r]: javascript:alert(1)",
    "[x](<javascript:alert(1) <b>)",
    "<[x](javascript:0)script>alert(1)</script>",
]
SAFE_TAGS = {"p", "a", "img", "ul", "ol", "li", "em", "strong", "code", "h1", "h2", "table", "tbody", "tr", "td"}
SPAN_TABLE = (
    '<table border="1" onclick="steal()"><tr><td rowspan="2" style="color:red">Model</td><td colspan="2">BLEU'
    "<script>alert(1)</script></td></tr><tr><td>EN-DE</td><td>EN-FR <img src=x onerror=alert(1)></td></tr>"
    "<tr><td>Transformer (big)</td><td>28.4</td><td>41.8</td></tr></table>"
)
CLEAN_SPAN_TABLE = (
    '<table><tr><td rowspan="2">Model</td><td colspan="2">BLEU</td></tr><tr><td>EN-DE</td><td>EN-FR </td></tr>'
    "<tr><td>Transformer (big)</td><td>28.4</td><td>41.8</td></tr></table>"
)


class Elements(HTMLParser):
    """Every element a browser would build from some HTML, with its attributes."""

    def __init__(self, html_text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, dict[str, str]]] = []
        self.feed(html_text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, {name: value or "" for name, value in attrs}))


def rendered(markdown: str) -> str:
    return markdown_it.MarkdownIt("commonmark", {"html": True}).render(markdown)


def assert_harmless(markdown: str) -> None:
    """Rendered, the Markdown builds only ordinary elements: no script, handler or unsafe URL."""
    for tag, attrs in Elements(rendered(markdown)).found:
        assert tag in SAFE_TAGS, (tag, markdown)
        assert not [name for name in attrs if name.startswith("on") or name == "style"], (tag, attrs, markdown)
        for name in ("href", "src"):
            if name in attrs:
                assert safe_url(attrs[name]), (tag, attrs, markdown)


def page_image() -> Image.Image:
    return Image.new("RGB", (400, 560), "white")


def grounded(text: str, label: str = "text") -> str:
    return f"<|ref|>{label}<|/ref|><|det|>[[50, 50, 950, 100]]<|/det|>\n{text}\n"


@pytest.mark.parametrize("attack", ATTACKS)
def test_model_html_and_unsafe_links_do_not_survive_in_page_markdown(attack: str) -> None:
    raw = grounded(f"Before {attack} after.") + grounded(attack)

    markdown = page_markdown(parse_blocks(raw), page_image(), 1, "doc_images").text

    assert_harmless(markdown)
    assert "Before" in markdown and "after." in markdown
    lowered = markdown.lower()
    for raw_markup in ("<script", "<img", "<svg", "<iframe", "<style", "<a ", "<div", "<!", "<javascript"):
        assert raw_markup not in lowered, (raw_markup, markdown)
    assert "](javascript" not in lowered and "](data:" not in lowered and "]: javascript" not in lowered


def test_escaped_markup_shows_as_the_text_the_page_had_and_unsafe_links_keep_their_text() -> None:
    markdown = sanitize_markdown("Use <script>alert(1)</script> to [open the report](javascript:alert(1)).")

    assert markdown == "Use &lt;script>alert(1)&lt;/script> to open the report."
    assert rendered(markdown) == "<p>Use &lt;script&gt;alert(1)&lt;/script&gt; to open the report.</p>\n"


def test_markdown_writer_render_is_harmless_for_every_attack_at_once() -> None:
    raw = "".join(grounded(attack) for attack in ATTACKS) + grounded(SPAN_TABLE, "table")
    result = PageResult(
        page=Page("evil.pdf", 1, page_image()), text=raw, mode="tiny", prompt="", vision_tokens=0,
        generated_tokens=1, finished=True, seconds=0.0,
    )

    document = MarkdownWriter(page_separator="").render("evil.pdf", [result])

    assert_harmless(document)
    assert CLEAN_SPAN_TABLE in document


def test_html_table_keeps_its_cells_and_spans_and_loses_everything_else() -> None:
    for tables in ("markdown", "html"):  # a spanned table stays HTML either way
        markdown = page_markdown(parse_blocks(grounded(SPAN_TABLE, "table")), page_image(), 1, "x", tables).text

        assert markdown == CLEAN_SPAN_TABLE
        cells = [(tag, attrs) for tag, attrs in Elements(rendered(markdown)).found if tag == "td"]
        assert cells[:2] == [("td", {"rowspan": "2"}), ("td", {"colspan": "2"})] and len(cells) == 7


def test_html_and_markdown_sanitise_a_table_the_same_way() -> None:
    blocks = parse_blocks(grounded(SPAN_TABLE, "table"))

    assert page_html(blocks, page_image()) == page_markdown(blocks, page_image(), 1, "x").text == CLEAN_SPAN_TABLE


def test_a_blank_line_inside_a_table_cell_cannot_end_the_html_block() -> None:
    table = "<table><tr><td>a\n\n[x](javascript:alert(1)) <b>bold</b>\n\n<img src=x onerror=alert(1)></td></tr></table>"

    markdown = page_markdown(parse_blocks(grounded(table, "table")), page_image(), 1, "x", "html").text

    assert "\n\n" not in markdown
    assert_harmless(markdown)
    assert Elements(rendered(markdown)).found == [("table", {}), ("tr", {}), ("td", {})]


def test_markup_in_a_pipe_table_cell_is_escaped_too() -> None:
    table = (
        "<table><tr><td>Code</td><td>Link</td></tr>"
        "<tr><td>&lt;script&gt;alert(1)&lt;/script&gt;</td><td>[x](javascript:alert(1))</td></tr></table>"
    )

    markdown = page_markdown(parse_blocks(grounded(table, "table")), page_image(), 1, "x").text

    assert markdown.startswith("| Code | Link |\n| --- | --- |\n")
    assert "&lt;script>alert(1)&lt;/script>" in markdown
    assert_harmless(markdown)


def test_ordinary_text_math_and_safe_links_come_through_unchanged() -> None:
    text = (
        "# Results\n\n"
        "For \\(0<x<1\\) we have \\(f(x) < g(x)\\), and $a<b$ whenever a < b; see [the paper]"
        "(https://arxiv.org/abs/1706.03762) or [mail us](mailto:ocr@example.org) and [§2](#section-2).\n\n"
        "\\[\n\\sum_{i<j} x_i \\le \\frac{1}{2}\\left< u, v \\right>\n\\]\n\n"
        "Footnote [1]: values in € & ¥; arrows -> and <- and <= stay."
    )

    assert sanitize_markdown(text) == text
    markdown = page_markdown(parse_blocks(grounded(text)), page_image(), 1, "x").text
    assert markdown == text


def test_our_own_figure_links_survive() -> None:
    raw = "<|ref|>image<|/ref|><|det|>[[10, 10, 300, 300]]<|/det|>\n"

    page = page_markdown(parse_blocks(raw), page_image(), 1, "annual report_images")

    assert page.text == "![](<annual report_images/p001_1.png>)"
    figure = ("img", {"src": "annual%20report_images/p001_1.png", "alt": ""})
    assert Elements(rendered(page.text)).found == [("p", {}), figure]


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("https://example.org/a?b=c", True),
        ("mailto:a@example.org", True),
        ("images/p001_1.png", True),
        ("#top", True),
        ("javascript:alert(1)", False),
        ("JAVASCRIPT:alert(1)", False),
        ("jav&#x61;script:alert(1)", False),
        ("&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;:alert(1)", False),
        ("java\tscript:alert(1)", False),
        ("\x01javascript:alert(1)", False),
        ("java\\script:alert(1)", True),  # a backslash before a letter is not an escape: no scheme
        ("vbscript:msgbox(1)", False),
        ("data:text/html;base64,PHNjcmlwdD4=", False),
        ("file:///etc/passwd", False),
    ],
)
def test_safe_url_reads_the_scheme_as_a_browser_would(url: str, safe: bool) -> None:
    assert safe_url(url) is safe
