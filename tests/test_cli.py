"""``dsocr`` as a user drives it: every input kind, every format, stdout or files, pages, resume, settings.

Runs go through the real entry point (``main``) in-process, with stdout and stderr captured at the file
descriptor level. Two random-weight checkpoints stand in for the real model: ``eos_checkpoint`` finishes
every page at once (exit 0), ``tiny_checkpoint`` never finishes a page (the loop guard's case, exit 2).
What the model family does not change (every format and writer, stdout or files, truncation, streaming,
exit codes) runs for DeepSeek-OCR v1 and DeepSeek-OCR-2 alike (``family``, ids ``[v1]`` and ``[v2]``),
each in its cheapest mode; inputs and settings, which never reach the model, run for v1 only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pymupdf
import pytest

from dsocr_cli import __version__
from tests.cli_support import FAST, Run, listing, make_image, make_pdf, make_tiff
from tests.conftest import Family

Dsocr = Callable[..., Run]
A4_AT_144_DPI = (1190, 1684)
MARKDOWN_PROMPT = "<image>\n<|grounding|>Convert the document to markdown."
FAST_VISION_TOKENS = {"v1": 73, "v2": 257}
"""Image positions of any page in the family's cheapest mode (v1 tiny: 8x9 + 1; v2 base: 256 + 1)."""


@pytest.fixture
def eos(eos_checkpoint: Path) -> tuple[str, ...]:
    """Options for the model that finishes every page at its first step."""
    return ("--model", str(eos_checkpoint), "--no-provenance", *FAST)


@pytest.fixture
def family_eos(family: Family, family_eos_checkpoint: Path) -> tuple[str, ...]:
    """Options for the family's model that finishes every page at its first step, in its cheapest mode."""
    return ("--model", str(family_eos_checkpoint), "--no-provenance", *family.fast)


@pytest.fixture
def looping(family: Family, family_checkpoint: Path) -> tuple[str, ...]:
    """Options for the family's random model, which never emits EOS: every page runs to the token limit."""
    return ("--model", str(family_checkpoint), *family.fast, "--max-tokens", "3")


# ---------------------------------------------------------------- inputs and outputs


def test_every_input_kind_converts_to_its_own_file_in_the_output_directory(dsocr: Dsocr, eos: tuple[str, ...]) -> None:
    make_pdf("report.pdf", pages=2)
    make_image("scan.png")
    make_image("photo.jpg", seed=1)
    make_tiff("frames.tiff", frames=2)
    make_image("folder/inner.png", seed=2)
    make_image("folder/skipped.jpg", seed=3)

    run = dsocr(
        "convert",
        "report.pdf",
        "scan.png",
        "photo.jpg",
        "frames.tiff",
        "folder",
        "--glob",
        "*.png",
        "-o",
        "out",
        "-v",
        *eos,
    )

    assert run.code == 0, run.stderr
    assert run.stdout == ""
    assert listing(Path("out")) == [".dsocr.lock", "frames.md", "inner.md", "photo.md", "report.md", "scan.md"]
    assert Path("out/report.md").read_text() == "<!-- page 1 -->\n\n<!-- page 2 -->\n"
    assert Path("out/frames.md").read_text() == "<!-- page 1 -->\n\n<!-- page 2 -->\n"
    assert Path("out/scan.md").read_text() == "<!-- page 1 -->\n"
    started = [line for line in run.messages if line.endswith("page(s)")]
    inner = os.path.join("folder", "inner.png")
    assert started == [
        "report.pdf: 2 page(s)",
        "scan.png: 1 page(s)",
        "photo.jpg: 1 page(s)",
        "frames.tiff: 2 page(s)",
        f"{inner}: 1 page(s)",
    ]
    assert run.messages[-1] == "dsocr: 5 of 5 document(s) converted, 7 page(s), T s"


