"""What a backend is: something that turns pages and options into ``PageResult`` objects.

The local model (``engine.local``) is one backend; a remote OpenAI-compatible server is another.
Writers and the CLI only see ``PageResult`` and cannot tell them apart. A backend converts one page
(``convert``) or a stream of pages (``convert_many``), which it may run concurrently however suits it
(the local one batches them on the model) as long as the outcomes come back in request order.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from dsocr_cli import defaults
from dsocr_cli.errors import UsageError
from dsocr_cli.models.family import GuardDefaults
from dsocr_cli.results import Page, PageResult


@dataclass(frozen=True)
class ConvertOptions:
    """Per-run generation settings (defaults = the official pipeline's)."""

    mode: str = defaults.MODE
    prompt: str = defaults.PROMPT
    max_new_tokens: int = defaults.MAX_NEW_TOKENS
    ngram_size: int | None = None
    """Loop guard n-gram size (0 = off); None = the family's official value for the input kind."""
    ngram_window: int | None = None
    """Loop guard window of recent generated tokens; None = the family's official value for the input kind."""

    def with_guard(self, guard: GuardDefaults) -> ConvertOptions:
        """These options with the guard settings left to the family (None) taken from ``guard``; the window
        is never shorter than the n-gram."""
        size = guard.ngram_size if self.ngram_size is None else self.ngram_size
        window = guard.window if self.ngram_window is None else self.ngram_window
        return replace(self, ngram_size=size, ngram_window=max(window, size))


@dataclass
class PageRequest:
    """One page for ``convert_many``: where it comes from, how to get its image, and how to convert it.

    ``load`` renders the page; backends call it from a worker thread, in request order, so rendering
    overlaps the model. Whatever it raises becomes that page's failure, not the run's.
    """

    source: str
    """The input as the user named it, for messages."""
    number: int
    """1-based page number within ``source``."""
    load: Callable[[], Page]
    options: ConvertOptions
    retry: ConvertOptions | None = None
    """Settings for one more try when the page hits the token limit without finishing (a model loop);
    only generation settings may differ from ``options`` (same mode and prompt)."""
    on_text: Callable[[str], None] | None = None
    """Receives the page's text as it is generated; such a page is converted alone, so streams never interleave."""
    tag: Any = None
    """The caller's bookkeeping, handed back untouched with the outcome."""


@dataclass
class PageOutcome:
    """What became of one ``PageRequest``: a result, or the error that stopped the page."""

    request: PageRequest
    result: PageResult | None = None
    error: Exception | None = None
    first_token_at: float | None = None
    """``time.perf_counter()`` when the page's first token was chosen (None when there was none)."""


def parse_batch_size(text: str) -> int | None:
    """``--batch-size``: a positive number, or ``auto`` (None) to size batches from free memory."""
    if text == "auto":
        return None
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"--batch-size {text!r}: expected a positive number or 'auto'")
    return int(text)


class Backend(Protocol):
    provenance: dict[str, Any]
    """What produced the results, recorded in outputs: model revision, device, dtype, quant (may be empty)."""

    def guard_defaults(self, kind: str) -> GuardDefaults:
        """The model family's official loop guard for pages of input kind ``kind`` (``image``, ``pdf``)."""
        ...

    def convert(
        self, page: Page, options: ConvertOptions, on_text: Callable[[str], None] | None = None
    ) -> PageResult: ...

    def convert_many(self, requests: Iterable[PageRequest]) -> Generator[PageOutcome, None, None]:
        """One outcome per request, in request order, each as soon as it and all before it are done."""
        ...
