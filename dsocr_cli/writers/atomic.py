"""Atomic file writes, the output-directory lock and the per-input claims that let runs share a folder.

No reader, and no later run after a crash or Ctrl-C, may ever find a half-written file under its final name: every
file is written under a temporary name in the same directory, flushed to disk, then renamed over the target in one
step. Temporary names carry the writer's pid and host (``.<name>.<pid>@<host tag>.<random>.tmp``), so a run
removes only what a dead process of its own machine left, never the file a run on another machine, sharing the
folder over a network file system, is still writing.

Several runs (on one machine or many) may write into one output folder at once: each holds a shared lock on the
folder (``directory_lock(shared=True)``, which only keeps out a run that wants the folder to itself) and claims
each input before converting it (``Claims``): a claim file ``.<output name>.dsocr.lock`` beside the planned
output, created with ``O_CREAT | O_EXCL`` so that exactly one run gets it. A run skips an input another live run
has claimed; a claim is stale, and is taken over, when its process is dead on this host or when it has not been
refreshed for ``CLAIM_STALE_SECONDS`` (its run refreshes it every tenth of that while it lives, so a claim from
another host is trusted for as long as that host's run keeps beating). Clocks of machines sharing a folder must
agree to well within that time (NTP).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from dsocr_cli.errors import OutputError
from dsocr_cli.processes import process_exists

LOCK_NAME = ".dsocr.lock"

HOST = socket.gethostname()
"""This machine's name, as claims record it."""
HOST_TAG = hashlib.sha256(HOST.encode("utf-8", "surrogateescape")).hexdigest()[:8]
"""This machine in temporary file names (a host name may hold dots and other characters a name should not)."""

TEMP_NAME = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)(?:@(?P<host>[0-9a-f]{8}))?\.[0-9a-f]{8}\.tmp")
"""``.<name>.<pid>@<host tag>.<random>.tmp``: a file being written by process ``pid`` of host ``host``
(names without a host tag were written by an older dsocr, taken to be of this machine)."""
FOREIGN_TEMP_SECONDS = 24 * 3600.0
"""A temporary file of another host that has not changed for this long is abandoned (its machine crashed)."""


def temp_path(path: Path) -> Path:
    """A fresh temporary name beside ``path`` (same file system, so the final rename is atomic)."""
    return path.parent / f".{path.name}.{os.getpid()}@{HOST_TAG}.{secrets.token_hex(4)}.tmp"


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

    A file of this host is stale when the process named in it no longer runs; files of live processes (another
    run, this one) are left alone. A file of another host is left alone unless it has not changed for
    ``FOREIGN_TEMP_SECONDS`` (its process cannot be asked from here). Returns what was removed.
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
        if match["host"] not in (None, HOST_TAG):
            try:
                if time.time() - entry.stat(follow_symlinks=False).st_mtime < FOREIGN_TEMP_SECONDS:
                    continue
            except OSError:
                continue
        else:
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
def directory_lock(directory: Path, shared: bool = False) -> Iterator[None]:
    """Hold ``<directory>/.dsocr.lock`` for the ``with`` body; fail at once if another run holds it.

    ``shared``: many holders at once (runs that cooperate through ``Claims``); it still fails while a run
    holds the folder to itself (an older dsocr, which locks it exclusively), and it is where an unwritable
    folder is found before any model loads. A file system without locks (some network ones) lets a shared
    holder go on without it: the claims do the coordinating.
    """
    make_dir(directory)
    lock_path = directory / LOCK_NAME
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise _cannot(lock_path, exc) from exc
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            if shared:
                raise OutputError(
                    f"another dsocr run is writing to {directory} and does not share it (an older dsocr?)"
                ) from exc
            raise OutputError(f"another dsocr run is writing to {directory}") from exc
        except OSError as exc:
            if not shared or exc.errno not in _NO_LOCKS:
                raise _cannot(lock_path, exc) from exc
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock; the file stays so no waiter races an unlink


_NO_LOCKS = frozenset(
    getattr(errno, code) for code in ("ENOLCK", "EOPNOTSUPP", "ENOTSUP", "ENOSYS", "EINVAL") if hasattr(errno, code)
)


# ---------------------------------------------------------------------------------------------- claims

CLAIM_STALE_SECONDS = 300.0
"""A claim not refreshed for this long belongs to a run that died, hung or lost the folder: it is taken over."""
TAKEOVER_SECONDS = 30.0
"""A takeover note (held for the milliseconds a takeover takes) older than this was left by a dead process."""
_TAKEOVER_SUFFIX = ".takeover"
_ATTEMPTS = 5


@dataclass(frozen=True)
class ClaimHolder:
    """Who holds a claim, as its file says (all None/0 when it could not be read: a claim being written)."""

    host: str | None = None
    pid: int = 0
    since: float | None = None
    token: str | None = None

    def __str__(self) -> str:
        if self.host is None:
            return "a run that is starting"
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since)) if self.since else "?"
        return f"pid {self.pid} on {self.host}, since {when}"


