"""The local-model backend: pages in, ``PageResult`` objects out, on this machine's CPU or GPU."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable
from typing import Any

from dsocr_cli.engine.backend import ConvertOptions, PageOutcome, PageRequest
from dsocr_cli.engine.batched import BatchedEngine, non_finite_logits_error, page_result
from dsocr_cli.generation.outcome import NonFiniteLogits
from dsocr_cli.models.family import FamilyRunner, GuardDefaults
from dsocr_cli.results import Page, PageResult


class LocalBackend:
    """Runs pages through a locally loaded model: one page per ``convert`` call, or batched by ``convert_many``."""

    def __init__(self, runner: FamilyRunner, batch_size: int | None = None, compile: str | None = None) -> None:
        """``batch_size`` None sizes batches from free memory (``engine.batched.auto_batch_size``); ``compile``:
        a ``torch.compile`` backend for the decode steps (``generation.compiled``), None for eager steps."""
        self.runner = runner
        self.engine = BatchedEngine(runner, batch_size=batch_size, compile=compile)
        self.provenance: dict[str, Any] = {}
        """Set by ``engine.factory``: model, revision, device, dtype, quant (written into outputs)."""

    def guard_defaults(self, kind: str) -> GuardDefaults:
        return self.runner.guard_defaults(kind)

    def convert(self, page: Page, options: ConvertOptions, on_text: Callable[[str], None] | None = None) -> PageResult:
        """One page through transformers' ``generate``: the official one-page path (no retry: that is the
        batched engine's ``PageRequest.retry``). ``looped`` and ``finished`` mean what they do there; NaN/inf
        logits raise ``ModelError``. Guard settings left None are the family's image defaults."""
        options = options.with_guard(self.runner.guard_defaults("image"))
        self.runner.mode(options.mode)  # an unknown mode is the family's UsageError, before any work
        started = time.perf_counter()
        prepared = self.runner.prepare_image(page.image, options.mode)
        request = self.runner.request(prepared, self.runner.resolve_prompt(options.prompt))
        try:
            generation = self.runner.generate(
                request,
                max_new_tokens=options.max_new_tokens,
                ngram_size=options.ngram_size,
                ngram_window=options.ngram_window,
                on_text=on_text,
            )
        except NonFiniteLogits:
            raise non_finite_logits_error(self.runner, page) from None
        return page_result(self.runner, page, options, request, generation, time.perf_counter() - started)

    def convert_many(self, requests: Iterable[PageRequest]) -> Generator[PageOutcome, None, None]:
        return self.engine.run(requests)
