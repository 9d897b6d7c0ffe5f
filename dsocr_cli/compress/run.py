"""``dsocr compress`` end to end: inputs -> pages (rendered text or PDF pages) -> counts -> decode -> report.

Rules:

- The model family decides the modes and their vision-token counts: with ``--server`` the served model's
  family (``RemoteBackend.family``), otherwise the family of ``--model``'s config.json. A requested mode that
  family lacks is one warning and is left out of the report (``LabReport.unsupported_modes``); none left is a
  ``UsageError`` (exit 1).
- Text tokens are counted with the model's own tokenizer.json (both families share one), which is all that is
  read without ``--decode``: a local model directory's, else the hub repo's two small files (config.json and
  tokenizer.json, fetched alone into the Hugging Face cache, not the weights). Offline (``--offline`` or
  HF_HUB_OFFLINE) and not cached: a one-line ``ModelError``, exit 4, saying to run ``dsocr download``.
- Vision tokens are ``ModeInfo.image_tokens(width, height)`` of the page image as the model receives it: every
  image position the decoder sees (tiles, row newlines, separators included), the number
  ``prepare_image``/``request`` build. Ratio = text tokens / vision tokens, unrounded.
- ``--decode`` sends every page in every mode through the backend (``convert_many``: batched locally, in
  flight concurrently on servers) with the Free OCR prompt and scores the text against the page's ground truth
  (``metrics``). A page that fails in a mode is reported with its error and left out of the averages.
- An input that cannot be read or gives no page is one error line; the others go on (exit 2; none left: 3).
- Files go through ``writers.atomic`` (no half-written file): page images under ``-o DIR/<input stem>/``,
  ``DIR/report.json``, ``DIR/report.csv`` and, decoded, ``DIR/plot.png``; ``--json``/``--csv``/``--plot``
  name their own file (``-`` for JSON or CSV: stdout).
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dsocr_cli import defaults
from dsocr_cli.compress.metrics import edit_distance, fox_precision
from dsocr_cli.compress.render import Layout, SourcePage, pdf_pages, read_text, render_text
from dsocr_cli.compress.report import LabReport, ModeResult, PageReport, fox_style_table, page_table, percent
from dsocr_cli.engine.backend import ConvertOptions, PageRequest
from dsocr_cli.errors import DsocrError, ExitCode, ModelError, UsageError, stdout_error
from dsocr_cli.models.family import ModelFamily
from dsocr_cli.progress import Reporter
from dsocr_cli.results import Page
from dsocr_cli.writers.atomic import atomic_write_bytes, atomic_write_text, make_dir

FREE_OCR = "free"
"""The prompt preset of the paper's Fox experiment: ``<image>\\nFree OCR.``."""
TABLE_WIDTH = 200
"""Columns of the tables when stderr is not a terminal (rich would wrap them at 80)."""
MAX_PIXELS = 100_000_000
"""Largest PDF page rendered at full ``--dpi`` (as ``dsocr convert``: 10,000 x 10,000 px)."""


@dataclass
class CompressJob:
    inputs: list[str]
    layout: Layout = field(default_factory=Layout)
    modes: list[str] | None = None
    """None: every mode of the family."""
    from_pdf: bool = False
    output: Path | None = None
    json_target: str | None = None
    csv_target: str | None = None
    plot_target: str | None = None
    decode: bool = False
    model: str | None = None
    """``--model``; None: the served family's hub repo with ``--server``, else the default model."""
    max_new_tokens: int = defaults.MAX_NEW_TOKENS
    offline: bool = False
    remote: bool = False
    """``--server``: the backend is built first (the served family decides the modes)."""


@dataclass
class Outcome:
    report: LabReport
    exit_code: ExitCode
    summary: str


def tokenizer_directory(model: str, offline: bool) -> tuple[Path, ModelFamily]:
    """The directory holding ``model``'s tokenizer.json and config.json, and the family of that config.

    A local directory as it is; a hub reference: those two files alone, from the cache or (online) the hub.
    """
    from dsocr_cli import hub
    from dsocr_cli.models.registry import family_for

    local = Path(model).expanduser()
    if local.is_dir():
        return local, family_for(local)
    ref = hub.ModelRef.parse(hub.expand_model(model))
    offline = hub.offline_requested(offline)
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    paths = []
    for name in ("config.json", "tokenizer.json"):
        try:
            paths.append(
                Path(
                    hf_hub_download(
                        ref.repo, name, revision=ref.revision, cache_dir=hub.hub_cache(), local_files_only=offline
                    )
                )
            )
        except LocalEntryNotFoundError:
            where = "offline mode is on (--offline or HF_HUB_OFFLINE)" if offline else "the hub cannot be reached"
            raise ModelError(
                f"{ref}: its tokenizer is not in the model cache ({hub.hub_cache()}) and {where}; run "
                f"`dsocr download {ref}` once while online, or pass --model DIR"
            ) from None
        except Exception as exc:  # huggingface_hub's HTTP, validation and cache errors
            raise hub.hub_error(ref, exc) from None
    directory = paths[1].parent
    return directory, family_for(paths[0].parent)


