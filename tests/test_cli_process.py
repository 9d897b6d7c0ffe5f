"""``dsocr`` as a real process: stdin piping, stdout kept for data, a stdout that cannot take it, and Ctrl-C in the
middle of a batch."""

from __future__ import annotations

import json

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.cli_support import (
    DSOCR,
    FAST,
    Run,
    isolated_env,
    listing,
    make_image,
    make_pdf,
    run_process,
)

Dsocr = Callable[..., Run]


def test_pdf_piped_on_stdin_gives_the_document_on_stdout_and_only_messages_on_stderr(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    pdf = make_pdf(tmp_path / "report.pdf", pages=1).read_bytes()

    result = run_process(
        "convert", "-", "--model", tiny_checkpoint, *FAST, "--max-tokens", "3",
        cwd=tmp_path, env=isolated_env(tmp_path), stdin=pdf,
    )

    run = Run(result.returncode, result.stdout.decode(), result.stderr.decode())
    assert run.code == 2  # the random model never finishes a page
    assert "<!-- page 1 -->\n\n" in run.stdout
    assert run.stdout.count("<|dsocr_unused_") == 3
    assert run.messages == [
        "warning: -: page 1 truncated at 3 tokens (--max-tokens); its partial text is kept and marked",
        "dsocr: 1 of 1 document(s) converted, 1 page(s), 1 page(s) truncated, T s",
    ]


def test_ctrl_c_stops_a_batch_with_130_leaving_only_complete_outputs_and_a_rerun_converts_the_rest(
    dsocr: Dsocr, tmp_path: Path, eos_checkpoint: Path
) -> None:
    documents = [make_pdf(tmp_path / f"doc{number}.pdf", pages=2).name for number in range(3)]
    complete = "<!-- page 1 -->\n\n<!-- page 2 -->\n"
    out = tmp_path / "out"
    # One page at a time, so the run is certainly mid-way when the first document appears.
    command = [str(DSOCR), "convert", *documents, "-o", "out", "--batch-size", "1", "--model", str(eos_checkpoint), *FAST]
    process = subprocess.Popen(
        command, cwd=tmp_path, env=isolated_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 300
    # doc0 is done once its manifest says so: the output file is renamed into place first, then the
    # manifest marked complete, so an interrupt between the two (a rerun redoes doc0) is not this test's case.
    while not (out / "doc0.md").exists() or not json.loads((out / ".doc0.md.dsocr.json").read_text()).get("complete"):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no output after 300 s"
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)

    assert (process.returncode, stdout, stderr) == (130, b"", b"interrupted\n")
    finished = [name for name in listing(out) if name != ".dsocr.lock"]
    assert "doc0.md" in finished and len(finished) < len(documents), finished  # stopped mid-run
    assert finished == [f"{Path(name).stem}.md" for name in documents[: len(finished)]]  # no temporary files
    assert all((out / name).read_text().endswith(complete) for name in finished)
    mtimes = {name: (out / name).stat().st_mtime_ns for name in finished}

    rerun = dsocr("convert", *documents, "-o", "out", "-v", "--model", eos_checkpoint, *FAST)

    assert rerun.code == 0, rerun.stderr
    done_before = [f"{Path(name).stem}.pdf" for name in finished]
    skipped = [line.split(":")[0] for line in rerun.messages if ": skipped: " in line]
    converted = [line.split(":")[0] for line in rerun.messages if line.endswith(": 2 page(s)")]
    assert skipped == done_before, rerun.messages
    assert converted == [name for name in documents if name not in done_before]
    assert {name: (out / name).stat().st_mtime_ns for name in finished} == mtimes
    assert listing(out) == [".dsocr.lock", *(f"{Path(name).stem}.md" for name in documents)]
    assert all((out / f"{Path(name).stem}.md").read_text().endswith(complete) for name in documents)


def full_stdout(*args: str | Path, cwd: Path) -> tuple[int, str]:
    """``dsocr ARGS > /dev/full``: the exit code and stderr."""
    with open("/dev/full", "wb") as full:
        done = subprocess.run(
            [str(DSOCR), *map(str, args)], cwd=cwd, env=isolated_env(cwd), stdout=full, stderr=subprocess.PIPE,
            timeout=300,
        )
    return done.returncode, done.stderr.decode()


def test_a_full_stdout_is_one_error_line_and_exit_5(tmp_path: Path, eos_checkpoint: Path) -> None:
    full = (5, "error: cannot write to stdout: No space left on device\n")
    assert full_stdout("--help", cwd=tmp_path) == full
    assert full_stdout("version", cwd=tmp_path) == full
    make_image(tmp_path / "page.png")
    assert full_stdout("convert", "page.png", "--model", eos_checkpoint, *FAST, cwd=tmp_path) == full


def test_a_closed_pipe_ends_dsocr_silently(tmp_path: Path) -> None:
    # As `dsocr --help | head -0`: the reader is gone before dsocr writes.
    process = subprocess.Popen(
        [str(DSOCR), "--help"], cwd=tmp_path, env=isolated_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    process.stdout.close()
    stderr = process.stderr.read()
    assert (process.wait(timeout=60), stderr) == (-signal.SIGPIPE, b"")
