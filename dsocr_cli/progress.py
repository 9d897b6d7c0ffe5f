"""What a run tells people on stderr: progress, warnings, errors and the closing summary.

stdout carries results only. The progress display appears only when stderr is a terminal and
``--quiet`` is off; errors are always printed (one line each); warnings unless ``--quiet``; the
summary when stderr is a terminal, with ``-v``, or when something failed, so a successful cron run
stays silent. Colour follows rich, which honours NO_COLOR.
"""

from __future__ import annotations

import sys
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

from dsocr_cli.results import PageResult


class Reporter:
    """Progress and messages for one run; every method is safe to call whatever the display state."""

    def __init__(self, console: Console | None = None, quiet: bool = False, verbose: bool = False) -> None:
        self.console = console or Console(stderr=True)
        self.quiet = quiet
        self.verbose = verbose
        self.interactive = self.console.is_terminal and not quiet
        self.progress: Progress | None = None
        self.documents: TaskID | None = None
        self.pages: TaskID | None = None

    def start(self, documents: int) -> None:
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
        self.pages = self.progress.add_task("pages", total=0, rate="")

    def document_started(self, name: str, pages: int) -> None:
        self.info(f"{name}: {pages} page(s)")
        if self.progress is not None and self.pages is not None:
            task = self.progress.tasks[self.pages]
            self.progress.update(self.pages, total=(task.total or 0) + pages, description=f"pages ({name})")

    def page_done(self, result: PageResult) -> None:
        self.info(
            f"{result.page.source}: page {result.page.number}: {result.generated_tokens} tokens in "
            f"{result.seconds:.1f} s ({result.vision_tokens} vision tokens, {result.mode})"
        )
        if self.progress is not None and self.pages is not None:
            self.progress.advance(self.pages)
            speed = self.progress.tasks[self.pages].speed
            self.progress.update(self.pages, rate=f"{speed:.2f} pages/s" if speed else "")

    def document_done(self, name: str, skipped: bool) -> None:
        if skipped:
            self.info(f"{name}: output exists, skipped (--force to redo)")
        if self.progress is not None and self.documents is not None:
            self.progress.advance(self.documents)

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

    def info(self, message: str) -> None:
        if self.verbose and not self.quiet:
            self.console.print(escape(message), highlight=False, soft_wrap=True)

    def warn(self, message: str) -> None:
        if not self.quiet:
            self.console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)

    def error(self, message: str) -> None:
        self.console.print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)

    def finish(self, summary_line: str, failed: bool) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        if not self.quiet and (self.console.is_terminal or self.verbose or failed):
            self.console.print(escape(summary_line), highlight=False, soft_wrap=True)


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
