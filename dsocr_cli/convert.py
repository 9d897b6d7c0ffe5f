"""Convert documents end to end: inputs -> pages -> backend -> writers, with the run's bookkeeping.

This is the library behind ``dsocr convert``; the CLI only builds a ``ConvertJob`` and calls ``run``.
Failures of one input never stop the others; the summary maps them to the documented exit code.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TextIO

from dsocr_cli.engine.backend import Backend, ConvertOptions
from dsocr_cli.errors import ExitCode, InputError, OutputError
from dsocr_cli.inputs.discover import InputSource
from dsocr_cli.inputs.pages import Document, PageSelection, open_document
from dsocr_cli.progress import Reporter
from dsocr_cli.results import Page, PageResult
from dsocr_cli.writers import FORMATS
from dsocr_cli.writers.atomic import directory_lock, make_dir
from dsocr_cli.writers.base import StringWriter, Writer
from dsocr_cli.writers.markdown import MarkdownWriter

RETRY_NGRAM_SIZE = 10
RETRY_NGRAM_WINDOW = 120
"""The loop guard's second try: shorter n-grams over a longer window ban far more repetition."""


@dataclass
class OutputTarget:
    """Where results go: stdout (``directory`` and ``file`` None), one file, or a directory."""

    directory: Path | None = None
    file: Path | None = None

    @property
    def to_stdout(self) -> bool:
        return self.directory is None and self.file is None


@dataclass
class ConvertJob:
    """Everything one ``dsocr convert`` run needs besides the backend."""

    sources: list[InputSource]
    options: ConvertOptions
    output: OutputTarget
    format: str = "markdown"
    tables: str = "markdown"
    page_separator: str = "<!-- page {number} -->"
    dpi: int = 144
    pages: PageSelection | None = None
    password: str | None = None
    skip_existing: bool = False
    layout_pdf: bool = False
    stream: bool = False


@dataclass
class RunSummary:
    """What happened, for the closing line and the exit code."""

    documents: int = 0
    converted: int = 0
    skipped: int = 0
    pages: int = 0
    failed_inputs: list[str] = field(default_factory=list)
    looped_pages: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def exit_code(self) -> ExitCode:
        if self.documents and not (self.converted or self.skipped):
            return ExitCode.ALL_FAILED
        if self.failed_inputs or self.looped_pages:
            return ExitCode.PARTIAL_FAILURE
        return ExitCode.OK

    def line(self) -> str:
        parts = [f"{self.converted} of {self.documents} document(s) converted", f"{self.pages} page(s)"]
        if self.skipped:
            parts.append(f"{self.skipped} skipped (output exists)")
        if self.failed_inputs:
            parts.append(f"{len(self.failed_inputs)} failed")
        if self.looped_pages:
            parts.append(f"{len(self.looped_pages)} page(s) looped")
        parts.append(f"{self.seconds:.1f} s")
        return "dsocr: " + ", ".join(parts)


def make_writer(job: ConvertJob, name: str) -> Writer:
    if name == "markdown":
        return MarkdownWriter(page_separator=job.page_separator, tables=job.tables)
    if name == "json":
        return FORMATS["json"](tables=job.tables)
    return FORMATS[name]()


def output_path(job: ConvertJob, source: InputSource, writer: Writer) -> Path | None:
    if job.output.file is not None:
        return job.output.file
    if job.output.directory is not None:
        return job.output.directory / f"{source.stem}{writer.suffix}"
    return None


def convert_page(
    backend: Backend, page: Page, options: ConvertOptions, reporter: Reporter, on_text: Callable[[str], None] | None
) -> PageResult:
    """One page with the loop guard: a page that hits the token limit is retried once with a stronger guard."""
    result = backend.convert(page, options, on_text)
    if result.finished or options.ngram_size == 0:
        return result
    reporter.warn(f"{page.source}: page {page.number} did not finish (model loop?); retrying with a stronger guard")
    stronger = replace(
        options,
        ngram_size=min(options.ngram_size, RETRY_NGRAM_SIZE),
        ngram_window=max(options.ngram_window, RETRY_NGRAM_WINDOW),
    )
    retried = backend.convert(page, stronger, on_text)
    retried.retried = True
    retried.seconds += result.seconds
    return retried


def run(job: ConvertJob, backend_factory: Callable[[], Backend], reporter: Reporter, stdout: TextIO = sys.stdout) -> RunSummary:
    """Convert every source; the backend (model) is created only once a document actually needs it."""
    summary = RunSummary(documents=len(job.sources))
    started = time.perf_counter()
    writer = make_writer(job, job.format)
    backend: Backend | None = None
    with ExitStack() as stack:
        if job.output.directory is not None:
            make_dir(job.output.directory)
            stack.enter_context(directory_lock(job.output.directory))
        reporter.start(len(job.sources))
        for source in job.sources:
            target = output_path(job, source, writer)
            if job.skip_existing and target is not None and target.exists():
                summary.skipped += 1
                reporter.document_done(source.name, skipped=True)
                continue
            try:
                with open_document(source, dpi=job.dpi, pages=job.pages, password=job.password) as document:
                    if backend is None:
                        backend = backend_factory()
                    results = convert_document(job, document, backend, reporter, summary, stdout)
            except InputError as exc:
                summary.failed_inputs.append(source.name)
                reporter.error(str(exc))
                reporter.document_done(source.name, skipped=False)
                continue
            write_document(job, writer, source, results, target, stdout)
            summary.converted += 1
            reporter.document_done(source.name, skipped=False)
    summary.seconds = time.perf_counter() - started
    return summary


def convert_document(
    job: ConvertJob, document: Document, backend: Backend, reporter: Reporter, summary: RunSummary, stdout: TextIO
) -> list[PageResult]:
    results: list[PageResult] = []
    reporter.document_started(document.source.name, len(document.page_numbers))
    streaming = job.stream and job.output.to_stdout

    def on_text(text: str) -> None:
        stdout.write(text)
        stdout.flush()

    for page in document.pages():
        result = convert_page(backend, page, job.options, reporter, on_text if streaming else None)
        if streaming:
            stdout.write("\n")
        if not result.finished:
            summary.looped_pages.append(f"{page.source}#{page.number}")
            reporter.warn(
                f"{page.source}: page {page.number} hit the {job.options.max_new_tokens}-token limit without "
                "finishing; its partial text is kept and marked"
            )
        summary.pages += 1
        results.append(result)
        reporter.page_done(result)
    return results


def write_document(
    job: ConvertJob,
    writer: Writer,
    source: InputSource,
    results: Sequence[PageResult],
    target: Path | None,
    stdout: TextIO,
) -> None:
    if target is None:
        if not job.stream:
            if not isinstance(writer, StringWriter):
                raise OutputError(f"--format {job.format} writes files; give -o DIR")
            stdout.write(writer.render(source.name, results))
            stdout.flush()
        return
    writer.write(source.name, results, target)
    if job.layout_pdf:
        layout = FORMATS["layout_pdf"]()
        layout.write(source.name, results, target.parent / f"{source.stem}{layout.suffix}")

