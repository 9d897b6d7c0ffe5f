"""The loop guard each page runs with: the family's official settings for its input kind, unless the user says.

The official scripts ban repeated n-grams within a window that depends on the input: v1 30-grams within 90
tokens for images and 20 within 50 for PDF pages; v2 20 within 90 for images and 20 within 50 for PDFs.
``dsocr convert`` hands each page to the backend with those settings (and the retry's stronger ones); what the
engine does with them is tested in tests/test_batched.py and tests/test_guard.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from dsocr_cli.convert import ConvertJob, OutputTarget, run
from dsocr_cli.defaults import RETRY_NGRAM_SIZE, RETRY_NGRAM_WINDOW
from dsocr_cli.engine.backend import ConvertOptions, PageOutcome, PageRequest
from dsocr_cli.inputs.discover import discover
from dsocr_cli.models.family import GuardDefaults, ModelFamily
from dsocr_cli.models.registry import V1, V2
from dsocr_cli.progress import Reporter
from dsocr_cli.results import PageResult
from tests.cli_support import make_image, make_pdf


class RecordingBackend:
    """A backend of ``family`` that records the options each page was sent with and answers one word."""

    def __init__(self, family: ModelFamily) -> None:
        self.family = family
        self.provenance: dict = {}
        self.seen: dict[tuple[str, int], tuple[ConvertOptions, ConvertOptions | None]] = {}

    def guard_defaults(self, kind: str) -> GuardDefaults:
        return self.family.guard_defaults[kind]

    def convert_many(self, requests: Iterable[PageRequest]) -> Iterator[PageOutcome]:
        for request in requests:
            page = request.load()
            self.seen[(Path(request.source).name, request.number)] = (request.options, request.retry)
            result = PageResult(
                page=page, text="word", mode=request.options.mode, prompt="", vision_tokens=1,
                generated_tokens=1, finished=True, seconds=0.0,
            )
            yield PageOutcome(request, result=result)


def convert(tmp_path: Path, family: ModelFamily, options: ConvertOptions) -> RecordingBackend:
    make_image(tmp_path / "scan.png")
    make_pdf(tmp_path / "report.pdf", pages=2)
    backend = RecordingBackend(family)
    job = ConvertJob(
        sources=discover([str(tmp_path / "scan.png"), str(tmp_path / "report.pdf")]),
        options=options,
        output=OutputTarget(directory=tmp_path / "out"),
    )
    summary = run(job, lambda: backend, Reporter(quiet=True))
    assert summary.exit_code() == 0 and summary.pages == 3
    return backend


def guard(options: ConvertOptions | None) -> tuple[int | None, int | None] | None:
    return None if options is None else (options.ngram_size, options.ngram_window)


@pytest.mark.parametrize(
    ("family", "image", "pdf"), [(V1, (30, 90), (20, 50)), (V2, (20, 90), (20, 50))], ids=["v1", "v2"]
)
def test_each_page_gets_its_familys_official_guard_for_its_input_kind(
    tmp_path: Path, family: ModelFamily, image: tuple[int, int], pdf: tuple[int, int]
) -> None:
    seen = convert(tmp_path, family, ConvertOptions()).seen
    retry = (RETRY_NGRAM_SIZE, RETRY_NGRAM_WINDOW)
    assert {key: (guard(o), guard(r)) for key, (o, r) in seen.items()} == {
        ("scan.png", 1): (image, retry),
        ("report.pdf", 1): (pdf, retry),
        ("report.pdf", 2): (pdf, retry),
    }


def test_the_users_settings_win_and_the_window_covers_the_ngram(tmp_path: Path) -> None:
    seen = convert(tmp_path, V2, ConvertOptions(ngram_size=60)).seen
    assert guard(seen[("scan.png", 1)][0]) == (60, 90)
    assert guard(seen[("report.pdf", 1)][0]) == (60, 60)  # a window shorter than the n-gram could ban nothing
    assert guard(seen[("report.pdf", 1)][1]) == (RETRY_NGRAM_SIZE, RETRY_NGRAM_WINDOW)

    seen = convert(tmp_path / "window", V1, ConvertOptions(ngram_window=200)).seen
    assert guard(seen[("scan.png", 1)][0]) == (30, 200) and guard(seen[("report.pdf", 2)][0]) == (20, 200)


def test_the_guard_off_means_no_retry(tmp_path: Path) -> None:
    seen = convert(tmp_path, V1, ConvertOptions(ngram_size=0)).seen
    assert all(guard(options)[0] == 0 and retry is None for options, retry in seen.values())


def test_help_states_each_familys_defaults(dsocr) -> None:
    text = " ".join(dsocr("convert", "--help").stdout.split())
    assert "v1: 30 for images, 20 for PDFs; v2: 20" in text
    assert "v1: 90 for images, 50 for PDFs; v2: 90 for images, 50 for PDFs" in text
