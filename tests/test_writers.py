"""Writers: the files a user gets for a two-page document, and that no half-written file is ever left behind."""

from __future__ import annotations

import json
from pathlib import Path

import pymupdf
import pytest
from PIL import Image

from dsocr_cli.errors import ExitCode, OutputError
from dsocr_cli.results import Page, PageResult
from dsocr_cli.testing.images import make_page_image
from dsocr_cli.writers import FORMATS
from dsocr_cli.writers.atomic import (
    LOCK_NAME,
    atomic_write_text,
    atomic_writer,
    directory_lock,
)
from dsocr_cli.writers.base import StringWriter
from dsocr_cli.writers.html import HtmlWriter
from dsocr_cli.writers.json import JsonWriter
from dsocr_cli.writers.layout_pdf import LayoutPdfWriter, label_color
from dsocr_cli.writers.markdown import MarkdownWriter
from dsocr_cli.writers.raw import RawWriter
from dsocr_cli.writers.text import TextWriter

PAGE_1 = r"""<|ref|>title<|/ref|><|det|>[[80, 40, 920, 90]]<|/det|>
# Quarterly Report

<|ref|>text<|/ref|><|det|>[[80, 110, 920, 200]]<|/det|>
Revenue grew by 12% while costs fell, so \(m = \frac{r - c}{r}\) improved.

<|ref|>table<|/ref|><|det|>[[80, 220, 920, 400]]<|/det|>
<table><tr><td>Quarter</td><td>Revenue</td></tr><tr><td>Q1</td><td>1.2</td></tr><tr><td>Q2</td><td>1.5</td></tr></table>

<|ref|>image<|/ref|><|det|>[[80, 420, 600, 800]]<|/det|>


<|ref|>image_caption<|/ref|><|det|>[[80, 810, 600, 840]]<|/det|>
<center>Figure 1: Revenue by region.</center>
"""

PAGE_2 = r"""<|ref|>sub_title<|/ref|><|det|>[[80, 40, 920, 80]]<|/det|>
## Outlook

<|ref|>equation<|/ref|><|det|>[[300, 100, 700, 150]]<|/det|>
\[
g \coloneqq \frac{R_{2}}{R_{1}} - 1
\]

<|ref|>image<|/ref|><|det|>[[-20, 700, 1010, 1040]]<|/det|>
"""


def page_result(number: int, text: str, size: tuple[int, int] = (300, 420), finished: bool = True) -> PageResult:
    page = Page(source="report.pdf", number=number, image=make_page_image(*size, seed=number))
    return PageResult(
        page=page, text=text, mode="gundam", prompt="<image>\n<|grounding|>Convert the document to markdown.",
        vision_tokens=273, generated_tokens=412, finished=finished, seconds=1.23456,
    )


@pytest.fixture
def document() -> list[PageResult]:
    return [page_result(1, PAGE_1), page_result(2, PAGE_2, finished=False)]


def files_under(directory: Path) -> set[str]:
    return {str(path.relative_to(directory)) for path in directory.rglob("*")}


def test_markdown_file_has_page_comments_and_figures_saved_beside_it(
    tmp_path: Path, document: list[PageResult]
) -> None:
    target = tmp_path / "out" / "report.md"

    written = MarkdownWriter().write("report.pdf", document, target)

    markdown = target.read_text(encoding="utf-8")
    assert markdown.startswith("<!-- page 1 -->\n\n# Quarterly Report\n\n")
    assert "\n\n<!-- page 2 -->\n\n## Outlook\n\n\\[\ng := \\frac{R_{2}}{R_{1}} - 1\n\\]" in markdown
    assert "![](report_images/p001_1.png)\n\nFigure 1: Revenue by region." in markdown
    assert "![](report_images/p002_1.png)" in markdown
    assert "| Quarter | Revenue |\n| --- | --- |\n| Q1 | 1.2 |" in markdown
    assert written == [target.parent / "report_images/p001_1.png", target.parent / "report_images/p002_1.png", target]
    with Image.open(target.parent / "report_images/p002_1.png") as figure:
        assert figure.format == "PNG"
        assert figure.size == (300, 420 - int(700 / 999 * 420))
    assert files_under(tmp_path / "out") == {
        "report.md", "report_images", "report_images/p001_1.png", "report_images/p002_1.png",
    }


