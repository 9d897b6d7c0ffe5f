"""Turn command-line arguments (files, directories, ``-``) into a flat list of input sources.

A bad argument does not stop the run: it becomes a source that carries its error, so the caller
converts every other input and reports each failure in the same loop (``open_document`` raises it).

Regular files are read by path when they are opened, whatever their size. Streams (stdin, and special
files: named pipes, devices, bash's ``<(...)``) can be read only once, so ``discover`` reads them, in
steps that keep a wrong, silent or endless stream cheap:

1. wait at most ``read_timeout`` seconds for the first byte: a pipe with no writer fails instead of hanging;
2. read the first ``HEAD_SIZE`` bytes and sniff them: ``/dev/zero`` or a text stream fails at once;
3. copy the rest into a temporary file (never into memory), up to ``max_input_bytes`` in all: an endless
   or huge stream fails when it passes the limit, and the partial copy is deleted.

The source then reads that file (``InputSource.spool``) but keeps the name the user gave (``-``, ``scan.pipe``).
Whoever calls ``discover`` owns the temporary files: ``close_sources(sources)`` (or ``source.close()``)
deletes them; any still there when the interpreter exits are deleted then, as a safety net.
"""

from __future__ import annotations

import atexit
import errno
import io
import math
import os
import select
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatch
from functools import partial
from pathlib import Path
from typing import BinaryIO

from dsocr_cli.defaults import MAX_INPUT_BYTES, STDIN_TIMEOUT_SECONDS
from dsocr_cli.errors import InputError, UsageError
from dsocr_cli.inputs.sizes import format_size, parse_size
from dsocr_cli.inputs.sniff import HEAD_SIZE, SUPPORTED_EXTENSIONS, sniff

try:
    import fcntl
except ImportError:  # Windows: no pipe buffer to enlarge
    fcntl = None  # type: ignore[assignment]

__all__ = ["STDIN", "SUPPORTED_EXTENSIONS", "InputSource", "close_sources", "discover", "parse_size"]
# parse_size lives in sizes.py; it is re-exported here because ``discover``'s callers parse the limit.

STDIN = "-"
SPOOL_PREFIX = "dsocr-input-"
"""Name prefix of the temporary files that hold streamed inputs (in ``tempfile.gettempdir()``, i.e. ``$TMPDIR``)."""
_CHUNK = 1024 * 1024
"""Bytes asked for per read while spooling: memory use stays at this, whatever the input's size."""
_PIPE_NAP = 0.0005
"""Seconds to let an enlarged (``_CHUNK``) pipe fill after a splice that found it less than half full.

A reader faster than its writer would otherwise take the bytes a few KiB at a time, each splice contending
with the writer for the pipe's lock: measured here, a nap halves the CPU that spooling a 1 GiB stream costs
both processes, at the same wall time. At most 2 GB/s pass while napping, above what a pipe writer sustains."""

_SPOOLED: set[Path] = set()
"""Temporary files created and not yet deleted, for the exit-time safety net."""


@dataclass(frozen=True)
class InputSource:
    """One input document: a file on disk, a stream saved to a temporary file, or bytes in memory."""

    name: str
    """The input as the user named it (files found in a directory: that directory joined with the file)."""
    stem: str
    """Base name for output files: the file stem, or ``stdin``."""
    path: Path | None = None
    """The regular file the user named or a walk found; None for stdin and special files."""
    data: bytes | None = field(default=None, repr=False)
    """The whole input in memory, for library callers that already hold it (``discover`` never sets it)."""
    error: InputError | None = None
    """Why this input cannot be converted, when that was already known while discovering it."""
    spool: Path | None = None
    """The temporary file holding a stream's bytes (stdin, a pipe, a device); ``close`` deletes it."""
    relative: str | None = None
    """For a file found in a directory argument: its path below that directory (outputs mirror it)."""

    @property
    def content_path(self) -> Path | None:
        """The file on disk that holds this input's bytes: the spool for a stream, else ``path``."""
        return self.spool if self.spool is not None else self.path

    def fail(self, cause: str) -> InputError:
        """The one-line error for this input: ``name: cause``."""
        return InputError(f"{self.name}: {cause}")

    def open(self) -> BinaryIO:
        """A seekable binary stream over the input (Pillow and the sniffer need to seek)."""
        if self.data is not None:
            return io.BytesIO(self.data)
        location = self.content_path
        assert location is not None, "a source without data has a path or a spool"
        try:
            return location.open("rb")
        except OSError as exc:
            raise self.fail(f"cannot read: {exc.strerror or exc}") from exc

    def head(self, size: int) -> bytes:
        """The first ``size`` bytes (fewer for a short input), enough to tell the file type."""
        with self.open() as stream:
            try:
                return stream.read(size)
            except OSError as exc:
                raise self.fail(f"cannot read: {exc.strerror or exc}") from exc

    def close(self) -> None:
        """Delete this source's temporary file, if it has one; harmless to call twice or for a plain file.

        Close any ``Document`` opened from it first: the source cannot be opened again afterwards.
        """
        if self.spool is not None:
            _discard(self.spool)


