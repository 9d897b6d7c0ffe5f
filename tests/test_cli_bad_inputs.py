"""Bad inputs: each fails alone with its exit code and one line naming the file and the cause, and never stops
the other inputs of the same run from being converted."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli_support import (
    FAST,
    PASSWORD,
    Run,
    isolated_env,
    listing,
    make_encrypted_pdf,
    make_image,
    make_one_pixel_png,
    make_pdf,
    make_png_header,
    make_truncated_pdf,
    make_zero_page_pdf,
    run_process,
)

Dsocr = Callable[..., Run]

BAD_INPUTS: dict[str, tuple[Callable[[str], object], str]] = {
    "broken.pdf": (lambda name: Path(name).write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 8), "corrupt PDF, cannot be opened"),
    "cut.pdf": (make_truncated_pdf, "corrupt PDF, no pages could be recovered"),
    "locked.pdf": (make_encrypted_pdf, "encrypted PDF, needs --password"),
    "blank.pdf": (make_zero_page_pdf, "PDF has no pages"),
    "empty.png": (lambda name: Path(name).write_bytes(b""), "empty file (0 bytes)"),
    "dot.png": (make_one_pixel_png, "image too small: 1x1 pixels"),
    "huge.png": (lambda name: make_png_header(name, 20000, 20000), "image too large: 20000x20000 pixels (limit 100 MP)"),
    "notes.docx": (
        lambda name: Path(name).write_bytes(b"PK\x03\x04" + bytes(60)),
        "unsupported file type (looks like a ZIP archive or Office document (docx/xlsx/pptx/odt))",
    ),
    "readme.txt": (lambda name: Path(name).write_text("just some notes\n"), "unsupported file type (looks like plain text)"),
    "missing.pdf": (lambda name: None, "no such file or directory"),
}
"""Input name -> (how to make it, the cause its error line gives)."""


def make_bad_inputs() -> list[str]:
    for name, (make, _) in BAD_INPUTS.items():
        make(name)
    return list(BAD_INPUTS)


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_alone_exits_3_with_one_line_naming_file_and_cause(dsocr: Dsocr, name: str) -> None:
    make, cause = BAD_INPUTS[name]
    make(name)

    # No model is loaded for a run in which no input can be opened: the model given does not exist.
    run = dsocr("convert", name, "--model", "never-loaded")

    assert (run.code, run.stdout) == (3, "")
    assert run.messages == [f"error: {name}: {cause}", "dsocr: 0 of 1 document(s) converted, 0 page(s), 1 failed, T s"]


def test_huge_image_is_refused_from_its_header_without_allocating_it(dsocr: Dsocr) -> None:
    make_png_header("huge.png", 20000, 20000)  # 1.2 GB of RGB pixels, were it decoded
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()

    run = dsocr("convert", "huge.png", "-q")

    assert time.perf_counter() - started < 5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before < 200_000  # KiB
    assert (run.code, run.stderr) == (3, "error: huge.png: image too large: 20000x20000 pixels (limit 100 MP)\n")


def test_bad_inputs_fail_one_by_one_while_the_good_input_in_the_same_run_converts(
    dsocr: Dsocr, eos_checkpoint: Path
) -> None:
    make_image("good.png")
    bad = make_bad_inputs()

    run = dsocr(
        "convert", *bad[:5], "good.png", *bad[5:], "-o", "out", "-q", "--no-provenance", "--model", eos_checkpoint, *FAST
    )

    assert (run.code, run.stdout) == (2, "")
    assert run.messages == [f"error: {name}: {BAD_INPUTS[name][1]}" for name in BAD_INPUTS]
    assert listing(Path("out")) == [".dsocr.lock", "good.md"]
    assert Path("out/good.md").read_text() == "<!-- page 1 -->\n"


def test_wrong_password_fails_that_pdf_while_the_one_it_opens_converts(dsocr: Dsocr, eos_checkpoint: Path) -> None:
    make_encrypted_pdf("mine.pdf")
    make_encrypted_pdf("theirs.pdf", password="something else")

    run = dsocr("convert", "theirs.pdf", "mine.pdf", "--password", PASSWORD, "-o", "out", "--model", eos_checkpoint, *FAST)

    assert run.code == 2
    assert run.messages == [
        "error: theirs.pdf: encrypted PDF, wrong password",
        "dsocr: 1 of 2 document(s) converted, 1 page(s), 1 failed, T s",
    ]
    assert listing(Path("out")) == [".dsocr.lock", "mine.md"]


def test_page_range_beyond_a_document_fails_it_while_longer_documents_convert(
    dsocr: Dsocr, eos_checkpoint: Path
) -> None:
    make_image("scan.png")
    make_pdf("report.pdf", pages=3)

    run = dsocr(
        "convert", "scan.png", "report.pdf", "--pages", "3", "-o", "out", "-q", "--no-provenance", "--model", eos_checkpoint,
        *FAST,
    )

    assert (run.code, run.stderr) == (2, "error: scan.png: page 3 out of bounds (document has 1 page)\n")
    assert listing(Path("out")) == [".dsocr.lock", "report.md"]
    assert Path("out/report.md").read_text() == "<!-- page 3 -->\n"


def test_page_range_beyond_the_only_document_exits_3(dsocr: Dsocr) -> None:
    make_pdf("report.pdf", pages=2)

    run = dsocr("convert", "report.pdf", "--pages", "2-5", "-q")

    assert (run.code, run.stderr) == (3, "error: report.pdf: page range 2-5 out of bounds (document has 2 pages)\n")


# ---------------------------------------------------------------- permissions (root reads and writes anything)

DROP_FILE_OVERRIDE = ["--bounding-set=-dac_override,-dac_read_search"]
"""setpriv options that take away root's power to ignore file modes, for the command it starts."""


