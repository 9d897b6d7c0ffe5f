"""``--format pdf`` (searchable PDFs), ``--format hocr`` and several formats from one model pass.

Known model text comes from a stand-in vLLM server (``tests/test_remote.FakeServer`` through ``--server``):
it answers every page with grounded blocks whose words and boxes the tests know, and counts the pages it was
sent. One test runs the real tiny random-weight model end to end (its text is unknown; the pages must still be
the input's).
"""

# ruff: noqa: F811  (tests take the stand-in server's fixtures, imported from tests.test_remote, by name)
from __future__ import annotations

import json
import os
from pathlib import Path

import pymupdf
import pytest

from dsocr_cli.postprocess.grounding import COORD_MAX
from tests.pdf_support import A4, content_streams, image_streams, make_png, make_scanned_pdf
from tests.test_remote import fast_retries, serve  # noqa: F401  (fixtures)

BOXES = {"ALPHA": (100, 50, 900, 120), "BRAVO": (100, 200, 480, 400), "CHARLIE": (520, 200, 900, 400)}
GROUNDED = (
    "<|ref|>title<|/ref|><|det|>[[100, 50, 900, 120]]<|/det|>\n# ALPHA heading words\n\n"
    "<|ref|>text<|/ref|><|det|>[[100, 200, 480, 400]]<|/det|>\nBRAVO first column\nsecond line here\n\n"
    "<|ref|>text<|/ref|><|det|>[[520, 200, 900, 400]]<|/det|>\nCHARLIE other column\n\n"
)


def files(folder: Path, manifests: bool = False) -> list[str]:
    """The outputs in ``folder`` (with their manifests when ``manifests``), not the folder's lock."""
    return sorted(
        path.name for path in folder.iterdir()
        if not path.name.startswith(".") or (manifests and path.name.endswith(".dsocr.json"))
    )


def ok(run):
    assert run.code == 0, run.stderr
    return run


def displayed_box(page: pymupdf.Page, box: tuple[int, int, int, int]) -> pymupdf.Rect:
    width, height = page.rect.width, page.rect.height
    x0, y0, x1, y1 = box
    return pymupdf.Rect(x0 / COORD_MAX * width, y0 / COORD_MAX * height, x1 / COORD_MAX * width, y1 / COORD_MAX * height)


def assert_words_in_boxes(page: pymupdf.Page) -> None:
    """PyMuPDF finds each block's first word on the page, inside that block's grounding box."""
    for word, box in BOXES.items():
        hits = page.search_for(word)
        assert len(hits) == 1, (word, hits, page.get_text())
        expected = displayed_box(page, box)
        assert (expected + (-1, -1, 1, 1)).contains(hits[0] * page.rotation_matrix), (word, hits[0], expected)


def test_a_scanned_pdf_gets_an_invisible_text_layer_over_its_untouched_pages(dsocr, serve, tmp_path: Path) -> None:
    fake = serve(text=GROUNDED)
    sizes = [A4, (612.0, 792.0), (842.0, 595.0)]
    make_scanned_pdf(tmp_path / "scan.pdf", pages=3, sizes=sizes)

    ok(dsocr("convert", "scan.pdf", "--server", fake.url, "--format", "pdf", "-o", "out"))

    out = tmp_path / "out" / "scan.pdf"
    assert files(tmp_path / "out") == ["scan.pdf"]
    assert len(fake.chats) == 3
    with pymupdf.open(out) as doc:
        assert [(page.rect.width, page.rect.height) for page in doc] == sizes
        for page in doc:
            assert_words_in_boxes(page)
            assert "BRAVO first column\nsecond line here" in page.get_text()
            # invisible: the text draws nothing, so the page renders exactly as the input's page
        assert doc.metadata["producer"].startswith("dsocr ")
    assert image_streams(out) == image_streams(tmp_path / "scan.pdf")  # the scans, byte for byte
    for number in (1, 2, 3):  # the original content streams come first, unchanged, inside q ... Q
        original = content_streams(tmp_path / "scan.pdf", number)
        streams = content_streams(out, number)
        assert streams[0] == b"q\n" and streams[1 : 1 + len(original)] == original and streams[-2] == b"Q\n"
    with pymupdf.open(tmp_path / "scan.pdf") as before, pymupdf.open(out) as after:
        for page_before, page_after in zip(before, after, strict=True):
            assert page_before.get_pixmap().samples == page_after.get_pixmap().samples


def test_with_pages_the_output_has_the_selected_pages_in_order(dsocr, serve, tmp_path: Path) -> None:
    fake = serve(text=GROUNDED)
    make_scanned_pdf(tmp_path / "scan.pdf", pages=3, sizes=[A4, (612.0, 792.0), (842.0, 595.0)])

    ok(dsocr("convert", "scan.pdf", "--server", fake.url, "--pages", "1,3", "-f", "pdf", "-o", "out"))

    assert len(fake.chats) == 2
    with pymupdf.open(tmp_path / "out" / "scan.pdf") as doc:
        assert [(page.rect.width, page.rect.height) for page in doc] == [A4, (842.0, 595.0)]
        assert all(page.search_for("ALPHA") for page in doc)
    assert image_streams(tmp_path / "out" / "scan.pdf") == [image_streams(tmp_path / "scan.pdf")[i] for i in (0, 2)]


