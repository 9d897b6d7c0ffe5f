"""Convert documents end to end: inputs -> pages -> backend -> writers, with the run's bookkeeping.

This is the library behind ``dsocr convert``; the CLI only builds a ``ConvertJob`` and calls ``run``.
Rules:

- Every output path is planned before any model loads (``outputs.plan_outputs``): distinct inputs never
  share an output, and no output is, or resolves to, an input.
- Failures of one input never stop the others, an unwritable output included (exit 2); only stdout
  failing stops the run (exit 5). The summary maps what happened to the documented exit code.
- Memory is bounded by a page: each page result goes to the writers as it arrives and is dropped.
- Each output gets a manifest (``outputs.Manifest``) written "incomplete" before its first file and
  "complete" after its last, so ``--skip-existing`` skips only what is truly done.
- ``--shard K/N`` (``ConvertJob.shard``) converts only the inputs of that shard (``inputs.shard``); outputs are
  planned over all inputs first, so every shard names its outputs as one unsharded run would.
- Runs may share an output folder: each claims an input (``outputs.OutputPlan.claim``) just before converting
  it, and releases the claim once the output is written or the input failed. An input another live run has
  claimed is left for the end of the list and tried again there; if it is still claimed then, this run leaves
  it to that run and says so ("claimed by another run": neither converted nor failed here, exit 0), and that
  run reports its outcome (a failure there is redone by the next run, as always). An output another run
  finished since this run began is not redone (``outputs.made_meanwhile``). So with ``--skip-existing``, runs
  sharing a folder convert each input once between them and never skip one that nobody converted.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, closing, suppress
from dataclasses import dataclass, field, replace
from itertools import chain
from pathlib import Path
from typing import Any, TextIO

from dsocr_cli import __version__
from dsocr_cli.defaults import DEFAULT_MODEL, DPI, PAGE_SEPARATOR, RETRY_NGRAM_SIZE, RETRY_NGRAM_WINDOW
from dsocr_cli.engine.backend import Backend, ConvertOptions, PageRequest
from dsocr_cli.errors import DsocrError, ExitCode, InputError, OutputError, UsageError, stdout_error
from dsocr_cli.inputs.discover import InputSource
from dsocr_cli.inputs.pages import Document, PageSelection, open_document
from dsocr_cli.inputs.shard import Shard, check_shardable
from dsocr_cli.outputs import (
    Manifest,
    ManifestState,
    OutputPlan,
    OutputTarget,
    check_not_inputs,
    input_identity,
    made_meanwhile,
    manifest_state,
    plan_outputs,
    skip_reason,
)
from dsocr_cli.progress import Reporter
from dsocr_cli.results import Page, PageResult
from dsocr_cli.writers import FORMATS
from dsocr_cli.writers.atomic import (
    CLAIM_STALE_SECONDS,
    Claims,
    atomic_write_text,
    directory_lock,
    make_dir,
    remove_stale_temps,
)
from dsocr_cli.writers.base import DocumentWriter, TextDocument, Writer
from dsocr_cli.writers.markdown import MarkdownWriter

__all__ = ["ConvertJob", "OutputTarget", "RunSummary", "run"]


@dataclass
class ConvertJob:
    """Everything one ``dsocr convert`` run needs besides the backend."""

    sources: list[InputSource]
    options: ConvertOptions
    output: OutputTarget
    format: str = "markdown"
    tables: str = "markdown"
    page_separator: str = PAGE_SEPARATOR
    dpi: int = DPI
    pages: PageSelection | None = None
    pages_spec: str | None = None
    """``--pages`` as the user wrote it (recorded in the manifest: a page subset is not the whole document)."""
    password: str | None = None
    skip_existing: bool = False
    layout_pdf: bool = False
    stream: bool = False
    model: str = DEFAULT_MODEL
    """The model reference as given (recorded in outputs; the backend adds the resolved revision)."""
    provenance: bool = True
    """Record how each output was made inside it (Markdown comment, HTML meta tags, JSON object)."""
    shard: Shard | None = None
    """``--shard K/N``: convert only the sources of this shard (None: all of them)."""
    claim_timeout: float = CLAIM_STALE_SECONDS
    """Seconds after which another run's claim that was not refreshed is stale (``writers.atomic.Claims``)."""

    def settings(self) -> dict[str, Any]:
        """What shapes an output: two runs with equal settings on an unchanged input make the same files."""
        return {
            "model": self.model,
            "mode": self.options.mode,
            "prompt": self.options.prompt,
            "max_new_tokens": self.options.max_new_tokens,
            "ngram_size": self.options.ngram_size,
            "ngram_window": self.options.ngram_window,
            "format": self.format,
            "tables": self.tables,
            "page_separator": self.page_separator,
            "pages": self.pages_spec or "all",
            "dpi": self.dpi,
            "layout_pdf": self.layout_pdf,
            "provenance": self.provenance,
        }