def close_sources(sources: Iterable[InputSource]) -> None:
    """``close`` every source: call it when a run is done with what ``discover`` returned (e.g. in ``finally``)."""
    for source in sources:
        source.close()


def discover(
    args: list[str],
    glob: str | None = None,
    *,
    stdin: BinaryIO | None = None,
    max_input_bytes: int | None = MAX_INPUT_BYTES,
    read_timeout: float | None = STDIN_TIMEOUT_SECONDS,
    exclude: Callable[[Path], bool] | None = None,
) -> list[InputSource]:
    """Expand ``args`` in order: files as given, directories walked recursively, ``-`` read from stdin.

    ``glob`` filters the files found inside directories by name (fnmatch); files named explicitly are
    always taken. Hidden files and directories are skipped during a walk, and so are files for which
    ``exclude(path)`` is true (``path`` as the walk found it: the directory argument joined with the
    file's relative path, not resolved); ``exclude`` never drops a file named explicitly. A file reached
    twice is kept once. Missing paths and directories with nothing to convert become sources carrying
    their error.

    Stdin and special files are read now (see the module docstring): ``read_timeout`` seconds (None: no
    limit) for the first byte, then at most ``max_input_bytes`` bytes (None: no limit) into a temporary
    file; a silent, unsupported or too large stream becomes a source carrying its error. Regular files are
    not read here and have no size limit. ``stdin`` replaces ``sys.stdin`` for ``-`` (tests, or a caller
    that already holds the stream); a stream without a file descriptor (``io.BytesIO``) cannot be waited
    on, so ``read_timeout`` does not apply to it. Stdin is spooled (and limited) even when the shell
    redirects a regular file into it. A terminal on stdin is a UsageError, as is ``-`` twice.

    The caller must ``close_sources`` the result when done (it deletes the temporary files).
    """
    sources: list[InputSource] = []
    seen: set[str] = set()
    stdin_read = False
    limits = {"max_bytes": max_input_bytes, "timeout": read_timeout}
    try:
        for arg in args:
            if arg == STDIN:
                if stdin_read:
                    raise UsageError("-: stdin can be given only once")
                stdin_read = True
                stream = stdin if stdin is not None else getattr(sys.stdin, "buffer", None)
                if stream is None:
                    sources.append(_failed(STDIN, "stdin is closed", stem="stdin"))
                else:
                    sources.append(_read_stdin(stream, **limits))
                continue
            path = Path(arg)
            if path.is_dir():
                found = _walk(arg, glob, exclude) or [_failed(arg, _nothing_found(glob))]
            elif path.is_file():
                found = [InputSource(name=arg, stem=path.stem, path=path)]
            elif path.exists():
                found = [_read_special(arg, path, **limits)]
            else:
                found = [_failed(arg, "no such file or directory")]
            for source in found:
                if source.path is not None:
                    key = os.path.realpath(source.path)
                    if key in seen:
                        continue
                    seen.add(key)
                sources.append(source)
    except BaseException:
        # A usage error or Ctrl-C while reading a later stream: the earlier ones' files are nobody's now.
        close_sources(sources)
        raise
    return sources


# ---------------------------------------------------------------- streams