def test_pages_keep_their_rotation_and_the_text_reads_across_the_displayed_page(dsocr, serve, tmp_path: Path) -> None:
    fake = serve(text=GROUNDED)
    make_scanned_pdf(tmp_path / "turned.pdf", pages=1)
    with pymupdf.open(tmp_path / "turned.pdf") as doc:
        doc[0].set_rotation(90)
        doc.saveIncr()

    ok(dsocr("convert", "turned.pdf", "--server", fake.url, "--format", "pdf", "-o", "out"))

    with pymupdf.open(tmp_path / "out" / "turned.pdf") as doc:
        page = doc[0]
        assert page.rotation == 90 and (page.rect.width, page.rect.height) == (A4[1], A4[0])
        assert_words_in_boxes(page)
        words = [word[4] for word in page.get_text("words", sort=False)]
        assert words[:3] == ["ALPHA", "heading", "words"]  # reading order kept


def test_an_image_becomes_a_page_of_its_size_at_its_resolution(dsocr, serve, tmp_path: Path) -> None:
    fake = serve(text=GROUNDED)
    make_png(tmp_path / "page.png", size=(900, 1200), dpi=300)
    make_png(tmp_path / "nodpi.png", size=(720, 1440))

    ok(dsocr("convert", "page.png", "nodpi.png", "--server", fake.url, "-f", "pdf", "-o", "out", "--dpi", "144"))

    with pymupdf.open(tmp_path / "out" / "page.pdf") as doc:
        (page,) = doc
        assert (round(page.rect.width, 2), round(page.rect.height, 2)) == (216.0, 288.0)  # 900 px at 300 dpi
        assert_words_in_boxes(page)
        (image,) = page.get_images(full=True)
        assert (image[2], image[3]) == (900, 1200)  # the image at its own resolution
    with pymupdf.open(tmp_path / "out" / "nodpi.pdf") as doc:
        assert (doc[0].rect.width, doc[0].rect.height) == (360.0, 720.0)  # no dpi recorded: --dpi


def test_output_without_boxes_is_one_block_over_the_page(dsocr, serve, tmp_path: Path) -> None:
    fake = serve(text="Plain words ZULU without grounding\nand a second line")
    make_scanned_pdf(tmp_path / "scan.pdf", pages=1)

    ok(dsocr("convert", "scan.pdf", "--server", fake.url, "--prompt", "free", "-f", "pdf", "-o", "scan.searchable.pdf"))

    with pymupdf.open(tmp_path / "scan.searchable.pdf") as doc:
        page = doc[0]
        (hit,) = page.search_for("ZULU")
        assert (page.rect + (-1, -1, 1, 1)).contains(hit) and hit.height < 100
        assert page.get_text().split() == "Plain words ZULU without grounding and a second line".split()


def test_md_json_pdf_come_from_one_model_pass_and_skip_existing_works_per_format(dsocr, serve, tmp_path: Path) -> None:
    fake = serve(text=GROUNDED)
    make_scanned_pdf(tmp_path / "scan.pdf", pages=2)

    ok(dsocr("convert", "scan.pdf", "--server", fake.url, "--format", "md,json,pdf", "-o", "out"))

    assert len(fake.chats) == 2  # one model pass per page, three outputs
    assert files(tmp_path / "out") == ["scan.json", "scan.md", "scan.pdf"]
    assert files(tmp_path / "out", manifests=True) == [
        ".scan.json.dsocr.json", ".scan.md.dsocr.json", ".scan.pdf.dsocr.json", "scan.json", "scan.md", "scan.pdf"
    ]
    assert "# ALPHA heading words" in (tmp_path / "out" / "scan.md").read_text()
    pages = json.loads((tmp_path / "out" / "scan.json").read_text())["pages"]
    assert [page["source"] for page in pages] == ["ocr", "ocr"]
    with pymupdf.open(tmp_path / "out" / "scan.pdf") as doc:
        assert doc.page_count == 2 and all(page.search_for("CHARLIE") for page in doc)
    manifest = json.loads((tmp_path / "out" / ".scan.pdf.dsocr.json").read_text())
    assert manifest["settings"]["format"] == "pdf" and manifest["files"] == ["scan.pdf"] and manifest["complete"]

    # Everything done: skipped without a page sent.
    ok(dsocr("convert", "scan.pdf", "--server", fake.url, "--format", "md,json,pdf", "-o", "out"))
    assert len(fake.chats) == 2
    # Only the PDF missing: the pages go through once more, and only the PDF is written.
    markdown = tmp_path / "out" / "scan.md"
    os.utime(markdown, ns=(1_000_000_000, 1_000_000_000))
    (tmp_path / "out" / "scan.pdf").unlink()
    run = ok(dsocr("convert", "scan.pdf", "--server", fake.url, "--format", "md,json,pdf", "-o", "out", "-v"))
    assert len(fake.chats) == 4
    assert "scan.pdf: redoing out/scan.pdf: no output yet" in run.stderr
    assert markdown.stat().st_mtime_ns == 1_000_000_000  # kept as it was
    assert files(tmp_path / "out") == ["scan.json", "scan.md", "scan.pdf"]