def test_markdown_page_separator_is_configurable(document: list[PageResult]) -> None:
    markdown = MarkdownWriter(page_separator="---", tables="html").render("report.pdf", document)

    assert markdown.startswith("---\n\n# Quarterly Report")
    assert "\n\n---\n\n## Outlook" in markdown
    assert "<table><tr><td>Quarter</td>" in markdown


def test_markdown_without_page_separator_just_joins_pages(document: list[PageResult]) -> None:
    markdown = MarkdownWriter(page_separator="").render("report.pdf", document)

    assert markdown.startswith("# Quarterly Report")
    assert "<!--" not in markdown


def test_html_is_one_standalone_document_with_a_section_per_page(document: list[PageResult]) -> None:
    page = HtmlWriter().render("Q3 <draft>.pdf", document)

    assert page.startswith("<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">")
    assert "<title>Q3 &lt;draft&gt;.pdf</title>" in page
    assert page.index('<section class="page" id="page-1">') < page.index('<section class="page" id="page-2">')
    assert "<h1>Quarterly Report</h1>" in page and "<h2>Outlook</h2>" in page
    assert page.count('<img src="data:image/png;base64,') == 2
    assert "<script" not in page
    assert page.endswith("</body>\n</html>\n")


def test_text_pages_are_separated_by_form_feed(document: list[PageResult]) -> None:
    text = TextWriter().render("report.pdf", document)

    first, second = text.split("\f")
    assert first.startswith("Quarterly Report\n\nRevenue grew by 12%")
    assert "Quarter\tRevenue\nQ1\t1.2\nQ2\t1.5" in first
    assert second.startswith("Outlook\n\n\\[")
    assert "images" not in text and "#" not in text


def test_json_reports_every_page_with_blocks_and_pixel_boxes(document: list[PageResult]) -> None:
    data = json.loads(JsonWriter().render("report.pdf", document))

    assert data["source"] == "report.pdf"
    first, second = data["pages"]
    assert {key: first[key] for key in ("number", "width", "height", "mode", "vision_tokens", "generated_tokens")} == {
        "number": 1, "width": 300, "height": 420, "mode": "gundam", "vision_tokens": 273, "generated_tokens": 412,
    }
    assert first["prompt"] == "<image>\n<|grounding|>Convert the document to markdown."
    assert (first["finished"], second["finished"], first["retried"], first["seconds"]) == (True, False, False, 1.235)
    title = first["blocks"][0]
    assert title == {
        "label": "title",
        "text": "# Quarterly Report",
        "box_999": [[80, 40, 920, 90]],
        "box_px": [[int(80 / 999 * 300), int(40 / 999 * 420), int(920 / 999 * 300), int(90 / 999 * 420)]],
    }
    assert first["blocks"][4]["text"] == "Figure 1: Revenue by region."
    assert second["blocks"][2]["box_px"] == [[0, int(700 / 999 * 420), 300, 420]]
    assert first["text"].startswith("# Quarterly Report\n\n") and "![](" not in first["text"]


def test_json_of_free_ocr_page_has_one_unlabelled_block() -> None:
    data = json.loads(JsonWriter().render("scan.png", [page_result(1, "Plain OCR text, no layout.\n")]))

    assert data["pages"][0]["blocks"] == [
        {"label": None, "text": "Plain OCR text, no layout.", "box_999": [], "box_px": []}
    ]


def test_raw_keeps_model_text_verbatim_with_official_page_split(document: list[PageResult]) -> None:
    assert RawWriter().render("report.pdf", document) == PAGE_1 + "\n<--- Page Split --->\n" + PAGE_2


def test_string_formats_write_exactly_what_they_render(tmp_path: Path, document: list[PageResult]) -> None:
    for name, writer_class in FORMATS.items():
        writer = writer_class()
        if not isinstance(writer, StringWriter) or name == "markdown":
            continue
        target = tmp_path / f"report{writer.suffix}"
        writer.write(str(target), document, target)
        assert target.read_text(encoding="utf-8") == writer.render(str(target), document), name


def test_layout_pdf_has_one_page_per_image_with_boxes_drawn(tmp_path: Path, document: list[PageResult]) -> None:
    target = tmp_path / "report_layouts.pdf"

    assert LayoutPdfWriter().write("report.pdf", document, target) == [target]

    with pymupdf.open(target) as pdf:
        assert pdf.page_count == 2
        assert (pdf[0].rect.width, pdf[0].rect.height) == (300, 420)
        pixmap = pdf[0].get_pixmap()
        title_edge = (int(80 / 999 * 300) + 1, int(65 / 999 * 420))
        red, green, blue = pixmap.pixel(*title_edge)[:3]
        expected = label_color("title")
        assert max(abs(red - expected[0]), abs(green - expected[1]), abs(blue - expected[2])) < 40


def test_layout_pdf_of_a_document_without_pages_is_an_output_error(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="no pages"):
        LayoutPdfWriter().write("report.pdf", [], tmp_path / "x.pdf")
    assert not (tmp_path / "x.pdf").exists()


def test_atomic_write_leaves_only_the_final_file(tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "a.md", "# done\n")

    assert files_under(tmp_path) == {"a.md"}
    assert (tmp_path / "a.md").read_text(encoding="utf-8") == "# done\n"


@pytest.mark.parametrize("interruption", [RuntimeError("disk vanished"), KeyboardInterrupt()])
def test_write_failing_midway_leaves_no_partial_or_temp_file(tmp_path: Path, interruption: BaseException) -> None:
    with pytest.raises(type(interruption)):
        with atomic_writer(tmp_path / "report.md") as handle:
            handle.write(b"# Half a doc")
            raise interruption

    assert files_under(tmp_path) == set()


def test_failed_rewrite_keeps_the_previous_file_intact(tmp_path: Path) -> None:
    target = tmp_path / "report.md"
    atomic_write_text(target, "old complete version\n")

    with pytest.raises(RuntimeError):
        with atomic_writer(target) as handle:
            handle.write(b"new but ")
            raise RuntimeError("crash")

    assert target.read_text(encoding="utf-8") == "old complete version\n"
    assert files_under(tmp_path) == {"report.md"}


def test_markdown_writer_failing_on_its_figures_writes_no_markdown(
    tmp_path: Path, document: list[PageResult]
) -> None:
    (tmp_path / "report_images").write_text("a file where the figure folder should be")

    with pytest.raises(OutputError):
        MarkdownWriter().write("report.pdf", document, tmp_path / "report.md")

    assert files_under(tmp_path) == {"report_images"}


def test_unwritable_output_directory_is_one_line_naming_path_and_reason(tmp_path: Path) -> None:
    blocker = tmp_path / "out"
    blocker.write_text("not a directory")

    with pytest.raises(OutputError) as caught:
        atomic_write_text(blocker / "report.md", "x")

    message = str(caught.value)
    assert str(blocker) in message and "File exists" in message and "\n" not in message
    assert caught.value.exit_code == ExitCode.OUTPUT


def test_second_run_on_the_same_directory_is_refused_until_the_first_ends(tmp_path: Path) -> None:
    with directory_lock(tmp_path):
        with pytest.raises(OutputError, match=f"another dsocr run is writing to {tmp_path}"):
            with directory_lock(tmp_path):
                pass

    with directory_lock(tmp_path):
        assert (tmp_path / LOCK_NAME).exists()


def test_markdown_on_stdout_leaves_figures_out_but_files_link_them(tmp_path: Path, document: list[PageResult]) -> None:
    writer = MarkdownWriter()
    target = tmp_path / "report.md"
    writer.write("report.pdf", document, target)
    written = target.read_text(encoding="utf-8")
    assert "](report_images/" in written
    assert "](report_images/" not in writer.render("report.pdf", document)