def _read_stdin(stream: BinaryIO, *, max_bytes: int | None, timeout: float | None) -> InputSource:
    """Spool stdin; refusing a terminal saves the user from a command that silently waits."""
    if stream.isatty():
        raise UsageError("-: stdin is a terminal; pipe a file into it (dsocr convert - < scan.pdf)")
    try:
        fd = stream.fileno()
    except (OSError, ValueError):  # io.UnsupportedOperation (BytesIO) is both
        return _spool(STDIN, "stdin", stream.read, max_bytes)
    # Read the descriptor itself (nothing has been read through ``stream``, so its buffer is empty).
    if not _wait_readable(fd, timeout):
        return _failed(STDIN, _silent(timeout), stem="stdin")
    return _spool(STDIN, "stdin", partial(_read_fd, fd), max_bytes, fd)


def _read_special(arg: str, path: Path, *, max_bytes: int | None, timeout: float | None) -> InputSource:
    """A pipe or device (such as bash's ``<(curl ...)``) cannot be seeked, so spool it once, like stdin.

    Opened non-blocking, because opening a named pipe that has no writer blocks inside ``open()`` itself;
    the wait for the first byte has the timeout, and the reads after it block as usual.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        return _failed(arg, f"cannot read: {exc.strerror or exc}")
    try:
        if not _wait_readable(fd, timeout):
            return _failed(arg, _silent(timeout))
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return _spool(arg, path.stem, partial(_read_fd, fd), max_bytes, fd)
    except OSError as exc:
        return _failed(arg, f"cannot read: {exc.strerror or exc}")
    finally:
        os.close(fd)


def _wait_readable(fd: int, timeout: float | None) -> bool:
    """True once ``fd`` has data or has ended (EOF, hang-up); False when ``timeout`` seconds pass first.

    On Linux a named pipe that never had a writer reports nothing (not a hang-up), so it waits out the
    timeout. Without ``poll`` (Windows) there is no waiting with a limit: True, and the first read blocks.
    """
    if not hasattr(select, "poll"):
        return True
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLPRI)
    milliseconds = None if timeout is None else max(0, math.ceil(timeout * 1000))
    return bool(poller.poll(milliseconds))


def _read_fd(fd: int, size: int) -> bytes:
    """Up to ``size`` bytes from ``fd``; b"" only at the end. Waits (no limit) if ``fd`` is non-blocking."""
    while True:
        try:
            return os.read(fd, size)
        except BlockingIOError:
            _wait_readable(fd, None)


def _silent(timeout: float | None) -> str:
    return f"no data after {timeout:g} s (a pipe with no writer?)"


def _spool(
    name: str, stem: str, read: Callable[[int], bytes], max_bytes: int | None, fd: int | None = None
) -> InputSource:
    """Sniff the first bytes of ``read``, then copy all of it into a temporary file, at most ``max_bytes``.

    The sniff comes first so that an unsupported stream fails before anything large is read; a stream
    over the limit fails as soon as it passes it, and its partial copy is deleted at once. ``fd``, when
    ``read`` reads a file descriptor, lets the copy move a pipe's bytes in the kernel (``splice``).
    """
    head = b""
    try:
        while len(head) < HEAD_SIZE:
            chunk = read(HEAD_SIZE - len(head))
            if not chunk:
                break
            head += chunk
    except OSError as exc:
        return _failed(name, f"cannot read: {exc.strerror or exc}", stem=stem)
    try:
        sniff(head, name)
    except InputError as exc:
        return InputSource(name=name, stem=stem, error=exc)
    too_large = f"larger than the {format_size(max_bytes or 0)} input limit (--max-input-size)"
    if max_bytes is not None and len(head) > max_bytes:
        return _failed(name, too_large, stem=stem)
    try:
        out_fd, temp = tempfile.mkstemp(prefix=SPOOL_PREFIX)
    except OSError as exc:
        return _failed(name, f"cannot create a temporary file: {exc.strerror or exc}", stem=stem)
    spool = Path(temp)
    _SPOOLED.add(spool)
    kept = False
    try:
        with os.fdopen(out_fd, "wb") as out:
            out.write(head)
            if not _copy_rest(read, fd, out, None if max_bytes is None else max_bytes - len(head)):
                return _failed(name, too_large, stem=stem)
        kept = True
        return InputSource(name=name, stem=stem, spool=spool)
    except OSError as exc:
        if exc.errno in _DISK_FULL:
            cause = f"cannot save to a temporary file in {os.path.dirname(temp)}: {exc.strerror or exc}"
        else:
            cause = f"cannot read: {exc.strerror or exc}"
        return _failed(name, cause, stem=stem)
    finally:
        if not kept:
            _discard(spool)


_DISK_FULL = frozenset(getattr(errno, code) for code in ("ENOSPC", "EDQUOT", "EFBIG") if hasattr(errno, code))
"""Errors of the temporary file's disk, worded as such (any other error while copying is the input's)."""


def _copy_rest(read: Callable[[int], bytes], fd: int | None, out: BinaryIO, budget: int | None) -> bool:
    """Copy what is left of the stream into ``out``; False as soon as more than ``budget`` bytes come.

    Asks for one byte past the budget, which is enough to know the stream is over it. From a pipe the
    bytes move in the kernel (``splice``, with the pipe's buffer enlarged and let fill, see ``_PIPE_NAP``),
    several times faster than through Python; anything else is read and written in ``_CHUNK`` pieces.
    Either way memory stays small.
    """
    out.flush()
    if fd is not None and hasattr(os, "splice") and stat.S_ISFIFO(os.fstat(fd).st_mode):
        if 0 < _pipe_size(fd) < _CHUNK:
            try:
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _CHUNK)
            except OSError:
                pass  # above the system's pipe-max-size: the default buffer only costs speed
        # Only an enlarged pipe naps: a small one would cap the rate at its size per nap.
        nap = _PIPE_NAP if _pipe_size(fd) >= _CHUNK else 0.0
        while True:
            want = _CHUNK if budget is None else min(_CHUNK, budget + 1)
            try:
                moved = os.splice(fd, out.fileno(), want)
            except BlockingIOError:
                _wait_readable(fd, None)
                continue
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                break  # the temporary file's filesystem cannot splice: copy through Python instead
            if moved == 0:
                return True
            if budget is not None:
                if moved > budget:
                    return False
                budget -= moved
            if moved < _CHUNK // 2 and nap:
                time.sleep(nap)
    while True:
        want = _CHUNK if budget is None else min(_CHUNK, budget + 1)
        chunk = read(want)
        if not chunk:
            return True
        if budget is not None:
            if len(chunk) > budget:
                return False
            budget -= len(chunk)
        out.write(chunk)


def _pipe_size(fd: int) -> int:
    """The pipe's buffer in bytes; 0 where the system cannot say (or set) it."""
    if fcntl is None or not hasattr(fcntl, "F_GETPIPE_SZ") or not hasattr(fcntl, "F_SETPIPE_SZ"):
        return 0
    try:
        return fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)
    except OSError:
        return 0


