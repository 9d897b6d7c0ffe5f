"""Memory is bounded by a page, not a document: a 200-page PDF converts within 1.3x the peak RSS of a 10-page one.

Measured from the OS (``ru_maxrss`` of the finished child process), on the real console script, with the tiny
checkpoint that finishes every page at once, so rendering, preprocessing, batching and writing dominate.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pymupdf
import pytest

from tests.cli_support import DSOCR, FAST, isolated_env

LAUNCHER = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
    "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)


def make_long_pdf(path: Path, pages: int) -> Path:
    """A4 pages with some text each (rendered at 144 dpi, each page image is about 6 MB)."""
    doc = pymupdf.open()
    for number in range(1, pages + 1):
        page = doc.new_page()
        for line in range(30):
            page.insert_text((50, 60 + 24 * line), f"Page {number}, line {line}: the quick brown fox", fontsize=11)
    doc.save(str(path), garbage=3, deflate=True)
    doc.close()
    return path


def peak_rss_kib(pdf: Path, out: Path, checkpoint: Path, tmp_path: Path) -> int:
    command = [sys.executable, "-c", LAUNCHER, str(DSOCR), "convert", str(pdf), "-o", str(out), "--model", str(checkpoint)]
    command += [*FAST, "--batch-size", "4", "-q"]
    done = subprocess.run(command, capture_output=True, text=True, env=isolated_env(tmp_path), timeout=600)
    code, rss = done.stdout.split()
    assert code == "0", done.stderr
    return int(rss)


@pytest.mark.slow
def test_a_200_page_pdf_needs_no_more_memory_than_a_10_page_one(tmp_path: Path, eos_checkpoint: Path) -> None:
    short = peak_rss_kib(make_long_pdf(tmp_path / "short.pdf", 10), tmp_path / "out-short", eos_checkpoint, tmp_path)
    long = peak_rss_kib(make_long_pdf(tmp_path / "long.pdf", 200), tmp_path / "out-long", eos_checkpoint, tmp_path)

    print(f"peak RSS: 10 pages {short / 1024:.0f} MiB, 200 pages {long / 1024:.0f} MiB, ratio {long / short:.2f}")
    assert long <= 1.3 * short
    assert (tmp_path / "out-long" / "long.md").read_text().count("<!-- page ") == 200