def test_repeated_format_options_add_up_like_a_comma_list(dsocr, serve, tmp_path: Path, monkeypatch) -> None:
    fake = serve(text=GROUNDED)
    make_scanned_pdf(tmp_path / "scan.pdf", pages=1)

    ok(dsocr("convert", "scan.pdf", "--server", fake.url, "-f", "md", "--format", "json,pdf", "-f", "hocr", "-o", "out"))

    assert len(fake.chats) == 1
    assert files(tmp_path / "out") == ["scan.hocr", "scan.json", "scan.md", "scan.pdf"]
    # The environment variable, like the option, may list several.
    monkeypatch.setenv("DSOCR_FORMAT", "txt,html")
    ok(dsocr("convert", "scan.pdf", "--server", fake.url, "-o", "env"))
    assert files(tmp_path / "env") == ["scan.html", "scan.txt"]
    run = dsocr("convert", "scan.pdf", "--server", fake.url, "-f", "md", "-f", "markdown", "-o", "twice")
    assert (run.code, run.stderr) == (1, "error: --format md,markdown: markdown is named twice\n")


def test_hocr_has_block_level_boxes_in_page_pixels(dsocr, serve, tmp_path: Path) -> None:
    fake = serve(text=GROUNDED)
    make_png(tmp_path / "page.png", size=(999, 1998))

    run = ok(dsocr("convert", "page.png", "--server", fake.url, "--format", "hocr"))

    assert len(fake.chats) == 1
    hocr = run.stdout
    assert hocr.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    assert '<meta name="ocr-capabilities" content="ocr_page ocr_carea ocr_par ocrx_block"/>' in hocr
    assert 'class="ocr_page" id="page_1" title="image page.png; bbox 0 0 999 1998; ppageno 0"' in hocr
    assert 'class="ocrx_block" id="text_1_2" title="bbox 100 400 480 800" data-label="text">BRAVO first column<br/>second line here</span>' in hocr
    import xml.dom.minidom

    xml.dom.minidom.parseString(hocr)  # well-formed XHTML


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "pdf"], "error: --format pdf writes a file; give -o DIR or -o FILE.pdf\n"),
        (["--format", "md,json"], "error: --format markdown,json writes one file per format; give -o DIR\n"),
        (["--format", "md,pdf", "-o", "x.md"], "error: -o x.md: names one file, but --format md,pdf writes one per format; give -o DIR\n"),
        (["--format", "md,docx"], "error: --format md,docx: unknown format 'docx' (valid: markdown, html, text, json, raw, pdf, hocr, md, txt; several: md,json,pdf)\n"),
        (["--format", "md,markdown", "-o", "out"], "error: --format md,markdown: markdown is named twice\n"),
        (["--format", "pdf", "--stream"], "error: --stream prints the model's text as it comes; --format pdf needs whole pages\n"),
    ],
)
def test_format_usage_errors_are_one_line_before_anything_runs(dsocr, tmp_path: Path, args, message) -> None:
    make_scanned_pdf(tmp_path / "scan.pdf", pages=1)
    run = dsocr("convert", "scan.pdf", "--model", tmp_path / "no-model", *args)
    assert (run.code, run.stdout, run.stderr) == (1, "", message)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["no-config-home", "scan.pdf"] or not (tmp_path / "out").exists()


def test_the_real_tiny_model_end_to_end_keeps_every_page_and_its_size(dsocr, tiny_checkpoint: Path, tmp_path: Path) -> None:
    sizes = [A4, (612.0, 792.0)]
    make_scanned_pdf(tmp_path / "scan.pdf", pages=2, sizes=sizes)

    run = dsocr("convert", "scan.pdf", "--model", tiny_checkpoint, "--mode", "tiny", "--max-tokens", "8",
                "-f", "pdf,json", "-o", "out")

    assert run.code == 2, run.stderr  # random weights never finish a page: truncated
    with pymupdf.open(tmp_path / "out" / "scan.pdf") as doc:
        assert [(page.rect.width, page.rect.height) for page in doc] == sizes
        assert doc.metadata["producer"].startswith("dsocr ")
    assert image_streams(tmp_path / "out" / "scan.pdf") == image_streams(tmp_path / "scan.pdf")
    pages = json.loads((tmp_path / "out" / "scan.json").read_text())["pages"]
    assert [page["generated_tokens"] for page in pages] == [8, 8]