@dataclass
class RunSummary:
    """What happened, for the closing line and the exit code."""

    documents: int = 0
    converted: int = 0
    skipped: int = 0
    pages: int = 0
    failed_inputs: list[str] = field(default_factory=list)
    looped_pages: list[str] = field(default_factory=list)
    truncated_pages: list[str] = field(default_factory=list)
    warned_inputs: list[str] = field(default_factory=list)
    unwritable_inputs: list[str] = field(default_factory=list)
    """Inputs that failed because their output could not be written (also in ``failed_inputs``)."""
    claimed_inputs: list[str] = field(default_factory=list)
    """Inputs left to another run that still held their claim at the end of this one (not failures)."""
    seconds: float = 0.0

    def exit_code(self) -> ExitCode:
        if self.documents and not (self.converted or self.skipped or self.claimed_inputs):
            if self.unwritable_inputs and len(self.unwritable_inputs) == len(self.failed_inputs):
                return ExitCode.OUTPUT
            return ExitCode.ALL_FAILED
        if self.failed_inputs or self.looped_pages or self.truncated_pages or self.warned_inputs:
            return ExitCode.PARTIAL_FAILURE
        return ExitCode.OK

    def line(self) -> str:
        parts = [f"{self.converted} of {self.documents} document(s) converted", f"{self.pages} page(s)"]
        if self.skipped:
            parts.append(f"{self.skipped} skipped (already done)")
        if self.claimed_inputs:
            parts.append(f"{len(self.claimed_inputs)} claimed by another run")
        if self.failed_inputs:
            parts.append(f"{len(self.failed_inputs)} failed")
        if self.warned_inputs:
            parts.append(f"{len(self.warned_inputs)} with warnings")
        if self.looped_pages:
            parts.append(f"{len(self.looped_pages)} page(s) looped")
        if self.truncated_pages:
            parts.append(f"{len(self.truncated_pages)} page(s) truncated")
        parts.append(f"{self.seconds:.1f} s")
        return "dsocr: " + ", ".join(parts)


def make_writer(job: ConvertJob, name: str) -> Writer:
    if name == "markdown":
        return MarkdownWriter(page_separator=job.page_separator, tables=job.tables)
    if name == "json":
        return FORMATS["json"](tables=job.tables)
    return FORMATS[name]()


def retry_options(options: ConvertOptions) -> ConvertOptions | None:
    """The loop guard's second try for a page whose output loops (``options`` resolved: ``with_guard``); None
    when the guard is off."""
    assert options.ngram_size is not None and options.ngram_window is not None
    if options.ngram_size == 0:
        return None
    return replace(
        options,
        ngram_size=min(options.ngram_size, RETRY_NGRAM_SIZE),
        ngram_window=max(options.ngram_window, RETRY_NGRAM_WINDOW),
    )