class TextCounter:
    """Text tokens in the decoder's tokenizer: ``len(encode(text))`` without special tokens."""

    def __init__(self, directory: Path) -> None:
        from dsocr_cli.models.tokenizer import load_tokenizer

        self.tokenizer, _ = load_tokenizer(directory)

    def __call__(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))


def choose_modes(family: ModelFamily, requested: list[str] | None, reporter: Reporter) -> tuple[list[str], list[str]]:
    """(modes measured, requested modes the family lacks: one warning)."""
    if requested is None:
        return list(family.modes), []
    unknown = [mode for mode in requested if mode not in family.modes]
    kept = [mode for mode in dict.fromkeys(requested) if mode in family.modes]
    if unknown:
        message = f"{family.description} has no {', '.join(unknown)} mode (its modes: {', '.join(family.modes)})"
        if not kept:
            raise UsageError(f"--modes: {message}")
        reporter.warn(f"{message}; left out")
    return kept, unknown


def load_pages(job: CompressJob, reporter: Reporter, failed: list[str]) -> list[SourcePage]:
    """Every input's pages; an input that gives none is one error line (and counted in ``failed``)."""
    pages: list[SourcePage] = []
    for name in job.inputs:
        path = Path(name)
        try:
            if job.from_pdf:
                pages += pdf_pages(path, name, job.layout.dpi, MAX_PIXELS)
                continue
            rendered = render_text(read_text(path, name), name, job.layout)
            if not rendered.pages:
                raise DsocrError(f"{name}: no text to render")
            if rendered.missing_glyphs:
                reporter.warn(
                    f"{name}: {rendered.missing_glyphs} character(s) have no glyph in --font {job.layout.font} or the "
                    "fallback font (drawn as boxes); pass --font FILE with a font that has them"
                )
            pages += rendered.pages
        except UsageError:
            raise
        except DsocrError as exc:
            reporter.error(str(exc))
            failed.append(str(exc))
    return pages


def image_names(pages: list[SourcePage]) -> list[Path]:
    """``<input stem>/page-NNN.png`` per page; inputs of the same stem get ``-2``, ``-3``... after it."""
    folders: dict[str, str] = {}
    taken: set[str] = set()
    names = []
    for page in pages:
        folder = folders.get(page.source)
        if folder is None:
            stem = "stdin" if page.source == "-" else Path(page.source).stem or "input"
            folder, index = stem, 1
            while folder in taken:
                index += 1
                folder = f"{stem}-{index}"
            taken.add(folder)
            folders[page.source] = folder
        names.append(Path(folder) / f"page-{page.number:03d}.png")
    return names


