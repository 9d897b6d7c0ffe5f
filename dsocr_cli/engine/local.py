"""The local-model backend: a page in, a ``PageResult`` out, on this machine's CPU or GPU."""

from __future__ import annotations

import time
from collections.abc import Callable

from dsocr_cli.engine.backend import ConvertOptions
from dsocr_cli.errors import UsageError
from dsocr_cli.models.v1.preprocess import MODES
from dsocr_cli.models.v1.prompts import resolve_prompt
from dsocr_cli.models.v1.runner import V1Runner
from dsocr_cli.results import Page, PageResult


class LocalBackend:
    """Runs pages through a locally loaded model, one page per call."""

    def __init__(self, runner: V1Runner) -> None:
        self.runner = runner

    def convert(
        self, page: Page, options: ConvertOptions, on_text: Callable[[str], None] | None = None
    ) -> PageResult:
        if options.mode not in MODES:
            raise UsageError(f"unknown --mode {options.mode!r} (choose from {', '.join(MODES)})")
        prompt = resolve_prompt(options.prompt)
        started = time.perf_counter()
        request = self.runner.prepare(page.image, MODES[options.mode], prompt)
        generation = self.runner.generate(
            request,
            max_new_tokens=options.max_new_tokens,
            ngram_size=options.ngram_size,
            ngram_window=options.ngram_window,
            on_text=on_text,
        )
        return PageResult(
            page=page,
            text=self.runner.decode(generation.token_ids),
            mode=options.mode,
            prompt=prompt.text,
            vision_tokens=request.image.num_image_tokens,
            generated_tokens=len(generation.token_ids) + int(generation.finished),
            finished=generation.finished,
            seconds=time.perf_counter() - started,
            token_ids=generation.token_ids,
        )