def file_modes_apply(tmp_path: Path) -> list[str]:
    """A command prefix under which file modes apply: none for a normal user; for root, setpriv without the
    override capabilities. Skips the test when that cannot be arranged."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root and setpriv is not installed: file modes cannot be made to apply")
    probe = tmp_path / "probe"
    probe.write_text("x")
    probe.chmod(0)
    try:
        result = subprocess.run([setpriv, *DROP_FILE_OVERRIDE, "cat", str(probe)], capture_output=True)
    finally:
        probe.unlink()
    if result.returncode == 0:
        pytest.skip("running as root and setpriv could not drop the override capabilities")
    return [setpriv, *DROP_FILE_OVERRIDE]


def test_unreadable_file_fails_alone_while_the_readable_one_converts(tmp_path: Path, eos_checkpoint: Path) -> None:
    prefix = file_modes_apply(tmp_path)
    make_image(tmp_path / "good.png")
    make_image(tmp_path / "secret.png", seed=1)
    (tmp_path / "secret.png").chmod(0)

    result = run_process(
        "convert", "secret.png", "good.png", "-o", "out", "--model", eos_checkpoint, *FAST,
        cwd=tmp_path, env=isolated_env(tmp_path), prefix=prefix,
    )

    run = Run(result.returncode, result.stdout.decode(), result.stderr.decode())
    assert (run.code, run.stdout) == (2, "")
    assert run.messages == [
        "error: secret.png: cannot read: Permission denied",
        "dsocr: 1 of 2 document(s) converted, 1 page(s), 1 failed, T s",
    ]
    assert listing(tmp_path / "out") == [".dsocr.lock", "good.md"]


def test_output_directory_without_write_permission_exits_5(tmp_path: Path) -> None:
    prefix = file_modes_apply(tmp_path)
    make_image(tmp_path / "scan.png")
    (tmp_path / "out").mkdir(mode=0o555)

    result = run_process(
        "convert", "scan.png", "-o", "out", "--model", "never-loaded", cwd=tmp_path, env=isolated_env(tmp_path), prefix=prefix
    )

    assert (result.returncode, result.stdout) == (5, b"")
    assert result.stderr == b"error: cannot write out/.dsocr.lock: Permission denied\n"
    assert listing(tmp_path / "out") == []
