"""The sample document in ``examples/``: it is what the README's first command converts, so it must open
with dsocr's own input code, carry a real text layer and a figure, and match its generator."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pymupdf

from dsocr_cli.inputs.discover import discover
from dsocr_cli.inputs.pages import open_document

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SAMPLE = EXAMPLES / "sample.pdf"
GENERATOR = EXAMPLES / "make_sample.py"

TITLE = "Optical Character Recognition in Practice"
TABLE_HEADER = ["Document type", "Pages", "Classic OCR CER", "Model CER"]


def test_sample_opens_with_dsocr_inputs_as_one_pdf_page() -> None:
    [source] = discover([str(SAMPLE)])
    assert source.error is None
    with open_document(source) as document:
        assert document.kind == "pdf"
        assert document.page_numbers == [1]
        [page] = list(document.pages())
    assert page.number == 1
    assert page.image.width > 0 and page.image.height > 0


def test_sample_is_small() -> None:
    assert SAMPLE.stat().st_size < 100_000


def test_sample_text_layer_has_title_and_table_header() -> None:
    with pymupdf.open(SAMPLE) as doc:
        text = doc[0].get_text()
    assert TITLE in text
    for cell in TABLE_HEADER:
        assert cell in text


def test_sample_has_a_figure() -> None:
    with pymupdf.open(SAMPLE) as doc:
        page = doc[0]
        assert page.get_images() or page.get_drawings()
        # The bar chart's bars are filled shapes, beyond the table's rules.
        filled = [d for d in page.get_drawings() if d.get("fill") is not None]
        assert len(filled) >= 5


def _pixels(path: Path) -> list[bytes]:
    with pymupdf.open(path) as doc:
        return [page.get_pixmap(dpi=72).samples for page in doc]


def test_generator_reproduces_committed_sample(tmp_path: Path) -> None:
    output = tmp_path / "sample.pdf"
    result = subprocess.run(
        [sys.executable, str(GENERATOR), str(output)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    regenerated = _pixels(output)
    assert len(regenerated) == 1
    assert regenerated == _pixels(SAMPLE), "examples/sample.pdf is stale: run python examples/make_sample.py"