class Elsewhere(Exception):
    """Why this run leaves a document alone: another run finished it, or still holds its claim (``claimed``)."""

    def __init__(self, reason: str, claimed: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.claimed = claimed


@dataclass
class DocumentRun:
    """One input on its way through the run: opened lazily, its pages handed to the writers as they come.

    ``open``, ``failed_open`` and ``next_page`` run on the backend's loader thread (except while counting
    pages up front, and for the first document, opened here so that no model is loaded when no input is
    readable); the rest on this one.
    """

    source: InputSource
    plan: OutputPlan | None
    identity: dict[str, Any] = field(default_factory=dict)
    document: Document | None = None
    pages: Iterator[Page] | None = None
    page_numbers: list[int] | None = None
    error: InputError | None = None
    warnings: list[str] = field(default_factory=list)
    writers: list[DocumentWriter] | None = None
    page_records: list[dict[str, Any]] = field(default_factory=list)
    failed: bool = False
    announced: bool = False
    warned: int = 0
    """How many of ``warnings`` were printed."""
    before: ManifestState = None
    """The output's manifest when the run began (``outputs.made_meanwhile``)."""
    claims: Claims | None = None
    """Set while this run holds the document's claim."""
    left: BaseException | None = None
    """Why the document is not converted after all, learnt when its turn came (``Elsewhere``, or the
    OutputError of a claim that could not be written); raised by ``leave`` on the loader thread."""

    @property
    def page_count(self) -> int:
        return len(self.page_numbers or ())

    def open(self, job: ConvertJob) -> bool:
        try:
            self.document = open_document(self.source, dpi=job.dpi, pages=job.pages, password=job.password)
        except InputError as exc:
            self.error = exc
            return False
        self.page_numbers = list(self.document.page_numbers)
        self.collect_warnings()
        self.pages = self.document.pages()
        return True

    def failed_open(self) -> Page:
        assert self.error is not None
        raise self.error

    def leave(self) -> Page:
        assert self.left is not None
        raise self.left

    def release_claim(self) -> None:
        """Give the claim up, if this run holds it (harmless to call again)."""
        claims, self.claims = self.claims, None
        if claims is not None and self.plan is not None:
            claims.release(self.plan.claim)

    def next_page(self) -> Page:
        """Render the next selected page; the document is closed after its last page or its first failure."""
        if self.pages is None:
            raise InputError(f"{self.source.name}: not rendered after an earlier failure")
        try:
            page = next(self.pages)
        except BaseException:
            self.close()
            raise
        if self.page_numbers and page.number == self.page_numbers[-1]:
            self.collect_warnings()
            self.close()
        return page

    def collect_warnings(self) -> None:
        """Warnings the document raised so far (MuPDF may repair a PDF only while rendering a later page)."""
        if self.document is not None:
            for warning in getattr(self.document, "warnings", ()):
                if warning not in self.warnings:
                    self.warnings.append(warning)

    def close(self) -> None:
        if self.document is not None:
            self.document.close()
        self.document = self.pages = None

    def discard(self) -> None:
        """Remove what this document's writers already wrote (figures, a partial layout PDF)."""
        for writer in self.writers or ():
            writer.discard()
        self.writers = None


def close_all(documents: Iterable[DocumentRun]) -> None:
    for doc in documents:
        doc.close()
        doc.discard()
        doc.release_claim()


def turns(job: ConvertJob, documents: list[DocumentRun], claims: Claims | None) -> Iterator[DocumentRun]:
    """The documents in order, each when its turn comes, claimed for this run unless ``left`` says otherwise.

    Without ``claims`` (no output folder) that is every document as it is. With them, a document another
    live run holds is put off to the end of the list and claimed then if it is free; a document whose claim
    this run got is checked once more, since another run may have finished it in the meantime. A document
    that already failed, or has no output plan, passes as it is. Runs lazily (the loader thread claims a
    document only when its pages are about to be read), so runs that share a folder share its inputs.
    """
    if claims is None:
        yield from documents
        return
    later: list[DocumentRun] = []
    for doc in documents:
        if doc.failed or doc.plan is None or doc.source.error is not None or take_turn(job, doc, claims, last=False):
            yield doc
        else:
            later.append(doc)
    for doc in later:
        take_turn(job, doc, claims, last=True)
        yield doc


def take_turn(job: ConvertJob, doc: DocumentRun, claims: Claims, last: bool) -> bool:
    """Claim ``doc`` for this run; False when another run holds it and this is not its ``last`` chance
    (then nothing is decided yet). Otherwise True, with ``doc.left`` set when it is not to be converted."""
    assert doc.plan is not None
    try:
        holder = claims.take(doc.plan.claim)
    except OutputError as exc:
        doc.left = exc
        return True
    if holder is not None:
        if last:
            doc.left = Elsewhere(f"claimed by another run ({holder}); left to it", claimed=True)
        return last
    doc.claims = claims
    reason = made_meanwhile(doc.plan, doc.source, job.settings(), doc.before)
    if reason is None and job.skip_existing:
        done, why = skip_reason(doc.plan, doc.source, job.settings())
        reason = why if done else None
    if reason is not None:
        doc.release_claim()
        doc.left = Elsewhere(reason, claimed=False)
    return True


def settle(doc: DocumentRun, summary: RunSummary, reporter: Reporter) -> None:
    """Account for a document another run has, or did, convert: skipped (done), or claimed by another run."""
    assert isinstance(doc.left, Elsewhere)
    doc.failed = True  # nothing more of it is looked at
    doc.close()
    if doc.left.claimed:
        summary.claimed_inputs.append(doc.source.name)
        reporter.info(f"{doc.source.name}: {doc.left.reason}")
    else:
        skip(doc.source, doc.left.reason, summary, reporter)
    if reporter.page_total is not None and doc.page_count:
        reporter.set_page_total(reporter.page_total - doc.page_count)
    reporter.document_done(doc.source.name)


def page_requests(
    job: ConvertJob, documents: Iterable[DocumentRun], on_text: Callable[[str], None] | None, backend: Backend
) -> Iterator[PageRequest]:
    """Every selected page of every document, in order; a document that cannot be opened is one failing request.

    Guard settings the user left open are the family's official ones for the document's kind (images and PDF
    pages differ: ``Backend.guard_defaults``). A streamed page is not retried: its tokens are already on
    stdout, and a second attempt would print twice.
    """
    for doc in documents:
        if doc.failed:
            continue
        if doc.left is not None:
            yield PageRequest(doc.source.name, 0, load=doc.leave, options=job.options, tag=doc)
            continue
        if doc.document is None and not doc.open(job):
            yield PageRequest(doc.source.name, 0, load=doc.failed_open, options=job.options, tag=doc)
            continue
        assert doc.document is not None
        options = job.options.with_guard(backend.guard_defaults(doc.document.kind))
        retry = None if on_text is not None else retry_options(options)
        for number in list(doc.page_numbers or ()):
            yield PageRequest(
                doc.source.name, number, load=doc.next_page, options=options, retry=retry, on_text=on_text, tag=doc
            )


def run(
    job: ConvertJob, backend_factory: Callable[[], Backend], reporter: Reporter, stdout: TextIO | None = None
) -> RunSummary:
    """Convert every source; the backend (model) is created only once a document actually needs it.

    Pages of all documents stream through ``backend.convert_many``; each document is written as soon
    as its last page is back. ``stdout`` defaults to ``sys.stdout`` as it is at call time, so
    redirections made by the caller apply. Raises UsageError (before any model loads) when an output
    would overwrite an input, or when a sharded run (``job.shard``) has stdin among its sources.
    """
    stdout = stdout or sys.stdout
    started = time.perf_counter()
    writer = make_writer(job, job.format)
    if job.output.to_stdout and job.layout_pdf:
        raise UsageError("--layout-pdf writes a file beside each output; give -o DIR or -o FILE")
    check_shardable([source.name for source in job.sources if source.path is None], job.shard)
    # Planned over every input, so that a shard names its outputs as an unsharded run would.
    plans = plan_outputs(job.sources, job.output, writer.suffix)
    check_not_inputs(plans, job.sources, job.layout_pdf, job.output)
    pairs = list(zip(job.sources, plans, strict=True))
    if job.shard is not None:
        pairs = job.shard.select(pairs, job.sources)
        reporter.info(f"shard {job.shard}: {len(pairs)} of {len(job.sources)} input(s)")
    summary = RunSummary(documents=len(pairs))
    settings = job.settings()
    with ExitStack() as stack:
        claims = None
        if job.output.directory is not None:
            make_dir(job.output.directory)
            stack.enter_context(directory_lock(job.output.directory, shared=True))
            claims = stack.enter_context(Claims(stale_after=job.claim_timeout))
        for folder in {plan.main.parent for _, plan in pairs if plan is not None}:
            remove_stale_temps(folder)
        documents: list[DocumentRun] = []
        for source, plan in pairs:
            before = manifest_state(plan) if claims is not None and plan is not None else None
            if plan is not None and job.skip_existing and source.error is None:
                done, reason = skip_reason(plan, source, settings)
                if done:
                    skip(source, reason, summary, reporter)
                    continue
                if plan.main.exists() or plan.manifest.exists():
                    reporter.info(f"{source.name}: redoing {plan.main}: {reason}")
            documents.append(DocumentRun(source, plan, before=before))
        stack.callback(close_all, documents)
        total = count_pages(job, documents, summary, reporter) if reporter.wants_page_totals else None
        stack.callback(reporter.stop)
        remaining = turns(job, documents, claims)
        for doc in remaining:
            if doc.failed:
                continue
            if isinstance(doc.left, Elsewhere):
                settle(doc, summary, reporter)
                continue
            if doc.left is not None:
                fail(doc, doc.left, summary, reporter)
                continue
            if doc.document is not None or doc.open(job):
                backend = backend_factory()  # shows "loading model ..." itself
                # The live display starts only now: a spinner and a bar cannot share the terminal.
                reporter.start(sum(1 for other in documents if not other.failed))
                if total is not None:
                    reporter.set_page_total(total)
                convert_all(job, backend, chain([doc], remaining), writer, reporter, summary, stdout)
                break
            fail(doc, doc.error, summary, reporter)
    summary.seconds = time.perf_counter() - started
    return summary


def count_pages(job: ConvertJob, documents: list[DocumentRun], summary: RunSummary, reporter: Reporter) -> int:
    """Open every document once to learn its page count (for the progress display), reporting bad inputs now."""
    total = 0
    for doc in documents:
        if not doc.open(job):
            fail(doc, doc.error, summary, reporter)
            continue
        total += doc.page_count
        doc.close()
    return total


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
    provenance = run_provenance(job, backend) if job.provenance else None

    def on_text(text: str) -> None:
        write_stdout(stdout, text)

    with closing(
        backend.convert_many(page_requests(job, documents, on_text if streaming else None, backend))
    ) as outcomes:
        for outcome in outcomes:
            doc: DocumentRun = outcome.request.tag
            if doc.failed:
                continue
            if isinstance(outcome.error, Elsewhere):
                settle(doc, summary, reporter)
                continue
            announce(doc, summary, reporter)
            if outcome.error is not None:
                fail(doc, outcome.error, summary, reporter)
                continue
            result = outcome.result
            assert result is not None
            if streaming:
                write_stdout(stdout, "\n")
            record(job, result, summary, reporter)
            try:
                if doc.writers is None:
                    doc.writers = start_document(job, writer, doc, provenance)
                for document_writer in doc.writers:
                    document_writer.add(result)
            except (OutputError, InputError) as exc:
                fail(doc, exc, summary, reporter)
                continue
            doc.page_records.append(
                {"number": result.page.number, "finished": result.finished, "looped": result.looped}
            )
            del result, outcome  # the page image goes now: memory is bounded by a page, not a document
            if len(doc.page_records) < doc.page_count:
                continue
            report_warnings(doc, summary, reporter)
            try:
                finish_document(job, doc, stdout, provenance)
            except OutputError as exc:
                if doc.plan is None:
                    raise  # stdout itself failed: nothing else can be delivered
                fail(doc, exc, summary, reporter)
                continue
            doc.release_claim()  # after the final manifest: whoever claims it next sees it done
            summary.converted += 1
            reporter.document_done(doc.source.name)


def run_provenance(job: ConvertJob, backend: Backend) -> dict[str, Any]:
    """What made this run's outputs: dsocr and the settings, plus what the backend knows (revision, device ...)."""
    facts: dict[str, Any] = {"dsocr": __version__, "model": job.model}
    facts.update(getattr(backend, "provenance", None) or {})
    facts.update({"mode": job.options.mode, "dpi": job.dpi})
    return facts


def start_document(
    job: ConvertJob, writer: Writer, doc: DocumentRun, provenance: dict[str, Any] | None
) -> list[DocumentWriter]:
    """The document's writers; on files, first a manifest saying "incomplete", so a crash is never taken for done."""
    plan = doc.plan
    if plan is None:
        return [writer.open(doc.source.name, None, provenance)]
    doc.identity = safe_identity(doc.source)
    write_manifest(job, doc, provenance, files=[], complete=False)
    writers = [writer.open(doc.source.name, plan.main, provenance)]
    if job.layout_pdf:
        writers.append(FORMATS["layout_pdf"]().open(doc.source.name, plan.layout, provenance))
    return writers


def finish_document(job: ConvertJob, doc: DocumentRun, stdout: TextIO, provenance: dict[str, Any] | None) -> None:
    """Write the document: to stdout, or its files (layout PDF, then the main file), then the final manifest."""
    writers, doc.writers = doc.writers or [], None
    if doc.plan is None:
        (main,) = writers
        if job.stream:
            main.discard()
            return
        if not isinstance(main, TextDocument):
            main.discard()
            raise OutputError(f"--format {job.format} writes files; give -o DIR")
        try:
            for chunk in main.chunks():
                write_stdout(stdout, chunk)
        finally:
            main.discard()
        flush_stdout(stdout)
        return
    written: list[Path] = []
    try:
        for document_writer in reversed(writers):  # the main file last: it is what a reader opens
            written += document_writer.finish()
    except BaseException:
        for document_writer in writers:
            document_writer.discard()
        raise
    folder = doc.plan.manifest.parent
    files = sorted({str(path.relative_to(folder)) for path in written})
    complete = all(page["finished"] for page in doc.page_records)
    write_manifest(job, doc, provenance, files=files, complete=complete)


def write_manifest(
    job: ConvertJob, doc: DocumentRun, provenance: dict[str, Any] | None, files: list[str], complete: bool
) -> None:
    assert doc.plan is not None
    manifest = Manifest(
        settings=job.settings(),
        input=doc.identity,
        provenance=provenance or {},
        pages=doc.page_records,
        files=files,
        complete=complete,
    )
    atomic_write_text(doc.plan.manifest, manifest.to_json())


def safe_identity(source: InputSource) -> dict[str, Any]:
    try:
        return input_identity(source)
    except OSError as exc:
        raise source.fail(f"cannot read: {exc.strerror or exc}") from exc


def write_stdout(stdout: TextIO, text: str) -> None:
    """Write results to stdout; a failing stdout (full disk, closed) is an OutputError (exit 5)."""
    try:
        stdout.write(text)
    except OSError as exc:
        raise stdout_error(exc) from exc


def flush_stdout(stdout: TextIO) -> None:
    try:
        stdout.flush()
    except OSError as exc:
        raise stdout_error(exc) from exc


def announce(doc: DocumentRun, summary: RunSummary, reporter: Reporter) -> None:
    """Once per document, when its first outcome arrives: its page count; then any warnings not yet printed."""
    if not doc.announced:
        doc.announced = True
        reporter.document_started(doc.source.name, doc.page_count)
    report_warnings(doc, summary, reporter)


def report_warnings(doc: DocumentRun, summary: RunSummary, reporter: Reporter) -> None:
    """Print the document's new warnings (a repaired PDF); a document with any makes the run exit 2."""
    for warning in doc.warnings[doc.warned :]:
        reporter.warn(warning)
    doc.warned = len(doc.warnings)
    if doc.warned and doc.source.name not in summary.warned_inputs:
        summary.warned_inputs.append(doc.source.name)


def record(job: ConvertJob, result: PageResult, summary: RunSummary, reporter: Reporter) -> None:
    """Count a page and say how it ended: finished, truncated at the token limit, or looped (after one retry)."""
    page = result.page
    label = f"{page.source}: page {page.number}"
    if result.retried:
        reporter.info(
            f"{label} looped; retried with a stronger guard ({RETRY_NGRAM_SIZE}-grams within {RETRY_NGRAM_WINDOW} tokens)"
        )
    if result.looped:
        summary.looped_pages.append(f"{page.source}#{page.number}")
        reporter.warn(
            f"{label} looped (repeating text) up to the {job.options.max_new_tokens}-token limit; "
            "its partial text is kept and marked"
        )
    elif not result.finished:
        summary.truncated_pages.append(f"{page.source}#{page.number}")
        reporter.warn(
            f"{label} truncated at {job.options.max_new_tokens} tokens (--max-tokens); its partial text is kept and marked"
        )
    summary.pages += 1
    reporter.page_done(result)


def skip(source: InputSource, reason: str, summary: RunSummary, reporter: Reporter) -> None:
    summary.skipped += 1
    reporter.info(f"{source.name}: skipped: {reason}")


def fail(doc: DocumentRun, error: BaseException | None, summary: RunSummary, reporter: Reporter) -> None:
    """Record a failed input: the error line names it; its other pages are ignored, what it wrote is removed."""
    doc.failed = True
    doc.discard()
    doc.close()
    if doc.plan is not None and doc.identity and not doc.plan.main.exists():
        with suppress(OSError):
            doc.plan.manifest.unlink()  # an "incomplete" note for an output that never appeared
    doc.release_claim()  # after the clean-up: the next run to claim it finds no half of it
    if isinstance(error, OutputError):
        summary.unwritable_inputs.append(doc.source.name)
    summary.failed_inputs.append(doc.source.name)
    message = str(error) if isinstance(error, DsocrError) else f"{doc.source.name}: {type(error).__name__}: {error}"
    reporter.error(message)
    reporter.document_done(doc.source.name)