@pytest.mark.parametrize(
    ("output_format", "extra", "expected"),
    [
        ("markdown", (), "<!-- page 1 -->\n\n<!-- page 2 -->\n"),
        ("text", (), "\n\f\n"),
        ("raw", (), "\n<--- Page Split --->\n"),
        ("html", ("-o", "-"), None),  # `-o -` asks for stdout explicitly
        ("json", (), None),
    ],
)
def test_each_format_prints_the_document_alone_on_stdout_and_nothing_on_stderr_with_quiet(
    dsocr: Dsocr,
    family: Family,
    family_eos: tuple[str, ...],
    output_format: str,
    extra: tuple[str, ...],
    expected: str | None,
) -> None:
    make_pdf("report.pdf", pages=2)

    run = dsocr("convert", "report.pdf", "--format", output_format, "-q", *extra, *family_eos)

    assert (run.code, run.stderr) == (0, "")
    assert listing(Path(".")) == ["report.pdf"]
    if output_format == "html":
        assert run.stdout.startswith("<!DOCTYPE html>\n<html>\n")
        assert "<title>report.pdf</title>" in run.stdout
        assert '<section class="page" id="page-1">' in run.stdout
        assert '<section class="page" id="page-2">' in run.stdout
        assert run.stdout.endswith("</body>\n</html>\n")
    elif output_format == "json":
        document = json.loads(run.stdout)
        assert document["source"] == "report.pdf"
        pages = [
            (
                p["number"],
                (p["width"], p["height"]),
                p["mode"],
                p["prompt"],
                p["generated_tokens"],
                p["finished"],
                p["retried"],
            )
            for p in document["pages"]
        ]
        assert pages == [
            (1, A4_AT_144_DPI, family.fast_mode, MARKDOWN_PROMPT, 1, True, False),
            (2, A4_AT_144_DPI, family.fast_mode, MARKDOWN_PROMPT, 1, True, False),
        ]
        assert [p["vision_tokens"] for p in document["pages"]] == [FAST_VISION_TOKENS[family.name]] * 2
        assert [(p["looped"], p["text"], p["blocks"]) for p in document["pages"]] == [(False, "", [])] * 2
    else:
        assert run.stdout == expected


def test_pages_selects_the_pages_that_are_converted(dsocr: Dsocr, eos: tuple[str, ...]) -> None:
    make_pdf("report.pdf", pages=3)

    run = dsocr("convert", "report.pdf", "--pages", "2-", "--format", "html", "-o", "out/", *eos)

    assert (run.code, run.stdout, run.stderr) == (0, "", "")
    html = Path("out/report.html").read_text()
    assert 'id="page-1"' not in html
    assert 'id="page-2"' in html and 'id="page-3"' in html


def test_output_file_for_a_single_input_is_replaced_and_gets_the_layout_pdf_beside_it(
    dsocr: Dsocr, family_eos: tuple[str, ...]
) -> None:
    make_image("scan.png")
    Path("result").mkdir()
    Path("result/scan.json").write_text("from an earlier run")

    run = dsocr("convert", "scan.png", "-o", "result/scan.json", "--format", "json", "--layout-pdf", *family_eos)

    assert (run.code, run.stdout, run.stderr) == (0, "", "")
    assert json.loads(Path("result/scan.json").read_text())["pages"][0]["finished"] is True
    assert listing(Path("result")) == ["scan.json", "scan_layouts.pdf"]
    with pymupdf.open("result/scan_layouts.pdf") as layout:
        assert (layout.page_count, layout[0].rect.width, layout[0].rect.height) == (1, 300, 400)


def test_existing_outputs_in_a_directory_are_skipped_by_default(dsocr: Dsocr, eos: tuple[str, ...]) -> None:
    make_image("scan.png")
    make_image("photo.png", seed=1)
    Path("out").mkdir()
    Path("out/scan_det.mmd").write_text("from an earlier run")

    run = dsocr("convert", "scan.png", "photo.png", "--format", "raw", "-o", "out", *eos)

    # A successful run is silent on stderr (cron mails nothing) unless -v asks for details.
    assert (run.code, run.stdout, run.stderr) == (0, "", "")
    assert Path("out/scan_det.mmd").read_text() == "from an earlier run"
    assert listing(Path("out")) == [".dsocr.lock", "photo_det.mmd", "scan_det.mmd"]
    assert Path("out/photo_det.mmd").read_text() == ""  # EOS at once: an empty page, as the model gave it


def test_force_converts_again_over_existing_outputs(dsocr: Dsocr, family_eos: tuple[str, ...]) -> None:
    make_image("scan.png")
    Path("out").mkdir()
    Path("out/scan.txt").write_text("from an earlier run")

    run = dsocr("convert", "scan.png", "--format", "text", "-o", "out", "--force", "-v", *family_eos)

    assert run.code == 0
    assert Path("out/scan.txt").read_text() == "\n"
    assert run.messages[-1] == "dsocr: 1 of 1 document(s) converted, 1 page(s), T s"


def test_a_page_cut_off_at_max_tokens_is_truncated_not_retried_and_exits_2(
    dsocr: Dsocr, family: Family, looping: tuple[str, ...]
) -> None:
    make_image("scan.png")

    run = dsocr("convert", "scan.png", "--format", "json", "-o", "out/", *looping)

    assert run.code == 2
    assert run.messages == [
        "warning: scan.png: page 1 truncated at 3 tokens (--max-tokens); its partial text is kept and marked",
        "dsocr: 1 of 1 document(s) converted, 1 page(s), 1 page(s) truncated, T s",
    ]
    [page] = json.loads(Path("out/scan.json").read_text())["pages"]
    assert (page["finished"], page["looped"], page["retried"], page["generated_tokens"]) == (False, False, False, 3)
    assert (page["mode"], page["vision_tokens"]) == (family.fast_mode, FAST_VISION_TOKENS[family.name])
    assert page["text"]


