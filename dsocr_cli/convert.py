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
- Several formats in one run (``ConvertJob.formats``): each page goes through the model once and its result to
  every format's writer; each format has its own output, manifest and skip decision. With ``--skip-existing`` a
  document is converted when any of its outputs is missing, incomplete or stale, and then only those outputs are
  written (complete ones are kept as they are); it is skipped when all are complete.
- ``--text-layer skip|use`` (``ConvertJob.text_layer``, rules in ``dsocr_cli.text_layer``): a PDF page whose own
  text layer stands in for OCR never reaches the backend; its result (``PageResult.source`` "text-layer") is read
  from the page in page order among the others. The backend is then made only when the first page that needs the
  model comes, so a run where no page does never loads a model.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, closing, suppress
from dataclasses import dataclass, field, replace
from itertools import chain
from pathlib import Path
from typing import Any, TextIO

from dsocr_cli import __version__
from dsocr_cli.defaults import DEFAULT_MODEL, DPI, PAGE_SEPARATOR, RETRY_NGRAM_SIZE, RETRY_NGRAM_WINDOW
from dsocr_cli.engine.backend import Backend, ConvertOptions, PageOutcome, PageRequest
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
from dsocr_cli.text_layer import TextLayerMode, takes_text_layer
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
from dsocr_cli.writers.searchable_pdf import Original, SearchablePdfWriter

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
    formats: tuple[str, ...] = ()
    """Every format to write, in order (``--format md,json,pdf``); empty: ``format`` alone."""
    text_layer: TextLayerMode = "ocr"
    """``--text-layer``: which PDF pages take their own text layer instead of the model (``dsocr_cli.text_layer``)."""

    @property
    def format_names(self) -> tuple[str, ...]:
        return self.formats or (self.format,)

    def settings(self, format_name: str | None = None) -> dict[str, Any]:
        """What shapes an output (of ``format_name``, default ``format``): two runs with equal settings on an
        unchanged input make the same files."""
        extra = {"text_layer": self.text_layer} if self.text_layer != "ocr" else {}
        return extra | {
            "model": self.model,
            "mode": self.options.mode,
            "prompt": self.options.prompt,
            "max_new_tokens": self.options.max_new_tokens,
            "ngram_size": self.options.ngram_size,
            "ngram_window": self.options.ngram_window,
            "format": format_name or self.format,
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
    text_layer_pages: int = 0
    """Of ``pages``, those whose result is their own text layer (``--text-layer``)."""
    counts_sources: bool = False
    """Whether the line says how many pages came from OCR and how many from their text layer."""

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
        if self.counts_sources:
            parts[-1] += f" ({self.pages - self.text_layer_pages} by OCR, {self.text_layer_pages} from the text layer)"
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
    if name == "pdf":
        return SearchablePdfWriter(dpi=job.dpi)
    return FORMATS[name]()


BINARY_FORMATS = frozenset({"pdf"})
"""Formats that only write files (never stdout)."""


@dataclass
class Output:
    """One format's output of one input: its writer, its paths (None: stdout), and its manifest when the run
    began (``outputs.made_meanwhile``)."""

    name: str
    writer: Writer
    plan: OutputPlan | None
    before: ManifestState = None


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
    outputs: list[Output] = field(default_factory=list)
    """The outputs this run writes (with ``--skip-existing``, those not complete yet), ``plan``'s first."""
    groups: list[tuple[Output, list[DocumentWriter]]] = field(default_factory=list)
    """Each output's writers, once the first page is back (``writers`` is all of them)."""
    kind: str | None = None
    """``pdf`` or ``image``, once opened (kept after the document is closed)."""
    text_pages: dict[int, str] = field(default_factory=dict)
    """Pages whose own text layer is their result (``--text-layer``): number -> the text as grounded blocks."""

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
        self.kind = self.document.kind
        self.collect_warnings()
        self.text_pages = {}
        if job.text_layer != "ocr" and self.document.kind == "pdf":
            for number in self.page_numbers:
                layer = self.document.text_layer(number)
                if layer is not None and takes_text_layer(job.text_layer, layer.stats):
                    self.text_pages[number] = layer.grounded
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
        self.groups = []


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
    reason = None
    remaining = []
    for output in doc.outputs:
        assert output.plan is not None
        why = made_meanwhile(output.plan, doc.source, job.settings(output.name), output.before)
        if why is None and job.skip_existing:
            done, skipped = skip_reason(output.plan, doc.source, job.settings(output.name))
            why = skipped if done else None
        if why is None:
            remaining.append(output)
        else:
            reason = reason or why
    doc.outputs = remaining
    if not remaining:
        doc.release_claim()
        doc.left = Elsewhere(reason or "done", claimed=False)
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


@dataclass
class ModelPage:
    """A page for the model, whose settings are settled once the backend exists (``request``)."""

    doc: DocumentRun
    number: int
    kind: str
    on_text: Callable[[str], None] | None

    def request(self, job: ConvertJob, backend: Backend) -> PageRequest:
        """Guard settings the user left open are the family's official ones for the document's kind (images and
        PDF pages differ: ``Backend.guard_defaults``). A streamed page is not retried: its tokens are already on
        stdout, and a second attempt would print twice."""
        options = job.options.with_guard(backend.guard_defaults(self.kind))
        retry = None if self.on_text is not None else retry_options(options)
        return PageRequest(
            self.doc.source.name, self.number, load=self.doc.next_page, options=options, retry=retry,
            on_text=self.on_text, tag=self.doc,
        )


@dataclass
class LocalPage:
    """A page no model sees: its text layer is its result (``text``), or, with ``text`` None, a document that
    cannot be converted here, whose ``load`` raises why."""

    request: PageRequest
    text: str | None = None

    def outcome(self) -> PageOutcome:
        started = time.perf_counter()
        try:
            page = self.request.load()
        except Exception as exc:
            return PageOutcome(self.request, error=exc)
        assert self.text is not None
        result = PageResult(
            page=page, text=self.text, mode="text-layer", prompt="", vision_tokens=0, generated_tokens=0,
            finished=True, seconds=time.perf_counter() - started, source="text-layer",
        )
        return PageOutcome(self.request, result=result)


def page_requests(
    job: ConvertJob, documents: Iterable[DocumentRun], on_text: Callable[[str], None] | None
) -> Iterator[ModelPage | LocalPage]:
    """Every selected page of every document, in order; a document that cannot be opened is one failing page."""
    for doc in documents:
        if doc.failed:
            continue
        if doc.left is not None:
            yield LocalPage(PageRequest(doc.source.name, 0, load=doc.leave, options=job.options, tag=doc))
            continue
        if doc.document is None and not doc.open(job):
            yield LocalPage(PageRequest(doc.source.name, 0, load=doc.failed_open, options=job.options, tag=doc))
            continue
        assert doc.document is not None
        kind = doc.document.kind
        for number in list(doc.page_numbers or ()):
            text = doc.text_pages.get(number)
            if text is not None:
                yield LocalPage(PageRequest(doc.source.name, number, load=doc.next_page, options=job.options, tag=doc), text)
            else:
                yield ModelPage(doc, number, kind, on_text)


class LazyBackend:
    """The run's backend, made on first use (``get``); ``provenance`` is filled in with its facts then."""

    def __init__(self, job: ConvertJob, factory: Callable[[], Backend]) -> None:
        self.job = job
        self.factory = factory
        self.backend: Backend | None = None
        self.provenance: dict[str, Any] = run_provenance(job, None)

    def get(self) -> Backend:
        if self.backend is None:
            self.backend = self.factory()  # shows "loading model ..." itself
            facts = run_provenance(self.job, self.backend)
            self.provenance.clear()
            self.provenance.update(facts)
        return self.backend


_MODEL = object()
"""In ``route``'s order: here comes the next outcome of the backend."""


def route(job: ConvertJob, items: Iterable[ModelPage | LocalPage], backend: LazyBackend) -> Iterator[PageOutcome]:
    """Every page's outcome in order: local pages are answered here, model pages by the backend.

    Until the first model page, this thread answers local pages itself, so no backend is made before one is
    needed; from then on local pages are answered as the backend's request stream reaches them (on whatever
    thread reads it), queued in order among the model pages, so the document iterators advance in page order.
    """
    items = iter(items)
    first: ModelPage | None = None
    for item in items:
        if isinstance(item, LocalPage):
            yield item.outcome()
            continue
        first = item
        break
    if first is None:
        return
    model = backend.get()
    order: deque[Any] = deque([_MODEL])

    def feed() -> Iterator[PageRequest]:
        assert first is not None
        yield first.request(job, model)
        for item in items:
            if isinstance(item, LocalPage):
                order.append(item.outcome())
            else:
                order.append(_MODEL)
                yield item.request(job, model)

    with closing(model.convert_many(feed())) as outcomes:
        for outcome in outcomes:
            while (entry := order.popleft()) is not _MODEL:
                yield entry
            yield outcome
    while order:
        entry = order.popleft()
        if entry is not _MODEL:
            yield entry


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
    names = job.format_names
    if len(set(names)) != len(names):
        raise UsageError(f"--format {','.join(names)}: a format is named twice")
    writers = {name: make_writer(job, name) for name in names}
    if job.output.to_stdout and job.layout_pdf:
        raise UsageError("--layout-pdf writes a file beside each output; give -o DIR or -o FILE")
    if job.output.to_stdout and len(names) > 1:
        raise UsageError(f"--format {','.join(names)} writes one file per format; give -o DIR")
    if job.output.file is not None and len(names) > 1:
        raise UsageError(f"-o {job.output.file}: names one file, but --format {','.join(names)} writes one per format; give -o DIR")
    binary = [name for name in names if name in BINARY_FORMATS]
    if job.output.to_stdout and binary:
        raise UsageError(f"--format {binary[0]} writes a file; give -o DIR or -o FILE{writers[binary[0]].suffix}")
    check_shardable([source.name for source in job.sources if source.path is None], job.shard)
    # Planned over every input, so that a shard names its outputs as an unsharded run would.
    plans = {name: plan_outputs(job.sources, job.output, writers[name].suffix) for name in names}
    for index, name in enumerate(names):
        check_not_inputs(plans[name], job.sources, job.layout_pdf and index == 0, job.output)
    pairs = [
        (source, [Output(name, writers[name], plans[name][index]) for name in names])
        for index, source in enumerate(job.sources)
    ]
    if job.shard is not None:
        pairs = job.shard.select(pairs, job.sources)
        reporter.info(f"shard {job.shard}: {len(pairs)} of {len(job.sources)} input(s)")
    summary = RunSummary(documents=len(pairs), counts_sources=job.text_layer != "ocr")
    backend = LazyBackend(job, backend_factory)
    with ExitStack() as stack:
        claims = None
        if job.output.directory is not None:
            make_dir(job.output.directory)
            stack.enter_context(directory_lock(job.output.directory, shared=True))
            claims = stack.enter_context(Claims(stale_after=job.claim_timeout))
        for folder in {out.plan.main.parent for _, outs in pairs for out in outs if out.plan is not None}:
            remove_stale_temps(folder)
        documents: list[DocumentRun] = []
        for source, outputs in pairs:
            for output in outputs:
                if claims is not None and output.plan is not None:
                    output.before = manifest_state(output.plan)
            claim_plan = outputs[0].plan  # the first format's: runs asking for the same formats claim one file
            if claim_plan is not None and job.skip_existing and source.error is None:
                todo, reasons = [], []
                for output in outputs:
                    assert output.plan is not None
                    done, reason = skip_reason(output.plan, source, job.settings(output.name))
                    if done:
                        reasons.append(reason)
                        continue
                    todo.append(output)
                    if output.plan.main.exists() or output.plan.manifest.exists():
                        reporter.info(f"{source.name}: redoing {output.plan.main}: {reason}")
                if not todo:
                    skip(source, reasons[0], summary, reporter)
                    continue
                outputs = todo
            documents.append(DocumentRun(source, claim_plan, outputs=outputs))
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
                if job.text_layer == "ocr":
                    backend.get()  # every page needs the model: load it now, before the live display
                # The live display starts only now: a spinner and a bar cannot share the terminal (a backend
                # made later pauses the display while it loads: ``Reporter.loading``).
                reporter.start(sum(1 for other in documents if not other.failed))
                if total is not None:
                    reporter.set_page_total(total)
                convert_all(job, backend, chain([doc], remaining), reporter, summary, stdout)
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
    backend: LazyBackend,
    documents: Iterable[DocumentRun],
    reporter: Reporter,
    summary: RunSummary,
    stdout: TextIO,
) -> None:
    """Feed the pages of ``documents`` to the backend and write each document once all its pages are back."""
    streaming = job.stream and job.output.to_stdout
    provenance = backend.provenance if job.provenance else None

    def on_text(text: str) -> None:
        write_stdout(stdout, text)

    with closing(route(job, page_requests(job, documents, on_text if streaming else None), backend)) as outcomes:
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
            if streaming and result.source == "ocr":
                write_stdout(stdout, "\n")
            elif streaming:
                write_stdout(stdout, result.text + "\n")
            record(job, result, summary, reporter)
            try:
                if doc.writers is None:
                    doc.writers = start_document(job, doc, provenance)
                for document_writer in doc.writers:
                    document_writer.add(result)
            except (OutputError, InputError) as exc:
                fail(doc, exc, summary, reporter)
                continue
            doc.page_records.append(
                {"number": result.page.number, "finished": result.finished, "looped": result.looped}
                | ({"source": result.source} if job.text_layer != "ocr" else {})
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


def run_provenance(job: ConvertJob, backend: Backend | None) -> dict[str, Any]:
    """What made this run's outputs: dsocr and the settings, plus what the backend knows (revision, device ...;
    nothing while no backend was needed)."""
    facts: dict[str, Any] = {"dsocr": __version__, "model": job.model}
    facts.update(getattr(backend, "provenance", None) or {})
    facts.update({"mode": job.options.mode, "dpi": job.dpi})
    return facts


def start_document(job: ConvertJob, doc: DocumentRun, provenance: dict[str, Any] | None) -> list[DocumentWriter]:
    """The document's writers, per output; on files, first a manifest saying "incomplete" for each, so a crash is
    never taken for done. The layout PDF goes with the first output (its name follows the same stem)."""
    doc.groups = []
    if doc.plan is None:
        (output,) = doc.outputs
        doc.groups = [(output, [open_writer(job, doc, output.writer, None, provenance)])]
        return [writer for _, group in doc.groups for writer in group]
    doc.identity = safe_identity(doc.source)
    for index, output in enumerate(doc.outputs):
        assert output.plan is not None
        write_manifest(job, doc, output, provenance, files=[], complete=False)
        group = [open_writer(job, doc, output.writer, output.plan.main, provenance)]
        if job.layout_pdf and index == 0:
            group.append(FORMATS["layout_pdf"]().open(doc.source.name, output.plan.layout, provenance))
        doc.groups.append((output, group))
    return [writer for _, group in doc.groups for writer in group]


def open_writer(
    job: ConvertJob, doc: DocumentRun, writer: Writer, target: Path | None, provenance: dict[str, Any] | None
) -> DocumentWriter:
    """``writer``'s document for ``doc``; a searchable PDF also gets the input itself (its pages are kept)."""
    if isinstance(writer, SearchablePdfWriter):
        assert doc.kind is not None
        return writer.open(doc.source.name, target, provenance, Original(doc.source, doc.kind, job.password))
    return writer.open(doc.source.name, target, provenance)


def finish_document(job: ConvertJob, doc: DocumentRun, stdout: TextIO, provenance: dict[str, Any] | None) -> None:
    """Write the document: to stdout, or its files (layout PDF, then the main file), then the final manifest."""
    writers, doc.writers = doc.writers or [], None
    groups, doc.groups = doc.groups, []
    if doc.plan is None:
        (main,) = writers
        if job.stream:
            main.discard()
            return
        if not isinstance(main, TextDocument):
            main.discard()
            raise OutputError(f"--format {groups[0][0].name} writes files; give -o DIR")
        try:
            for chunk in main.chunks():
                write_stdout(stdout, chunk)
        finally:
            main.discard()
        flush_stdout(stdout)
        return
    complete = all(page["finished"] for page in doc.page_records)
    for number, (output, group) in enumerate(groups):
        assert output.plan is not None
        written: list[Path] = []
        try:
            for document_writer in reversed(group):  # the main file last: it is what a reader opens
                written += document_writer.finish()
        except BaseException:
            for _, later in groups[number:]:
                for document_writer in later:
                    document_writer.discard()
            raise
        folder = output.plan.manifest.parent
        files = sorted({str(path.relative_to(folder)) for path in written})
        write_manifest(job, doc, output, provenance, files=files, complete=complete)


def write_manifest(
    job: ConvertJob,
    doc: DocumentRun,
    output: Output,
    provenance: dict[str, Any] | None,
    files: list[str],
    complete: bool,
) -> None:
    assert output.plan is not None
    manifest = Manifest(
        settings=job.settings(output.name),
        input=doc.identity,
        provenance=provenance or {},
        pages=doc.page_records,
        files=files,
        complete=complete,
    )
    atomic_write_text(output.plan.manifest, manifest.to_json())


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
    if result.source == "text-layer":
        summary.text_layer_pages += 1
    reporter.page_done(result)


def skip(source: InputSource, reason: str, summary: RunSummary, reporter: Reporter) -> None:
    summary.skipped += 1
    reporter.info(f"{source.name}: skipped: {reason}")


def fail(doc: DocumentRun, error: BaseException | None, summary: RunSummary, reporter: Reporter) -> None:
    """Record a failed input: the error line names it; its other pages are ignored, what it wrote is removed."""
    doc.failed = True
    doc.discard()
    doc.close()
    for output in doc.outputs if doc.identity else ():
        if output.plan is not None and not output.plan.main.exists():
            with suppress(OSError):
                output.plan.manifest.unlink()  # an "incomplete" note for an output that never appeared
    doc.release_claim()  # after the clean-up: the next run to claim it finds no half of it
    if isinstance(error, OutputError):
        summary.unwritable_inputs.append(doc.source.name)
    summary.failed_inputs.append(doc.source.name)
    message = str(error) if isinstance(error, DsocrError) else f"{doc.source.name}: {type(error).__name__}: {error}"
    reporter.error(message)
    reporter.document_done(doc.source.name)
