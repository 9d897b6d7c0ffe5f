"""Atomic file writes and the output-directory lock.

No reader, and no later run after a crash or Ctrl-C, may ever find a half-written file under its final name: every
file is written under a temporary name in the same directory, flushed to disk, then renamed over the target in one
step. The lock stops two runs from interleaving their files in one directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from dsocr_cli.errors import OutputError
from dsocr_cli.processes import process_exists

LOCK_NAME = ".dsocr.lock"


TEMP_NAME = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp")
"""``.<name>.<pid>.<random>.tmp``: a file being written by process ``pid``."""


def temp_path(path: Path) -> Path:
    """A fresh temporary name beside ``path`` (same file system, so the final rename is atomic)."""
    return path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


def commit_temp(temp: Path, path: Path) -> None:
    """Flush ``temp`` to disk and rename it over ``path``; on failure ``temp`` is removed and nothing changes."""
    try:
        fd = os.open(temp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise _cannot(path, exc) from exc
    _fsync_dir(path.parent)


def remove_stale_temps(directory: Path) -> list[Path]:
    """Remove temporary files that an earlier, dead dsocr process left in ``directory`` (killed, power cut).

    A file is stale when the process named in it no longer runs; files of live processes (another run,
    this one) are left alone. Returns what was removed.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        match = TEMP_NAME.fullmatch(entry.name)
        if match is None or not entry.is_file(follow_symlinks=False):
            continue
        pid = int(match["pid"])
        if pid == os.getpid() or process_exists(pid):
            continue
        with contextlib.suppress(OSError):
            os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def atomic_writer(path: Path) -> Iterator[BinaryIO]:
    """A binary file that appears at ``path`` only if the ``with`` body finishes; otherwise nothing is left behind."""
    make_dir(path.parent)
    temp = temp_path(path)
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for any new file
    except OSError as exc:
        raise _cannot(path, exc) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise _cannot(path, exc) from exc
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_writer(path) as handle:
        handle.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` as UTF-8 to ``path`` atomically, newlines untranslated."""
    atomic_write_bytes(path, text.encode("utf-8"))


def make_dir(directory: Path) -> None:
    """Create ``directory`` (and parents) or fail with one line naming it and the OS reason."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create directory {directory}: {exc.strerror or exc}") from exc


@contextlib.contextmanager
def directory_lock(directory: Path) -> Iterator[None]:
    """Hold ``<directory>/.dsocr.lock`` for the ``with`` body; fail at once if another run holds it."""
    make_dir(directory)
    lock_path = directory / LOCK_NAME
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise _cannot(lock_path, exc) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise OutputError(f"another dsocr run is writing to {directory}") from exc
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock; the file stays so no waiter races an unlink


def _cannot(path: Path, exc: OSError) -> OutputError:
    return OutputError(f"cannot write {path}: {exc.strerror or exc}")


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable; some file systems refuse to fsync a directory, which costs only durability."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
