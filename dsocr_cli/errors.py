"""Exit codes and the exceptions that carry them.

The exit codes are a stable interface (documented in README.md and man/dsocr.1): scripts and cron jobs
branch on them, so a code never changes meaning.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    USAGE = 1
    PARTIAL_FAILURE = 2
    ALL_FAILED = 3
    MODEL = 4
    OUTPUT = 5
    INTERNAL = 70
    HANGUP = 129
    INTERRUPTED = 130
    TERMINATED = 143


EXIT_CODE_MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "done",
    ExitCode.USAGE: "usage error",
    ExitCode.PARTIAL_FAILURE: "some inputs failed, pages looped or were truncated, or a PDF was repaired (the others finished)",
    ExitCode.ALL_FAILED: "no input could be processed",
    ExitCode.MODEL: "model/weights problem",
    ExitCode.OUTPUT: "output not writable",
    ExitCode.INTERNAL: "internal error, a bug in dsocr (DSOCR_TRACEBACK=1 shows where; please report it)",
    ExitCode.HANGUP: "hung up (SIGHUP)",
    ExitCode.INTERRUPTED: "interrupted",
    ExitCode.TERMINATED: "terminated (SIGTERM)",
}
"""One wording for every place that documents the codes: ``dsocr convert --help`` and the man page."""


class DsocrError(Exception):
    """An error that is reported to the user as one line and maps to an exit code."""

    exit_code: ExitCode = ExitCode.ALL_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(DsocrError):
    """The command line or configuration asks for something that cannot be done."""

    exit_code = ExitCode.USAGE


class InputError(DsocrError):
    """One input (file, page, stream) cannot be read or converted; other inputs go on."""

    exit_code = ExitCode.ALL_FAILED


class ModelError(DsocrError):
    """The model or its weights cannot be found, downloaded, or loaded."""

    exit_code = ExitCode.MODEL


class OutputError(DsocrError):
    """An output cannot be written."""

    exit_code = ExitCode.OUTPUT


class ServerError(DsocrError):
    """A remote server (``convert --server``) cannot be reached or cannot convert a page.

    Raised for the run (exit 3, "no input could be processed") when no server answers at the start; a page
    that no server could convert fails alone with it (the run then exits 2 or 3 as for any failed input).
    """

    exit_code = ExitCode.ALL_FAILED


class Stopped(BaseException):
    """A signal (SIGTERM, SIGHUP) stopped the run; raised in the main thread by the CLI's signal handler.

    It unwinds like Ctrl-C's KeyboardInterrupt, so finished outputs stay and temporary files are removed on
    the way out, and derives from BaseException so that no ``except Exception`` stops it. ``message`` is the
    line printed on stderr, ``exit_code`` the documented code (128 + the signal number).
    """

    def __init__(self, exit_code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.message = message


def stdout_error(exc: OSError) -> OutputError:
    """The error for a stdout that cannot take the output (a full disk, ``> /dev/full``, a closed descriptor)."""
    return OutputError(f"cannot write to stdout: {exc.strerror or exc}")
