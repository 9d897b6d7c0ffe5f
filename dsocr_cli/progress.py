"""What a run tells people on stderr: progress, warnings, errors and the closing summary.

stdout carries results only. The progress display appears only when stderr is a terminal and
``--quiet`` is off; errors are always printed (one line each); warnings unless ``--quiet``; the
summary when stderr is a terminal, with ``-v``, or when something failed, so a successful cron run
stays silent. Colour follows rich, which honours NO_COLOR.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.file_proxy import FileProxy
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from dsocr_cli.messages import clean
from dsocr_cli.results import PageResult


PROGRESS_MODES = ("auto", "bar", "plain", "none")
"""``--progress``: auto = a bar when stderr is a terminal; bar; plain = one line per page (logs); none."""


class Reporter:
    """Progress and messages for one run; every method is safe to call whatever the display state.

    Every message goes through ``messages.clean`` (one line, secrets redacted).
    """

    def __init__(
        self, console: Console | None = None, quiet: bool = False, verbose: bool = False, progress: str = "auto"
    ) -> None:
        self.console = console or Console(stderr=True)
        self.quiet = quiet
        self.verbose = verbose
        if progress not in PROGRESS_MODES:
            raise ValueError(f"progress mode {progress!r}")
        if quiet or progress == "none":
            progress = "none"
        elif progress == "auto":
            progress = "bar" if self.console.is_terminal else "none"
        self.mode = progress
        self.interactive = self.mode == "bar"
        self.progress: Progress | None = None
        self.documents: TaskID | None = None
        self.pages: TaskID | None = None
        self.page_total: int | None = None
        self.pages_done = 0
        self.started = time.perf_counter()

    @property
    def wants_page_totals(self) -> bool:
        """Whether the display shows page totals, so the run should count pages before the first one."""
        return self.mode in ("bar", "plain")

    def start(self, documents: int) -> None:
        self.started = time.perf_counter()
        if not self.interactive:
            return
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self.progress.start()
        self.documents = self.progress.add_task("documents", total=documents, rate="")
        self.pages = self.progress.add_task("pages", total=None, rate="")

    def set_page_total(self, total: int) -> None:
        """All pages of the run, known before the first is converted."""
        self.page_total = total
        if self.progress is not None and self.pages is not None:
            self.progress.update(self.pages, total=total)

    def document_started(self, name: str, pages: int) -> None:
        self.info(f"{name}: {pages} page(s)")
        if self.progress is not None and self.pages is not None:
            self.progress.update(self.pages, description=f"pages ({escape(clean(name))})")

    def page_done(self, result: PageResult) -> None:
        self.pages_done += 1
        self.info(
            f"{result.page.source}: page {result.page.number}: {result.generated_tokens} tokens in "
            f"{result.seconds:.1f} s ({result.vision_tokens} vision tokens, {result.mode})"
        )
        if self.mode == "plain":
            total = f"/{self.page_total}" if self.page_total is not None else ""
            state = "finished" if result.finished else ("looped" if result.looped else "truncated")
            self._print(
                f"dsocr: [{self.pages_done}{total}] {result.page.source}: page {result.page.number} {state}, "
                f"{result.generated_tokens} tokens, {result.seconds:.1f} s, "
                f"{time.perf_counter() - self.started:.0f} s elapsed"
            )
        if self.progress is not None and self.pages is not None:
            self.progress.advance(self.pages)
            speed = self.progress.tasks[self.pages].speed
            self.progress.update(self.pages, rate=f"{speed:.2f} pages/s" if speed else "")

    def document_done(self, name: str) -> None:
        if self.progress is not None and self.documents is not None:
            self.progress.advance(self.documents)

    @contextmanager
    def loading(self, message: str) -> Iterator[None]:
        """Show ``message`` (e.g. "loading model ...") while the body runs: a spinner on a terminal, else a
        line with ``-v`` or ``--progress plain``."""
        if not self.interactive:
            if self.mode == "plain":
                self._print(f"dsocr: {message}")
            else:
                self.info(message)
            yield
            return
        with self.paused(), self.console.status(escape(clean(message))):
            yield

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Take the live display off the terminal while something else draws there (a model download)."""
        if self.progress is None:
            yield
            return
        self.progress.stop()
        try:
            yield
        finally:
            self.progress.start()

    def _print(self, message: str) -> None:
        self.console.print(escape(clean(message)), highlight=False, soft_wrap=True)

    def info(self, message: str) -> None:
        if self.verbose and not self.quiet:
            self._print(message)

    def warn(self, message: str) -> None:
        if not self.quiet:
            self.console.print(f"[yellow]warning:[/] {escape(clean(message))}", highlight=False, soft_wrap=True)

    def error(self, message: str) -> None:
        self.console.print(f"[red]error:[/] {escape(clean(message))}", highlight=False, soft_wrap=True)

    def stop(self) -> None:
        """Take the live display down (also on errors and signals, so the terminal's cursor comes back)."""
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def finish(self, summary_line: str, failed: bool) -> None:
        self.stop()
        if not self.quiet and (self.console.is_terminal or self.verbose or failed or self.mode == "plain"):
            self._print(summary_line)


class DownloadBar:
    """Bytes, speed and time left of a model download on stderr; draws nothing unless stderr is a terminal.

    Implements ``dsocr_cli.hub.TransferProgress``. Counts may go backwards (a server that ignores a
    resume request makes the download start over). While another rich live display owns the terminal
    (it has redirected stderr) the bar stays hidden rather than garble both; ``Reporter.paused`` makes room.
    """

    def __init__(self, description: str, console: Console | None = None, quiet: bool = False) -> None:
        self.description = description
        self.console = console or Console(stderr=True)
        self.quiet = quiet
        self.progress: Progress | None = None
        self.task: TaskID | None = None

    def start(self, total: int, completed: int) -> None:
        if self.quiet or not self.console.is_terminal or isinstance(sys.stderr, FileProxy):
            return
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self.progress.start()
        self.task = self.progress.add_task(escape(self.description), total=total, completed=completed)

    def advance(self, count: int) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.advance(self.task, count)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
