"""``--text-layer ocr|skip|use``: which PDF pages take their own text instead of the model, and the rules
(``dsocr_cli.text_layer``) that decide whether a text layer is usable, on measurements and on real PDFs.

Pages that need the model go to a stand-in vLLM server that counts them (``tests/test_remote.FakeServer``); a run
where no page needs it must not load a model at all (``no_local_model`` refuses to, and the model named does
not exist).
"""

# ruff: noqa: F811  (tests take the stand-in server's fixtures, imported from tests.test_remote, by name)
from __future__ import annotations

import json
import time
from pathlib import Path

import pymupdf
import pytest

from dsocr_cli.inputs.text_layer import read_text_layer, union_area
from dsocr_cli.text_layer import TextLayerStats, judge, takes_text_layer
from tests.pdf_support import (
    content_streams,
    make_born_digital_pdf,
    make_garbled_pdf,
    make_mixed_pdf,
    make_scanned_pdf,
)
from tests.test_remote import fast_retries, no_local_model, serve  # noqa: F401  (fixtures)

A4_AREA = 595.0 * 842.0
OCR_TEXT = "<|ref|>text<|/ref|><|det|>[[100, 100, 900, 200]]<|/det|>\nOCRED words\n\n"


def stats(chars: int, invalid: int = 0, images: float = 0.0, over_images: float = 0.0) -> TextLayerStats:
    return TextLayerStats(
        chars=chars, invalid=invalid, page_area=A4_AREA, text_area=chars * 30.0,
        image_area=images * A4_AREA, image_text_area=over_images * images * A4_AREA,
    )


@pytest.mark.parametrize(
    ("measured", "usable", "reason"),
    [
        (stats(0), False, "no text layer"),
        (stats(2000), True, "text layer of 2000 characters"),
        (stats(12), True, "text layer of 12 characters"),  # a page without images keeps even a short layer
        (stats(2000, invalid=300), False, "garbled text layer (15% invalid glyphs)"),
        (stats(2000, invalid=100), True, "text layer of 2000 characters"),
        (stats(40, images=0.95), False, "scanned page (images cover 95%, text 0% of them)"),
        (stats(2000, images=0.95, over_images=0.6), True, "text layer of 2000 characters"),  # an OCRed scan
        (stats(20, images=0.3), False, "little text beside images (20 characters)"),
        (stats(2000, images=0.3), True, "text layer of 2000 characters"),
    ],
)
def test_the_usability_rules_on_measurements(measured: TextLayerStats, usable: bool, reason: str) -> None:
    verdict = judge(measured)
    assert (verdict.usable, verdict.reason) == (usable, reason)


def test_skip_asks_only_for_some_text_and_ocr_never_takes_a_layer() -> None:
    scan_with_a_caption = stats(40, images=0.95)
    assert takes_text_layer("skip", scan_with_a_caption) and not takes_text_layer("use", scan_with_a_caption)
    assert not takes_text_layer("ocr", stats(2000)) and not takes_text_layer("use", None)


def test_union_area_counts_overlaps_once() -> None:
    assert union_area([(0, 0, 10, 10), (5, 5, 15, 15), (0, 0, 10, 10)]) == 175.0
    assert union_area([]) == 0.0


def test_real_pages_are_measured_and_judged(tmp_path: Path) -> None:
    make_mixed_pdf(tmp_path / "mixed.pdf", "ts")
    make_garbled_pdf(tmp_path / "garbled.pdf")
    with pymupdf.open(tmp_path / "mixed.pdf") as doc:
        text, scan = read_text_layer(doc[0]), read_text_layer(doc[1])
    with pymupdf.open(tmp_path / "garbled.pdf") as doc:
        garbled = read_text_layer(doc[0])
    assert judge(text.stats).usable and text.stats.image_area == 0
    assert text.stats.chars == len("Chapter1") + 12 * len("Line0ofpage1:thequickbrownfoxjumps") + 2
    assert (judge(scan.stats).usable, judge(scan.stats).reason) == (False, "no text layer")
    assert scan.stats.image_area == pytest.approx(A4_AREA, rel=0.01)
    assert garbled.stats.chars > 500 and garbled.stats.invalid == garbled.stats.chars
    assert judge(garbled.stats).reason == "garbled text layer (100% invalid glyphs)"
    # The text as grounded blocks: the heading (a larger font) a title, boxes in 0..999 of the page.
    assert text.grounded.startswith("<|ref|>title<|/ref|><|det|>[[121, ")
    assert "<|ref|>text<|/ref|>" in text.grounded and "Line 11 of page 1: the quick brown fox jumps" in text.grounded