def test_without_mode_a_page_is_converted_in_the_default_mode_gundam(
    dsocr: Dsocr, family: Family, family_eos_checkpoint: Path
) -> None:
    """Both families default to gundam (crops plus a 1024 px view): a 1300x650 page is two crops side by side,
    640 px ones for v1 (273 + 10x21 positions) and 768 px ones for v2 (257 + 2x144)."""
    make_image("scan.png", size=(1300, 650))

    run = dsocr("convert", "scan.png", "--model", family_eos_checkpoint, "--format", "json", "--no-provenance")

    assert (run.code, run.stderr) == (0, "")
    [page] = json.loads(run.stdout)["pages"]
    assert family.family.default_mode == "gundam"
    assert (page["mode"], page["prompt"]) == ("gundam", MARKDOWN_PROMPT)
    assert (page["width"], page["height"]) == (1300, 650)
    assert page["vision_tokens"] == {"v1": 273 + 10 * 21, "v2": 257 + 2 * 144}[family.name]
    assert (page["generated_tokens"], page["finished"]) == (1, True)


def test_stream_prints_tokens_to_stdout_as_they_come_instead_of_the_document(
    dsocr: Dsocr, looping: tuple[str, ...]
) -> None:
    make_pdf("report.pdf", pages=2)

    streamed = dsocr("convert", "report.pdf", "--stream", "--no-repeat-ngram", "0", "-q", *looping)
    raw = dsocr("convert", "report.pdf", "--format", "raw", "--no-repeat-ngram", "0", "-q", *looping)

    assert (streamed.code, streamed.stderr) == (2, "")
    first, second = raw.stdout.split("\n<--- Page Split --->\n")
    assert first.count("<|") == 3
    assert streamed.stdout == f"{first}\n{second}\n"


def test_a_streamed_page_that_loops_is_printed_once_not_retried(dsocr: Dsocr, looping: tuple[str, ...]) -> None:
    make_image("scan.png")

    streamed = dsocr("convert", "scan.png", "--stream", *looping)

    assert streamed.code == 2
    assert streamed.stdout.count("<|") == 3
    assert "retried" not in streamed.stderr


# ---------------------------------------------------------------- settings


