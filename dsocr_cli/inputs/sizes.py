"""Byte sizes as people write them (``512M``, ``1.5GiB``) and as dsocr's messages show them (``1 GiB``).

Pure functions over the standard library and ``dsocr_cli.errors`` (importing this module still runs the
``dsocr_cli.inputs`` package's ``__init__``, which loads PyMuPDF and Pillow).
"""

from __future__ import annotations

import re

from dsocr_cli.errors import UsageError

_SIZE = re.compile(r"(?P<number>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>[kmgt]?)(?P<binary>i?)(?P<bytes>b?)", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}
_BINARY_UNITS = ("bytes", "KiB", "MiB", "GiB", "TiB")


def parse_size(text: str, *, option: str = "--max-input-size") -> int:
    """A size in bytes from ``text``: a number with an optional unit, case-insensitive, spaces allowed.

    ``K``/``M``/``G``/``T`` alone or with ``iB`` (``512M``, ``1.5GiB``) are powers of 1024, as in ``sort -S``
    and Docker; with ``B`` only (``500MB``) they are SI powers of 1000, as in coreutils. A bare number or a
    ``B`` suffix is bytes. Fractions are allowed (``1.5G``) and rounded down to whole bytes; the result must
    be at least 1 byte. Anything else is a UsageError naming ``option``.
    """
    match = _SIZE.fullmatch(text.strip())
    if match is None or (match["binary"] and not match["unit"]):
        raise UsageError(f"{option}: invalid size {text!r} (expected e.g. 512M, 1G, 1.5GiB)")
    unit = match["unit"].lower()
    base = 1000 if match["bytes"] and not match["binary"] and unit else 1024
    # Whole numbers stay exact integers; only a fraction goes through float.
    number = match["number"]
    if "." in number:
        size = int(float(number) * base ** _POWERS[unit])
    else:
        size = int(number) * base ** _POWERS[unit]
    if size < 1:
        raise UsageError(f"{option}: size {text!r} is less than 1 byte")
    return size


def format_size(size: int) -> str:
    """``size`` bytes in the largest binary unit that keeps it at least 1: ``1 GiB``, ``1.5 MiB``, ``800 bytes``."""
    value = float(size)
    for unit in _BINARY_UNITS:
        if value < 1024 or unit == _BINARY_UNITS[-1]:
            if unit == "bytes":
                return "1 byte" if size == 1 else f"{size} bytes"
            return f"{value:.4g} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
