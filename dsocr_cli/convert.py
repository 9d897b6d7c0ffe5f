"""Convert documents end to end: inputs -> pages -> backend -> writers, with the run's bookkeeping.

This is the library behind ``dsocr convert``; the CLI only builds a ``ConvertJob`` and calls ``run``.
Failures of one input never stop the others; the summary maps them to the documented exit code.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass, field, replace
from itertools import chain
from pathlib import Path
from typing import TextIO

from dsocr_cli.engine.backend import Backend, ConvertOptions, PageRequest
from dsocr_cli.errors import DsocrError, ExitCode, InputError, OutputError
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


def retry_options(options: ConvertOptions) -> ConvertOptions | None:
    """The loop guard's second try for a page that hits the token limit; None when the guard is off."""
    if options.ngram_size == 0:
        return None
    return replace(
        options,
        ngram_size=min(options.ngram_size, RETRY_NGRAM_SIZE),
        ngram_window=max(options.ngram_window, RETRY_NGRAM_WINDOW),
    )


@dataclass
class DocumentRun:
    """One input on its way through the run: opened lazily, its page results collected until complete.

    ``open``, ``failed_open`` and ``next_page`` run on the backend's loader thread (except for the first
    document, opened here so that no model is loaded when no input is readable); the rest on this one.
    """

    source: InputSource
    target: Path | None
    document: Document | None = None
    pages: Iterator[Page] | None = None
    page_count: int = 0
    error: InputError | None = None
    results: list[PageResult] = field(default_factory=list)
    failed: bool = False

    def open(self, job: ConvertJob) -> bool:
        try:
            self.document = open_document(self.source, dpi=job.dpi, pages=job.pages, password=job.password)
        except InputError as exc:
            self.error = exc
            return False
        self.page_count = len(self.document.page_numbers)
        self.pages = self.document.pages()
        return True

    def failed_open(self) -> Page:
        assert self.error is not None
        raise self.error

    def next_page(self) -> Page:
        """Render the next selected page; the document is closed after its last page or its first failure."""
        if self.pages is None:
            raise InputError(f"{self.source.name}: not rendered after an earlier failure")
        try:
            page = next(self.pages)
        except BaseException:
            self.close()
            raise
        if self.document is not None and page.number == self.document.page_numbers[-1]:
            self.close()
        return page

    def close(self) -> None:
        if self.document is not None:
            self.document.close()
        self.document = self.pages = None


def close_all(documents: Iterable[DocumentRun]) -> None:
    for doc in documents:
        doc.close()


def page_requests(
    job: ConvertJob, documents: Iterable[DocumentRun], on_text: Callable[[str], None] | None
) -> Iterator[PageRequest]:
    """Every selected page of every document, in order; a document that cannot be opened is one failing request.

    A streamed page is not retried: its tokens are already on stdout, and a second attempt would print twice.
    """
    retry = None if on_text is not None else retry_options(job.options)
    for doc in documents:
        if doc.document is None and not doc.open(job):
            yield PageRequest(doc.source.name, 0, load=doc.failed_open, options=job.options, tag=doc)
            continue
        for number in list(doc.document.page_numbers):
            yield PageRequest(
                doc.source.name, number, load=doc.next_page, options=job.options, retry=retry, on_text=on_text, tag=doc
            )


def run(
    job: ConvertJob, backend_factory: Callable[[], Backend], reporter: Reporter, stdout: TextIO | None = None
) -> RunSummary:
    """Convert every source; the backend (model) is created only once a document actually needs it.

    Pages of all documents stream through ``backend.convert_many``; each document is written as soon
    as its last page is back. ``stdout`` defaults to ``sys.stdout`` as it is at call time, so
    redirections made by the caller apply.
    """
    stdout = stdout or sys.stdout
    summary = RunSummary(documents=len(job.sources))
    started = time.perf_counter()
    writer = make_writer(job, job.format)
    with ExitStack() as stack:
        if job.output.directory is not None:
            make_dir(job.output.directory)
            stack.enter_context(directory_lock(job.output.directory))
        reporter.start(len(job.sources))
        documents: list[DocumentRun] = []
        for source in job.sources:
            target = output_path(job, source, writer)
            if job.skip_existing and target is not None and target.exists():
                skip(source, summary, reporter)
            else:
                documents.append(DocumentRun(source, target))
        stack.callback(close_all, documents)
        remaining = iter(documents)
        for doc in remaining:
            if doc.open(job):
                backend = backend_factory()
                convert_all(job, backend, chain([doc], remaining), writer, reporter, summary, stdout)
                break
            fail(doc, doc.error, summary, reporter)
    summary.seconds = time.perf_counter() - started
    return summary


def convert_all(
    job: ConvertJob,
    backend: Backend,
    documents: Iterable[DocumentRun],
    writer: Writer,
    reporter: Reporter,
    summary: RunSummary,
    stdout: TextIO,
) -> None:
    """Feed the pages of ``documents`` to the backend and write each document once all its pages are back."""
    streaming = job.stream and job.output.to_stdout

    def on_text(text: str) -> None:
        stdout.write(text)
        stdout.flush()

    with closing(backend.convert_many(page_requests(job, documents, on_text if streaming else None))) as outcomes:
        for outcome in outcomes:
            doc: DocumentRun = outcome.request.tag
            if doc.failed:
                continue
            if outcome.error is not None:
                fail(doc, outcome.error, summary, reporter)
                continue
            result = outcome.result
            assert result is not None
            if not doc.results:
                reporter.document_started(doc.source.name, doc.page_count)
            if streaming:
                stdout.write("\n")
            record(job, result, summary, reporter)
            doc.results.append(result)
            if len(doc.results) < doc.page_count:
                continue
            if job.skip_existing and doc.target is not None and doc.target.exists():
                skip(doc.source, summary, reporter)  # an earlier input of this run wrote the same file
                continue
            write_document(job, writer, doc.source, doc.results, doc.target, stdout)
            summary.converted += 1
            reporter.document_done(doc.source.name, skipped=False)
            doc.results = []


def record(job: ConvertJob, result: PageResult, summary: RunSummary, reporter: Reporter) -> None:
    """Count a page and warn about loops: retried with a stronger guard, or still unfinished after that."""
    page = result.page
    if result.retried:
        reporter.warn(f"{page.source}: page {page.number} did not finish (model loop?); retried with a stronger guard")
    if not result.finished:
        summary.looped_pages.append(f"{page.source}#{page.number}")
        reporter.warn(
            f"{page.source}: page {page.number} hit the {job.options.max_new_tokens}-token limit without "
            "finishing; its partial text is kept and marked"
        )
    summary.pages += 1
    reporter.page_done(result)


def skip(source: InputSource, summary: RunSummary, reporter: Reporter) -> None:
    summary.skipped += 1
    reporter.document_done(source.name, skipped=True)


def fail(doc: DocumentRun, error: BaseException | None, summary: RunSummary, reporter: Reporter) -> None:
    """Record a failed input: the error line names it; its other pages are ignored."""
    doc.failed = True
    summary.failed_inputs.append(doc.source.name)
    message = str(error) if isinstance(error, DsocrError) else f"{doc.source.name}: {type(error).__name__}: {error}"
    reporter.error(message)
    reporter.document_done(doc.source.name, skipped=False)


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