def test_flags_beat_environment_beats_config_file_beats_defaults(
    dsocr: Dsocr, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_pdf("report.pdf", pages=1)
    Path("dsocr.toml").write_text(
        f'model = "{tiny_checkpoint}"\nmode = "base"\nformat = "html"\nprompt = "custom:Read it."\n'
        "max-tokens = 2\nno-repeat-ngram = 0\n"
    )
    monkeypatch.setenv("DSOCR_CONFIG", "dsocr.toml")
    monkeypatch.setenv("DSOCR_MODE", "small")
    monkeypatch.setenv("DSOCR_FORMAT", "json")

    run = dsocr("convert", "report.pdf", "--mode", "tiny")

    assert run.code == 2  # the random model never finishes a page
    [page] = json.loads(run.stdout)["pages"]
    assert page["mode"] == "tiny"  # flag over DSOCR_MODE and the file
    # format: DSOCR_FORMAT over the file; prompt and max-tokens: the file over the defaults
    assert (page["prompt"], page["generated_tokens"]) == ("<image>\nRead it.", 2)
    assert (page["width"], page["height"]) == A4_AT_144_DPI  # --dpi: nobody set it, the default 144


def test_config_path_prints_the_file_in_use(dsocr: Dsocr, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DSOCR_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert dsocr("config", "path") == Run(0, f"{tmp_path / 'xdg' / 'dsocr' / 'config.toml'}\n", "")

    monkeypatch.setenv("DSOCR_CONFIG", "elsewhere.toml")
    assert dsocr("config", "path") == Run(0, "elsewhere.toml\n", "")


def test_config_file_at_the_platform_path_is_read(
    dsocr: Dsocr, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DSOCR_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    (tmp_path / "xdg" / "dsocr").mkdir(parents=True)
    (tmp_path / "xdg" / "dsocr" / "config.toml").write_text('prompt = "summarize"\n')
    make_image("scan.png")

    run = dsocr("convert", "scan.png")

    assert run.code == 1
    assert run.stderr == (
        "error: unknown --prompt 'summarize' (choose from markdown, ocr, free, figure, describe, locate:TEXT, custom:TEXT)\n"
    )


def test_broken_config_file_is_a_usage_error_naming_it(dsocr: Dsocr, monkeypatch: pytest.MonkeyPatch) -> None:
    Path("dsocr.toml").write_text("mode = \n")
    monkeypatch.setenv("DSOCR_CONFIG", "dsocr.toml")

    run = dsocr("convert", "scan.png")

    assert run.code == 1
    assert run.stderr.startswith("error: dsocr.toml: invalid config file (")
    assert run.stderr.count("\n") == 1


def test_version_prints_the_package_version(dsocr: Dsocr) -> None:
    assert dsocr("version") == Run(0, f"dsocr {__version__}\n", "")


# ---------------------------------------------------------------- exit codes 1, 4, 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["convert"], "error: Missing argument 'inputs'."),
        (["convert", "scan.png", "--pages", "3-1"], "error: --pages: invalid page range '3-1' (3 comes after 1)"),
        (["convert", "scan.png", "--pages", "0"], "error: --pages: invalid page range '0' (pages are numbered from 1)"),
        (["convert", "scan.png", "photo.png"], "error: 2 inputs would be mixed on stdout; give -o DIR"),
        (
            ["convert", "scan.png", "--stream", "-o", "out"],
            "error: --stream prints to stdout; it cannot be combined with -o",
        ),
        (["convert", "-", "-"], "error: -: stdin can be given only once"),
        (
            ["convert", "scan.png", "--prompt", "locate:"],
            "error: --prompt locate:TEXT needs the text to locate",
        ),
        (
            ["convert", "scan.png", "--dpi", "5"],
            "error: Invalid value for '--dpi': Input should be greater than or equal to 36",
        ),
        (["convert", "scan.png", "--bogus"], None),
        (["convert", "scan.png", "--format", "docx"], None),
        (["frobnicate"], "error: No such command 'frobnicate'."),
    ],
)
def test_usage_errors_exit_1_with_one_line_and_touch_nothing(
    dsocr: Dsocr, args: list[str], message: str | None
) -> None:
    make_image("scan.png")
    make_image("photo.png", seed=1)

    run = dsocr(*args)

    assert (run.code, run.stdout) == (1, "")
    assert len(run.messages) == 1 and run.stderr.startswith("error: ")
    if message is not None:
        assert run.stderr == message + "\n"
    assert listing(Path(".")) == ["photo.png", "scan.png"]


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (
            "./no-such-model",
            "error: ./no-such-model: neither a model directory nor a hub repo id (owner/name[@revision])",
        ),
        ("empty-model", "error: empty-model: no config.json (not a model directory)"),
    ],
)
def test_missing_model_exits_4_naming_it(dsocr: Dsocr, model: str, message: str) -> None:
    Path("empty-model").mkdir()
    make_image("scan.png")

    run = dsocr("convert", "scan.png", "--model", model, *FAST)

    assert (run.code, run.stdout, run.stderr) == (4, "", message + "\n")


def test_damaged_weights_exit_4_naming_the_file(
    dsocr: Dsocr, family: Family, family_checkpoint: Path, tmp_path: Path
) -> None:
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for path in family_checkpoint.iterdir():
        data = path.read_bytes()
        (damaged / path.name).write_bytes(data[: len(data) // 2] if path.suffix == ".safetensors" else data)
    make_image("scan.png")

    run = dsocr("convert", "scan.png", "--model", "damaged", *family.fast)

    assert run.code == 4
    assert run.stderr.startswith("error: damaged/model-00001-of-000001.safetensors: not a readable safetensors file (")
    assert run.stderr.count("\n") == 1


def test_output_directory_that_cannot_be_created_exits_5_before_loading_the_model(dsocr: Dsocr) -> None:
    make_image("scan.png")
    Path("blocker").write_text("a file where the output directory should go")

    run = dsocr("convert", "scan.png", "-o", "blocker/out/", "--model", "never-loaded")

    assert (run.code, run.stdout) == (5, "")
    assert run.stderr == "error: cannot create directory blocker/out: Not a directory\n"


def test_output_file_that_cannot_be_written_exits_5(dsocr: Dsocr, family_eos: tuple[str, ...]) -> None:
    make_image("scan.png")
    Path("blocker").write_text("a file where the output directory should go")

    run = dsocr("convert", "scan.png", "-o", "blocker/scan.md", "-q", *family_eos)

    assert (run.code, run.stdout) == (5, "")
    assert run.stderr == "error: cannot create directory blocker: File exists\n"  # as mkdir(1) says it