def read_claim(path: Path) -> tuple[ClaimHolder, os.stat_result] | None:
    """The holder and file status of the claim at ``path``; None when there is none."""
    try:
        with open(path, "rb") as handle:
            status = os.fstat(handle.fileno())
            data = handle.read(4096)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _cannot(path, exc) from exc
    try:
        fields = json.loads(data.decode("utf-8"))
        holder = ClaimHolder(str(fields["host"]), int(fields["pid"]), float(fields["time"]), str(fields["token"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        holder = ClaimHolder()  # empty or cut short: its creator is writing it, or died doing so
    return holder, status


class Claims:
    """This run's claims on inputs (see the module docstring); a context manager that releases them all.

    ``take`` and ``release`` may be called from any thread. While any claim is held, a daemon thread touches
    each one every ``stale_after / 10`` seconds.
    """

    def __init__(self, stale_after: float = CLAIM_STALE_SECONDS) -> None:
        self.stale_after = stale_after
        self.token = secrets.token_hex(8)
        self.held: set[Path] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def __enter__(self) -> Claims:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def take(self, path: Path) -> ClaimHolder | None:
        """Claim ``path`` for this run: None once this run holds it, else the live run that does.

        A stale claim is taken over. OutputError when the claim cannot be written at all.
        """
        make_dir(path.parent)
        holder = ClaimHolder()
        for attempt in range(_ATTEMPTS):
            if self._create(path):
                return None
            found = read_claim(path)
            if found is None:
                continue  # released in the meantime: try again
            holder, status = found
            if holder.token == self.token:
                self._hold(path)
                return None
            if not self.is_stale(holder, status, self.stale_after):
                return holder
            if self._take_over(path, status):
                return None
            time.sleep(0.01 * (attempt + 1))  # another run is taking it over: see who won
        return holder

    def is_stale(self, holder: ClaimHolder, status: os.stat_result, stale_after: float) -> bool:
        """Not refreshed for ``stale_after`` seconds, or its process is dead on this host."""
        if time.time() - status.st_mtime > stale_after:
            return True
        return holder.host == HOST and holder.pid != os.getpid() and holder.pid > 0 and not process_exists(holder.pid)

    def release(self, path: Path) -> None:
        """Give up the claim on ``path``: removed if it is still this run's (a run that took it over keeps it)."""
        with self._lock:
            if path not in self.held:
                return
            self.held.discard(path)
        with contextlib.suppress(OutputError, OSError):
            found = read_claim(path)
            if found is not None and found[0].token == self.token:
                path.unlink()

    def close(self) -> None:
        """Release every claim and stop the heartbeat."""
        with self._lock:
            held = list(self.held)
        for path in held:
            self.release(path)
        self._stop.set()
        if self._beat is not None and self._beat is not threading.current_thread():
            self._beat.join(timeout=5)

    def refresh(self) -> None:
        """Touch every claim this run holds (the heartbeat; a claim that is no longer this run's is dropped)."""
        with self._lock:
            held = list(self.held)
        for path in held:
            try:
                found = read_claim(path)
                if found is not None and found[0].token == self.token:
                    os.utime(path)
                    continue
            except (OutputError, OSError):
                continue  # the folder is away for a moment: try again at the next beat
            with self._lock:
                self.held.discard(path)

    def _create(self, path: Path) -> bool:
        """Create the claim file; False when one exists already."""
        record = {"host": HOST, "pid": os.getpid(), "time": time.time(), "token": self.token}
        if not _create_exclusive(path, json.dumps(record) + "\n"):
            return False
        self._hold(path)
        return True

    def _hold(self, path: Path) -> None:
        with self._lock:
            self.held.add(path)
            if self._beat is None:
                self._beat = threading.Thread(target=self._heartbeat, name="dsocr-claims", daemon=True)
                self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.stale_after / 10):
            self.refresh()

    def _take_over(self, path: Path, seen: os.stat_result) -> bool:
        """Replace the stale claim last seen as ``seen`` by this run's; False when another run got there first.

        Whoever removes another run's claim first holds ``<claim>.takeover`` and checks, holding it, that the
        claim is still the stale one it saw: two runs that both found it stale cannot both take it over.
        """
        note = path.with_name(path.name + _TAKEOVER_SUFFIX)
        record = {"host": HOST, "pid": os.getpid(), "time": time.time(), "token": self.token}
        if not _create_exclusive(note, json.dumps(record) + "\n"):
            found = read_claim(note)
            if found is not None and self.is_stale(*found, TAKEOVER_SECONDS):
                with contextlib.suppress(OSError):
                    note.unlink()  # left by a process that died while taking a claim over
            return False
        try:
            found = read_claim(path)
            if found is None:
                return self._create(path)
            holder, status = found
            if (status.st_ino, status.st_mtime_ns) != (seen.st_ino, seen.st_mtime_ns):
                return False  # refreshed or replaced since: no longer the claim that was stale
            if not self.is_stale(holder, status, self.stale_after):
                return False
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return self._create(path)
        finally:
            with contextlib.suppress(OSError):
                note.unlink()


def _create_exclusive(path: Path, text: str) -> bool:
    """Create ``path`` holding ``text`` if nothing is there (atomically: ``O_CREAT | O_EXCL``); False if something is."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        return False
    except OSError as exc:
        raise _cannot(path, exc) from exc
    try:
        os.write(fd, text.encode("utf-8"))
    except OSError as exc:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise _cannot(path, exc) from exc
    os.close(fd)
    return True


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
