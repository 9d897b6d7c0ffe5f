"""Turn command-line arguments (files, directories, ``-``) into a flat list of input sources.

A bad argument does not stop the run: it becomes a source that carries its error, so the caller
converts every other input and reports each failure in the same loop (``open_document`` raises it).
"""

from __future__ import annotations

import io
import os
import sys
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import BinaryIO

from dsocr_cli.errors import InputError, UsageError

STDIN = "-"
SUPPORTED_EXTENSIONS = frozenset({".pdf", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".webp", ".bmp"})
"""What a directory walk picks up when no ``--glob`` is given; the file's content still decides its type."""


@dataclass(frozen=True)
class InputSource:
    """One input document: a file on disk, or the bytes read from stdin."""

    name: str
    """The input as the user named it (files found in a directory: that directory joined with the file)."""
    stem: str
    """Base name for output files: the file stem, or ``stdin``."""
    path: Path | None = None
    data: bytes | None = field(default=None, repr=False)
    """The whole input, for stdin (a pipe can be read only once)."""
    error: InputError | None = None
    """Why this input cannot be converted, when that was already known while discovering it."""

    def fail(self, cause: str) -> InputError:
        """The one-line error for this input: ``name: cause``."""
        return InputError(f"{self.name}: {cause}")

    def open(self) -> BinaryIO:
        """A seekable binary stream over the input (Pillow and the sniffer need to seek)."""
        if self.data is not None:
            return io.BytesIO(self.data)
        assert self.path is not None, "a source without data has a path"
        try:
            return self.path.open("rb")
        except OSError as exc:
            raise self.fail(f"cannot read: {exc.strerror or exc}") from exc

    def head(self, size: int) -> bytes:
        """The first ``size`` bytes (fewer for a short input), enough to tell the file type."""
        with self.open() as stream:
            try:
                return stream.read(size)
            except OSError as exc:
                raise self.fail(f"cannot read: {exc.strerror or exc}") from exc


def discover(args: list[str], glob: str | None = None, *, stdin: BinaryIO | None = None) -> list[InputSource]:
    """Expand ``args`` in order: files as given, directories walked recursively, ``-`` read from stdin.

    ``glob`` filters the files found inside directories by name (fnmatch); files named explicitly are
    always taken. Hidden files and directories are skipped during a walk. A file reached twice is kept
    once. Missing paths and directories with nothing to convert become sources carrying their error.
    ``stdin`` replaces ``sys.stdin`` for ``-`` (tests, or a caller that already holds the stream).
    """
    sources: list[InputSource] = []
    seen: set[str] = set()
    stdin_read = False
    for arg in args:
        if arg == STDIN:
            if stdin_read:
                raise UsageError("-: stdin can be given only once")
            stdin_read = True
            sources.append(_read_stdin(stdin if stdin is not None else sys.stdin.buffer))
            continue
        path = Path(arg)
        if path.is_dir():
            found = _walk(arg, glob) or [_failed(arg, _nothing_found(glob))]
        elif path.is_file():
            found = [InputSource(name=arg, stem=path.stem, path=path)]
        elif path.exists():
            found = [_read_special(arg, path)]
        else:
            found = [_failed(arg, "no such file or directory")]
        for source in found:
            if source.path is not None:
                key = os.path.realpath(source.path)
                if key in seen:
                    continue
                seen.add(key)
            sources.append(source)
    return sources


def _read_stdin(stream: BinaryIO) -> InputSource:
    """Read all of stdin now; refusing a terminal saves the user from a command that silently waits."""
    if stream.isatty():
        raise UsageError("-: stdin is a terminal; pipe a file into it (dsocr convert - < scan.pdf)")
    return InputSource(name=STDIN, stem="stdin", data=stream.read())


def _read_special(arg: str, path: Path) -> InputSource:
    """A pipe or device (such as bash's ``<(curl ...)``) cannot be seeked, so read it once, like stdin."""
    try:
        return InputSource(name=arg, stem=path.stem, data=path.read_bytes())
    except OSError as exc:
        return _failed(arg, f"cannot read: {exc.strerror or exc}")


def _nothing_found(glob: str | None) -> str:
    if glob is not None:
        return f"no files match {glob!r}"
    return "no supported files (" + ", ".join(sorted(SUPPORTED_EXTENSIONS)) + ")"


def _walk(root: str, glob: str | None) -> list[InputSource]:
    """Files under ``root`` that match, sorted by path; unreadable directories become failed sources."""
    found: list[tuple[tuple[str, ...], InputSource]] = []

    def unreadable(exc: OSError) -> None:
        name = str(exc.filename) if exc.filename is not None else root
        found.append((_sort_key(name, root), _failed(name, f"cannot read: {exc.strerror or exc}")))

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for filename in filenames:
            if filename.startswith(".") or not _wanted(filename, glob):
                continue
            path = Path(dirpath, filename)
            if not path.is_file():
                continue
            name = os.path.join(dirpath, filename)
            found.append((_sort_key(name, root), InputSource(name=name, stem=path.stem, path=path)))
    return [source for _, source in sorted(found, key=lambda item: item[0])]


def _sort_key(name: str, root: str) -> tuple[str, ...]:
    """Path components below ``root``: sorts ``a/b.png`` next to ``a/c.png``, whatever the separators."""
    return Path(os.path.relpath(name, root)).parts


def _wanted(filename: str, glob: str | None) -> bool:
    if glob is not None:
        return fnmatch(filename, glob)
    return Path(filename).suffix.lower() in SUPPORTED_EXTENSIONS


def _failed(name: str, cause: str) -> InputSource:
    return InputSource(name=name, stem=Path(name).stem, error=InputError(f"{name}: {cause}"))