def test_a_born_digital_pdf_converts_from_its_text_layer_without_a_model(dsocr, tmp_path: Path) -> None:
    make_born_digital_pdf(tmp_path / "book.pdf", pages=20)

    started = time.perf_counter()
    run = dsocr("convert", "book.pdf", "--text-layer", "use", "--model", tmp_path / "no-such-model",
                "-f", "md,json", "-o", "out", "-v")
    seconds = time.perf_counter() - started

    assert run.code == 0, run.stderr
    assert seconds < 2.0, seconds
    assert "loading model" not in run.stderr and "connecting" not in run.stderr
    assert "dsocr: 1 of 1 document(s) converted, 20 page(s) (0 by OCR, 20 from the text layer)" in run.stderr
    pages = json.loads((tmp_path / "out" / "book.json").read_text())["pages"]
    assert [page["source"] for page in pages] == ["text-layer"] * 20
    assert pages[4]["blocks"][0] == {
        "label": "title", "text": "# Chapter 5", "box_999": pages[4]["blocks"][0]["box_999"],
        "box_px": pages[4]["blocks"][0]["box_px"],
    }
    markdown = (tmp_path / "out" / "book.md").read_text()
    assert "<!-- page 20 -->\n\n# Chapter 20\n\nLine 0 of page 20: the quick brown fox jumps" in markdown
    manifest = json.loads((tmp_path / "out" / ".book.md.dsocr.json").read_text())
    assert manifest["settings"]["text_layer"] == "use" and manifest["complete"]
    assert {page["source"] for page in manifest["pages"]} == {"text-layer"}


def test_a_mixed_pdf_sends_only_its_scanned_pages_to_the_model(dsocr, serve, tmp_path: Path) -> None:
    fake = serve(text=OCR_TEXT)
    make_mixed_pdf(tmp_path / "mixed.pdf", "tsstst")

    run = dsocr("convert", "mixed.pdf", "--text-layer", "use", "--server", fake.url, "-f", "json,pdf", "-o", "out", "-v")

    assert run.code == 0, run.stderr
    assert len(fake.chats) == 3
    pages = json.loads((tmp_path / "out" / "mixed.json").read_text())["pages"]
    assert [page["source"] for page in pages] == ["text-layer", "ocr", "ocr", "text-layer", "ocr", "text-layer"]
    assert [page["number"] for page in pages] == [1, 2, 3, 4, 5, 6]
    assert "Line 3 of page 4" in pages[3]["text"] and "OCRED words" in pages[4]["text"]
    assert "6 page(s) (3 by OCR, 3 from the text layer)" in run.stderr
    with pymupdf.open(tmp_path / "out" / "mixed.pdf") as doc:
        assert [bool(page.search_for("OCRED")) for page in doc] == [False, True, True, False, True, False]
    for number in (1, 4, 6):  # text pages are left as they were
        assert content_streams(tmp_path / "out" / "mixed.pdf", number) == content_streams(tmp_path / "mixed.pdf", number)


def test_a_garbled_text_layer_is_ocred_under_use_but_kept_under_skip(dsocr, serve, tmp_path: Path) -> None:
    fake = serve(text=OCR_TEXT)
    make_garbled_pdf(tmp_path / "garbled.pdf")

    run = dsocr("convert", "garbled.pdf", "--text-layer", "use", "--server", fake.url, "-f", "json", "-o", "use")
    assert run.code == 0, run.stderr
    assert len(fake.chats) == 1
    [page] = json.loads((tmp_path / "use" / "garbled.json").read_text())["pages"]
    assert page["source"] == "ocr" and "OCRED words" in page["text"]

    run = dsocr("convert", "garbled.pdf", "--text-layer", "skip", "--server", fake.url, "-f", "json,pdf", "-o", "skip")
    assert run.code == 0, run.stderr
    assert len(fake.chats) == 1  # it has text: skip does not OCR it, and the PDF keeps the page as it was
    [page] = json.loads((tmp_path / "skip" / "garbled.json").read_text())["pages"]
    assert page["source"] == "text-layer"
    assert content_streams(tmp_path / "skip" / "garbled.pdf", 1) == content_streams(tmp_path / "garbled.pdf", 1)


def test_ocr_is_the_default_and_sends_every_page(dsocr, serve, tmp_path: Path) -> None:
    fake = serve(text=OCR_TEXT)
    make_mixed_pdf(tmp_path / "mixed.pdf", "ts")

    run = dsocr("convert", "mixed.pdf", "--server", fake.url, "-f", "json", "-o", "out", "-v")

    assert run.code == 0, run.stderr
    assert len(fake.chats) == 2
    assert "dsocr: 1 of 1 document(s) converted, 2 page(s), " in run.stderr  # no per-source counts
    pages = json.loads((tmp_path / "out" / "mixed.json").read_text())["pages"]
    assert [page["source"] for page in pages] == ["ocr", "ocr"]
    manifest = json.loads((tmp_path / "out" / ".mixed.json.dsocr.json").read_text())
    assert "text_layer" not in manifest["settings"]  # outputs of earlier versions stay complete


def test_a_scan_under_use_loads_the_model_only_when_its_page_comes(dsocr, serve, tmp_path: Path) -> None:
    fake = serve(text=OCR_TEXT)
    make_born_digital_pdf(tmp_path / "a.pdf", pages=2)
    make_scanned_pdf(tmp_path / "b.pdf", pages=1)

    run = dsocr("convert", "a.pdf", "b.pdf", "--text-layer", "use", "--server", fake.url, "-f", "md", "-o", "out", "-v")

    assert run.code == 0, run.stderr
    lines = run.stderr.splitlines()
    connecting = next(index for index, line in enumerate(lines) if line.startswith("connecting to"))
    assert connecting > next(index for index, line in enumerate(lines) if "a.pdf: page 2" in line)
    assert len(fake.chats) == 1
    assert "# Chapter 1" in (tmp_path / "out" / "a.md").read_text()
    assert "OCRED words" in (tmp_path / "out" / "b.md").read_text()