def png_bytes(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def decode(
    backend: Any, job: CompressJob, pages: list[SourcePage], reports: list[PageReport], reporter: Reporter
) -> int:
    """Every page in every mode through ``backend.convert_many`` with the Free OCR prompt; the scores go into
    ``reports``. Returns the number of (page, mode) decodes that failed."""
    kind = "pdf" if job.from_pdf else "image"
    guard = backend.guard_defaults(kind)
    requests = []
    for index, page in enumerate(pages):
        for mode in reports[index].modes:
            options = ConvertOptions(mode=mode, prompt=FREE_OCR, max_new_tokens=job.max_new_tokens).with_guard(guard)
            requests.append(
                PageRequest(
                    source=page.source,
                    number=page.number,
                    load=lambda page=page: Page(page.source, page.number, page.image),
                    options=options,
                    tag=(index, mode),
                )
            )
    failures = 0
    for outcome in backend.convert_many(requests):
        index, mode = outcome.request.tag
        entry = reports[index].modes[mode]
        if outcome.error is not None or outcome.result is None:
            entry.error = str(outcome.error) or type(outcome.error).__name__
            reporter.error(f"{page_name(pages[index])}, mode {mode}: {entry.error}")
            failures += 1
            continue
        result = outcome.result
        if result.mode != mode:  # an upstream server runs every page in gundam
            entry.error = f"the server ran the page in {result.mode} mode, not {mode}"
            failures += 1
            continue
        truth = pages[index].text
        entry.output = result.text
        entry.precision = fox_precision(truth, result.text)
        entry.edit_distance = edit_distance(truth, result.text)
        entry.generated_tokens = result.generated_tokens
        entry.finished = result.finished
        reporter.info(
            f"{page_name(pages[index])} {mode}: precision {percent(entry.precision)}, "
            f"edit distance {entry.edit_distance:.3f}, {result.generated_tokens} token(s)"
            + ("" if result.finished else " (hit --max-tokens)")
        )
    return failures


def page_name(page: SourcePage) -> str:
    return f"{page.source} page {page.number}"


def write_target(target: str, text: str) -> None:
    """``-``: stdout; else the file, atomically."""
    if target == "-":
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except OSError as exc:
            raise stdout_error(exc) from None
        return
    atomic_write_text(Path(target), text)


def run(job: CompressJob, reporter: Reporter, backend_factory: Callable[[], Any] | None = None) -> Outcome:
    """The lab (the module's rules). ``backend_factory`` builds the backend for ``--decode`` (and, first, for
    ``--server``: the served family decides the modes); None without ``--decode``."""
    started = time.perf_counter()
    job.layout.check()
    if job.json_target == "-" and job.csv_target == "-":
        raise UsageError("--json - and --csv - would both write to stdout; send one of them to a file")
    if job.plot_target and not job.decode:
        raise UsageError("--plot needs --decode (it plots precision)")
    backend = None
    family: ModelFamily | None = None
    if job.remote:
        assert backend_factory is not None
        backend = backend_factory()
        family = backend.family
    model = job.model or (family.default_repo if family is not None else defaults.DEFAULT_MODEL)
    directory, model_family = tokenizer_directory(model, job.offline)
    family = family or model_family
    modes, unsupported = choose_modes(family, job.modes, reporter)
    counter = TextCounter(directory)
    failed: list[str] = []
    pages = load_pages(job, reporter, failed)
    report = LabReport(
        family=family.description,
        model=model,
        modes=modes,
        unsupported_modes=unsupported,
        settings=settings(job),
        decoded=job.decode,
        bucket=defaults.COMPRESS_BUCKET,
        failed_inputs=failed,
    )
    names = image_names(pages)
    if job.output is not None:
        make_dir(job.output)
    for page, name in zip(pages, names, strict=True):
        width, height = page.image.size
        text_tokens = counter(page.text)
        entry = PageReport(page.source, page.number, width, height, text_tokens)
        for mode in modes:
            vision = family.modes[mode].image_tokens(width, height)
            entry.modes[mode] = ModeResult(vision_tokens=vision, ratio=text_tokens / vision)
        if job.output is not None:
            path = job.output / name
            make_dir(path.parent)
            atomic_write_bytes(path, png_bytes(page.image))
            entry.image = str(path)
        report.pages.append(entry)
    failures = 0
    if job.decode and pages:
        if backend is None:
            assert backend_factory is not None
            backend = backend_factory()
        failures = decode(backend, job, pages, report.pages, reporter)
    emit(report, job, reporter)
    if pages and not failed and not failures:
        code = ExitCode.OK
    elif pages:
        code = ExitCode.PARTIAL_FAILURE
    else:
        code = ExitCode.ALL_FAILED
    parts = [f"{len(pages)} page(s) from {len(job.inputs) - len(failed)} of {len(job.inputs)} input(s)"]
    parts.append(f"modes {', '.join(modes)}")
    if job.decode:
        parts.append(f"{sum(len(p.modes) for p in report.pages) - failures} decode(s)")
        if failures:
            parts.append(f"{failures} failed")
    parts.append(f"{time.perf_counter() - started:.1f} s")
    return Outcome(report, code, "dsocr: " + ", ".join(parts))


def settings(job: CompressJob) -> dict[str, Any]:
    """How the pages were made, for the JSON report."""
    if job.from_pdf:
        return {"from_pdf": True, "dpi": job.layout.dpi}
    layout = job.layout
    return {
        "from_pdf": False,
        "font": layout.font,
        "font_size": layout.font_size,
        "page_size_pt": list(layout.page_size),
        "margin_pt": layout.margin,
        "line_spacing": layout.line_spacing,
        "keep_lines": layout.keep_lines,
        "dpi": layout.dpi,
        "prompt": FREE_OCR if job.decode else None,
        "max_new_tokens": job.max_new_tokens if job.decode else None,
    }


def targets(option: str | None, output: Path | None, name: str) -> list[str]:
    """Where a report goes: the option's file or ``-``, and ``DIR/name`` with ``-o DIR``."""
    found = [option] if option else []
    if output is not None and str(output / name) not in found:
        found.append(str(output / name))
    return found


def emit(report: LabReport, job: CompressJob, reporter: Reporter) -> None:
    """The tables on stderr (unless ``--quiet``), then the files and stdout the user asked for."""
    if not reporter.quiet and report.pages:
        console = reporter.console
        if not console.is_terminal:  # a log or a pipe: whole rows, not 80 columns
            from rich.console import Console

            console = Console(stderr=True, width=TABLE_WIDTH)
        console.print(page_table(report))
        if report.decoded:
            console.print(fox_style_table(report))
    for target, text in (
        *((target, report.json_text()) for target in targets(job.json_target, job.output, "report.json")),
        *((target, report.csv_text()) for target in targets(job.csv_target, job.output, "report.csv")),
    ):
        write_target(target, text)
    plot_target = job.plot_target or (str(job.output / "plot.png") if job.output is not None and job.decode else None)
    if plot_target and report.decoded:
        from dsocr_cli.compress.plot import plot

        points: dict[str, list[tuple[float, float]]] = {mode: [] for mode in report.modes}
        for page in report.pages:
            for mode, result in page.modes.items():
                if result.precision is not None:
                    points[mode].append((result.ratio, result.precision))
        image = plot(points, f"{report.family}: precision vs compression ({len(report.pages)} page(s))")
        atomic_write_bytes(Path(plot_target), png_bytes(image))
