"""What the CLI tests share: running ``dsocr`` (in-process or as a real process) and building input files.

Inputs are real files made here (PDFs with PyMuPDF, images with Pillow) and named as a user types them,
because the tests run in a temporary working directory.
"""

from __future__ import annotations

import os
import re
import signal
import struct
import subprocess
import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymupdf
from PIL import Image

from dsocr_cli.testing.images import make_page_image

DSOCR = Path(sys.executable).with_name("dsocr")
"""The console script installed beside this interpreter: the entry point users run."""
FAST = ("--mode", "tiny")
"""The cheapest resolution mode: one 512 px view per page."""
PASSWORD = "open sesame"
SUMMARY = re.compile(r"dsocr: .*, \d+\.\d s")
"""The closing summary line, whose time varies."""


@dataclass
class Run:
    """The outcome of one ``dsocr`` invocation, as a shell sees it."""

    code: int
    stdout: str
    stderr: str

    @property
    def messages(self) -> list[str]:
        """stderr lines, with the summary's varying time replaced by ``T``."""
        return [re.sub(r"\d+\.\d s$", "T s", line) for line in self.stderr.splitlines()]


def call_main(argv: list[str]) -> int:
    """``dsocr ARGV`` in this process through the real entry point ``main``."""
    from dsocr_cli.cli.app import main

    sigpipe = signal.getsignal(signal.SIGPIPE)
    try:
        return main(argv)
    finally:
        # main() restores the default SIGPIPE action, which would let a broken pipe kill pytest itself.
        signal.signal(signal.SIGPIPE, sigpipe)


def isolation(tmp_path: Path) -> dict[str, str]:
    """Settings that keep a test away from the user's config file and the network, and its output plain."""
    # No DSOCR_CONFIG (naming a missing file is an error): the platform config dir is an empty one instead.
    # DSOCR_DTYPE: float32 on every CPU, so results and figures do not depend on the machine (``--dtype auto``
    # picks bfloat16 on CPUs with AMX-BF16/AVX512-BF16; tests/test_dtype_auto.py tests that rule).
    return {
        "XDG_CONFIG_HOME": str(tmp_path / "no-config-home"),
        "HF_HUB_OFFLINE": "1",
        "NO_COLOR": "1",
        "DSOCR_DTYPE": "float32",
    }


def isolated_env(tmp_path: Path) -> dict[str, str]:
    """This process's environment without the user's DSOCR_* settings, plus ``isolation``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("DSOCR_")}
    return env | isolation(tmp_path)


def run_process(
    *args: str | Path,
    cwd: Path,
    env: dict[str, str],
    stdin: bytes | None = None,
    prefix: Sequence[str] = (),
    timeout: float = 300,
) -> subprocess.CompletedProcess[bytes]:
    """``dsocr ARGS`` as a separate process (started through ``prefix``), stdout and stderr apart, as bytes."""
    command = [*prefix, str(DSOCR), *map(str, args)]
    return subprocess.run(command, cwd=cwd, env=env, input=stdin, capture_output=True, timeout=timeout)


# ---------------------------------------------------------------- input builders


def make_pdf(path: str | Path, pages: int = 2, **save_options: Any) -> Path:
    """A text PDF of A4 pages; ``save_options`` go to PyMuPDF (encryption, compression)."""
    doc = pymupdf.open()
    for number in range(1, pages + 1):
        page = doc.new_page()
        page.insert_text((72, 72), f"Page {number}: " + "the quick brown fox " * 10, fontsize=11)
    doc.save(str(path), **save_options)
    doc.close()
    return Path(path)


def make_encrypted_pdf(path: str | Path, password: str = PASSWORD) -> Path:
    return make_pdf(path, 1, encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw=password, owner_pw="owner")


def make_image(path: str | Path, seed: int = 0, size: tuple[int, int] = (300, 400)) -> Path:
    """A text-like page image; the format follows the file extension."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    make_page_image(*size, seed=seed).save(path)
    return Path(path)


def make_tiff(path: str | Path, frames: int = 2) -> Path:
    """A multi-page TIFF, one page image per frame."""
    first, *rest = [make_page_image(300, 400, seed=seed) for seed in range(frames)]
    first.save(path, save_all=True, append_images=rest)
    return Path(path)


def make_zero_page_pdf(path: str | Path) -> Path:
    """A valid PDF whose page tree is empty (PyMuPDF refuses to write one, so it is assembled by hand)."""
    objects = [b"<</Type/Catalog/Pages 2 0 R>>", b"<</Type/Pages/Kids[]/Count 0>>"]
    data = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(data))
        data += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(data)
    data += b"xref\n0 3\n0000000000 65535 f \n" + b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    data += b"trailer\n<</Size 3/Root 1 0 R>>\nstartxref\n%d\n%%%%EOF\n" % xref
    Path(path).write_bytes(data)
    return Path(path)


def make_truncated_pdf(path: str | Path) -> Path:
    """The first half of a compressed PDF: its page tree (in object streams) is beyond repair."""
    whole = make_pdf(Path(path).with_name("whole-" + Path(path).name), 3, garbage=3, deflate=True, use_objstms=1)
    data = whole.read_bytes()
    whole.unlink()
    Path(path).write_bytes(data[: len(data) // 2])
    return Path(path)


def make_png_header(path: str | Path, width: int, height: int) -> Path:
    """A PNG that claims ``width`` x ``height`` pixels but holds none: a huge image without allocating one."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    return Path(path)


def make_one_pixel_png(path: str | Path) -> Path:
    Image.new("RGB", (1, 1), "white").save(path)
    return Path(path)


def listing(directory: Path, manifests: bool = False) -> list[str]:
    """Every file below ``directory`` (hidden ones included, dsocr's ``.NAME.dsocr.json`` manifests only when
    ``manifests``), relative, sorted."""
    return sorted(
        str(path.relative_to(directory))
        for path in directory.rglob("*")
        if path.is_file() and (manifests or not path.name.endswith(".dsocr.json"))
    )
