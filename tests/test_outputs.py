"""Outputs a user can trust: one per input whatever the names, never over an input, redone unless truly done.

Through the real CLI (in-process ``dsocr`` fixture) with the tiny checkpoints: ``eos`` finishes every page at
once, ``looping`` never finishes one (it runs to ``--max-tokens``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dsocr_cli.errors import UsageError
from dsocr_cli.inputs.discover import InputSource
from dsocr_cli.outputs import OutputTarget, parse_output, plan_outputs
from tests.cli_support import FAST, listing, make_image, make_pdf


@pytest.fixture
def eos(eos_checkpoint: Path) -> tuple[str, ...]:
    return ("--model", str(eos_checkpoint), *FAST)


@pytest.fixture
def looping(tiny_checkpoint: Path) -> tuple[str, ...]:
    return ("--model", str(tiny_checkpoint), *FAST, "--max-tokens", "3")


def snapshot(directory: Path) -> dict[str, bytes]:
    return {name: (directory / name).read_bytes() for name in listing(directory)}


# ---------------------------------------------------------------- the rules, as pure functions


def source(name: str, relative: str | None = None) -> InputSource:
    return InputSource(name=name, stem=Path(name).stem, path=Path(name), relative=relative)


def test_output_names_mirror_directories_and_tell_same_stems_apart() -> None:
    sources = [
        source("tree/a/doc.pdf", "a/doc.pdf"),
        source("tree/b/doc.pdf", "b/doc.pdf"),
        source("tree/x.pdf", "x.pdf"),
        source("tree/x.png", "x.png"),
        source("one/doc.pdf"),
        source("two/doc.pdf"),
        source("-"),
    ]
    plans = plan_outputs(sources, OutputTarget(directory=Path("out")), ".md")
    assert [str(plan.main) for plan in plans] == [
        "out/a/doc.md",
        "out/b/doc.md",
        "out/x.pdf.md",
        "out/x.png.md",
        "out/doc.pdf.md",
        "out/doc.pdf~2.md",
        "out/stdin.md",
    ]
    assert [str(plans[2].images), str(plans[2].layout), str(plans[2].manifest)] == [
        "out/x.pdf_images",
        "out/x.pdf_layouts.pdf",
        "out/.x.pdf.md.dsocr.json",
    ]


@pytest.mark.parametrize(
    ("output", "count", "expected"),
    [
        (None, 1, OutputTarget()),
        ("-", 1, OutputTarget()),
        ("report.md", 1, OutputTarget(file=Path("report.md"))),
        ("report", 1, OutputTarget(directory=Path("report"))),
        ("report", 2, OutputTarget(directory=Path("report"))),
        ("notes.txt", 1, OutputTarget(directory=Path("notes.txt"))),  # .txt is not markdown's extension
    ],
)
def test_o_is_a_file_only_when_it_ends_with_the_formats_extension(
    output: str | None, count: int, expected: OutputTarget
) -> None:
    assert parse_output(output, ".md", count, "markdown") == expected


def test_o_file_with_two_inputs_is_a_usage_error_not_a_folder() -> None:
    with pytest.raises(UsageError, match=r"-o report.md: names one markdown file, but 2 inputs were given"):
        parse_output("report.md", ".md", 2, "markdown")


# ---------------------------------------------------------------- through the CLI


def test_same_stem_inputs_each_get_their_own_output_rerun_skips_force_rewrites(dsocr, eos) -> None:
    make_image("tree/a/doc.png", seed=1)
    make_image("tree/b/doc.png", seed=2)
    make_pdf("tree/x.pdf", pages=1)
    make_image("tree/x.png", seed=3)

    first = dsocr("convert", "tree", "-o", "out", "--layout-pdf", *eos)

    assert (first.code, first.stdout, first.stderr) == (0, "", "")
    outputs = [name for name in listing(Path("out")) if name.endswith(".md")]
    assert outputs == ["a/doc.md", "b/doc.md", "x.pdf.md", "x.png.md"]
    assert {"a/doc_layouts.pdf", "b/doc_layouts.pdf", "x.pdf_layouts.pdf", "x.png_layouts.pdf"} <= set(
        listing(Path("out"))
    )
    before = snapshot(Path("out"))

    again = dsocr("convert", "tree", "-o", "out", "--layout-pdf", "-v", *eos)

    assert again.code == 0
    assert again.messages[-1] == "dsocr: 0 of 4 document(s) converted, 0 page(s), 4 skipped (already done), T s"
    assert sum("skipped: complete for the same input and settings" in line for line in again.messages) == 4
    assert snapshot(Path("out")) == before

    forced = dsocr("convert", "tree", "-o", "out", "--layout-pdf", "--force", "-v", *eos)

    assert forced.code == 0
    assert forced.messages[-1] == "dsocr: 4 of 4 document(s) converted, 4 page(s), T s"
    assert listing(Path("out")) == sorted(before)


def test_same_base_name_given_twice_from_different_places_gets_two_outputs(dsocr, eos) -> None:
    make_image("one/scan.png", seed=1)
    make_image("two/scan.png", seed=2)

    run = dsocr("convert", "one/scan.png", "two/scan.png", "-o", "out", "--format", "json", *eos)

    assert run.code == 0
    assert listing(Path("out")) == [".dsocr.lock", "scan.png.json", "scan.png~2.json"]
    sources = [json.loads(Path("out", name).read_text())["source"] for name in ("scan.png.json", "scan.png~2.json")]
    assert sources == ["one/scan.png", "two/scan.png"]


@pytest.mark.parametrize("how", ["directly", "through a symlink", "as its figure folder's parent"])
def test_an_output_that_is_an_input_is_a_usage_error_and_the_input_is_untouched(dsocr, how: str) -> None:
    make_image("p.png")
    original = Path("p.png").read_bytes()
    if how == "directly":
        args = ("p.png", "-o", "p.png")
    elif how == "through a symlink":
        os.symlink("p.png", "link.md")
        args = ("p.png", "-o", "link.md")
    else:
        os.mkdir("q_images")
        os.rename("p.png", "q_images/p.png")
        os.symlink("q_images/p.png", "p.png")
        args = ("q_images/p.png", "-o", "q.md")  # the figures of q.md would go where the input is

    run = dsocr("convert", *args, "--model", "never-loaded", *FAST)

    assert run.code == 1, run.stderr
    assert run.stderr.startswith("error: -o") and "the input" in run.stderr, run.stderr
    assert len(run.stderr.splitlines()) == 1
    assert Path("p.png").read_bytes() == original


def test_a_users_own_layout_pdf_beside_the_input_is_never_overwritten(dsocr, eos) -> None:
    make_image("p.png")
    make_pdf("p_layouts.pdf", pages=1)
    mine = Path("p_layouts.pdf").read_bytes()

    run = dsocr("convert", ".", "-o", ".", "--layout-pdf", *eos)

    assert run.code == 0, run.stderr
    assert Path("p_layouts.pdf").read_bytes() == mine
    assert {"p.png.md", "p.png_layouts.pdf", "p_layouts.pdf.md", "p_layouts.pdf_layouts.pdf"} <= set(listing(Path(".")))


def test_o_with_a_format_extension_and_two_inputs_is_refused_before_the_model(dsocr) -> None:
    make_image("a.png")
    make_image("b.png", seed=1)

    run = dsocr("convert", "a.png", "b.png", "-o", "both.md", "--model", "never-loaded", *FAST)

    assert run.code == 1
    assert run.stderr == (
        "error: -o both.md: names one markdown file, but 2 inputs were given; give a folder (a name without .md)\n"
    )
    assert not Path("both.md").exists()


def test_skip_existing_redoes_what_is_not_done_and_skips_what_is(dsocr, eos, looping) -> None:
    make_image("in/done.png", seed=1)
    make_image("in/looped.png", seed=2)
    make_pdf("in/subset.pdf", pages=2)
    make_image("in/nolayout.png", seed=3)
    make_image("in/newer.png", seed=4)
    assert dsocr("convert", "in/looped.png", "-o", "out", *looping).code == 2
    assert dsocr("convert", "in/subset.pdf", "-o", "out", "--pages", "1", *eos).code == 0
    assert dsocr("convert", "in/done.png", "in/nolayout.png", "in/newer.png", "-o", "out", "--layout-pdf", *eos).code == 0
    Path("out/nolayout_layouts.pdf").unlink()
    later = Path("in/newer.png").stat().st_mtime + 10
    os.utime("in/newer.png", (later, later))

    run = dsocr(
        "convert", "in/done.png", "in/looped.png", "in/subset.pdf", "in/nolayout.png", "in/newer.png",
        "-o", "out", "--layout-pdf", "-v", *eos,
    )

    assert run.code == 0, run.stderr
    assert "in/done.png: skipped: complete for the same input and settings" in run.messages
    redone = {line.split(":")[0]: line for line in run.messages if ": redoing " in line}
    assert sorted(redone) == ["in/looped.png", "in/newer.png", "in/nolayout.png", "in/subset.pdf"]
    assert "made with other settings" in redone["in/looped.png"]  # --max-tokens 3 vs the default
    assert "(layout_pdf, pages)" in redone["in/subset.pdf"]
    assert "the input changed" in redone["in/newer.png"]
    assert "nolayout_layouts.pdf is missing" in redone["in/nolayout.png"]
    assert run.messages[-1] == "dsocr: 4 of 5 document(s) converted, 5 page(s), 1 skipped (already done), T s"
    assert Path("out/subset.md").read_text().count("<!-- page ") == 2


def test_an_output_with_unfinished_pages_is_redone_with_the_same_settings(dsocr, looping) -> None:
    make_image("scan.png")
    assert dsocr("convert", "scan.png", "-o", "out", *looping).code == 2

    again = dsocr("convert", "scan.png", "-o", "out", "-v", *looping)

    assert again.code == 2
    assert any(line.startswith("scan.png: redoing out/scan.md: incomplete (1 page(s)") for line in again.messages)


def test_an_existing_file_that_dsocr_did_not_make_is_kept_unless_forced(dsocr, eos) -> None:
    make_image("scan.png")
    Path("out").mkdir()
    Path("out/scan.md").write_text("my own notes")

    kept = dsocr("convert", "scan.png", "-o", "out", "-v", *eos)

    assert (kept.code, Path("out/scan.md").read_text()) == (0, "my own notes")
    assert "scan.png: skipped: output exists but was not made by dsocr (--force to overwrite)" in kept.messages
    assert dsocr("convert", "scan.png", "-o", "out", "--force", *eos).code == 0
    assert Path("out/scan.md").read_text().endswith("<!-- page 1 -->\n")


def test_dsocr_never_reads_its_own_outputs_back_as_inputs(dsocr, eos) -> None:
    make_image("docs/scan.png")

    first = dsocr("convert", "docs", "-o", "docs", "--layout-pdf", *eos)
    second = dsocr("convert", "docs", "-o", "docs", "--layout-pdf", "-v", *eos)

    assert (first.code, second.code) == (0, 0)
    assert second.messages[-1] == "dsocr: 0 of 1 document(s) converted, 0 page(s), 1 skipped (already done), T s"
    assert listing(Path("docs")) == [".dsocr.lock", "scan.md", "scan.png", "scan_layouts.pdf"]


def test_one_unwritable_output_fails_that_input_only(dsocr, eos) -> None:
    make_image("a.png")
    make_image("b.png", seed=1)
    Path("out").mkdir()
    Path("out/a.md").mkdir()  # a folder where a.md should go

    run = dsocr("convert", "a.png", "b.png", "-o", "out", "-q", "--force", *eos)

    assert run.code == 2
    assert len(run.stderr.splitlines()) == 1 and run.stderr.startswith("error: cannot write out/a.md")
    assert Path("out/b.md").is_file()


def test_outputs_record_how_they_were_made_unless_told_not_to(dsocr, eos, eos_checkpoint: Path) -> None:
    make_image("scan.png")

    markdown = dsocr("convert", "scan.png", *eos).stdout
    data = json.loads(dsocr("convert", "scan.png", "-f", "json", *eos).stdout)
    page = dsocr("convert", "scan.png", "-f", "html", "-o", "-", *eos).stdout
    bare = dsocr("convert", "scan.png", "--no-provenance", *eos).stdout

    assert markdown.startswith("<!-- generated by dsocr: dsocr=")
    assert f"model={eos_checkpoint}" in markdown.splitlines()[0]
    facts = data["dsocr"]
    assert {"dsocr", "model", "mode", "dpi", "device", "dtype", "quant"} <= set(facts)
    assert (facts["mode"], facts["dpi"], facts["device"], facts["quant"]) == ("tiny", 144, "cpu", "none")
    assert '<meta name="generator" content="dsocr ' in page and '<meta name="dsocr:mode" content="tiny">' in page
    assert bare == "<!-- page 1 -->\n"


@pytest.mark.parametrize("separator", ["{foo}", "{", "{number:q}"])
def test_a_bad_page_separator_is_a_usage_error_before_the_model_loads(dsocr, separator: str) -> None:
    make_image("scan.png")

    run = dsocr("convert", "scan.png", "--page-separator", separator, "--model", "never-loaded", *FAST)

    assert run.code == 1
    assert run.stderr.startswith(f"error: --page-separator {separator!r}: ") and len(run.stderr.splitlines()) == 1


def test_stream_with_a_whole_document_format_is_refused(dsocr) -> None:
    make_image("scan.png")

    run = dsocr("convert", "scan.png", "--stream", "-f", "json", "--model", "never-loaded", *FAST)

    assert (run.code, run.stderr) == (1, "error: --stream prints the model's text as it comes; --format json needs whole pages\n")


def test_progress_plain_prints_one_line_per_page_with_totals(dsocr, eos) -> None:
    make_pdf("report.pdf", pages=3)

    run = dsocr("convert", "report.pdf", "-o", "out", "--progress", "plain", *eos)

    assert run.code == 0
    lines = [line for line in run.messages if line.startswith("dsocr: [")]
    assert [line.split("]")[0] for line in lines] == ["dsocr: [1/3", "dsocr: [2/3", "dsocr: [3/3"]
    assert "report.pdf: page 2 finished" in lines[1]
    assert any(line.startswith("dsocr: loading model") for line in run.messages), run.messages


def test_temporary_files_a_killed_run_left_are_removed_by_the_next_run(dsocr, eos) -> None:
    make_image("a/scan.png")
    Path("out/a").mkdir(parents=True)
    dead = Path("out/a/.scan.md.4194303.0badc0de.tmp")  # a pid above Linux's limit: no such process
    live = Path(f"out/a/.scan.md.{os.getppid()}.0badc0de.tmp")  # a run still writing
    dead.write_text("half a document")
    live.write_text("being written")

    run = dsocr("convert", ".", "--glob", "*.png", "-o", "out", *eos)

    assert run.code == 0, run.stderr
    assert not dead.exists() and live.exists()
    assert Path("out/a/scan.md").is_file()


def test_an_unexpected_exception_is_one_line_and_exit_70(dsocr, eos, monkeypatch: pytest.MonkeyPatch) -> None:
    import dsocr_cli.convert

    def broken(*args, **kwargs):
        raise RuntimeError("something nobody planned for")

    monkeypatch.setattr(dsocr_cli.convert, "plan_outputs", broken)
    make_image("scan.png")

    run = dsocr("convert", "scan.png", "-o", "out", *eos)

    assert (run.code, run.stdout) == (70, "")
    assert run.stderr == (
        "error: internal error: RuntimeError: something nobody planned for (DSOCR_TRACEBACK=1 shows where)\n"
    )


def test_a_newline_in_a_file_name_cannot_split_the_one_line_error(dsocr) -> None:
    Path("bad\nname.png").write_bytes(b"not an image at all")

    run = dsocr("convert", "bad\nname.png", "-q", "--model", "never-loaded", *FAST)

    assert run.code == 3
    assert run.stderr.splitlines() == ["error: bad\\nname.png: unsupported file type (looks like plain text despite the .png extension)"]