def _discard(spool: Path) -> None:
    _SPOOLED.discard(spool)
    try:
        spool.unlink(missing_ok=True)
    except OSError:
        pass  # a temporary file that cannot be deleted is not worth failing a run for


@atexit.register
def _discard_all() -> None:
    """The safety net: temporary files nobody closed go when the interpreter exits (not on SIGKILL)."""
    for spool in list(_SPOOLED):
        _discard(spool)


# ---------------------------------------------------------------- directories


def _nothing_found(glob: str | None) -> str:
    if glob is not None:
        return f"no files match {glob!r}"
    return "no supported files (" + ", ".join(sorted(SUPPORTED_EXTENSIONS)) + ")"


def _walk(root: str, glob: str | None, exclude: Callable[[Path], bool] | None = None) -> list[InputSource]:
    """Files under ``root`` that match and are not excluded, sorted by path; unreadable directories become
    failed sources."""
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
            if not path.is_file() or (exclude is not None and exclude(path)):
                continue
            name = os.path.join(dirpath, filename)
            relative = os.path.relpath(name, root)
            found.append((_sort_key(name, root), InputSource(name=name, stem=path.stem, path=path, relative=relative)))
    return [source for _, source in sorted(found, key=lambda item: item[0])]


def _sort_key(name: str, root: str) -> tuple[str, ...]:
    """Path components below ``root``: sorts ``a/b.png`` next to ``a/c.png``, whatever the separators."""
    return Path(os.path.relpath(name, root)).parts


def _wanted(filename: str, glob: str | None) -> bool:
    if glob is not None:
        return fnmatch(filename, glob)
    return Path(filename).suffix.lower() in SUPPORTED_EXTENSIONS


def _failed(name: str, cause: str, *, stem: str | None = None) -> InputSource:
    stem = Path(name).stem if stem is None else stem
    return InputSource(name=name, stem=stem, error=InputError(f"{name}: {cause}"))
