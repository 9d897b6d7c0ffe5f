"""What a backend is: something that turns a page and options into a ``PageResult``.

The local model (``engine.local``) is one backend; a remote OpenAI-compatible server is another.
Writers and the CLI only see ``PageResult`` and cannot tell them apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from dsocr_cli.results import Page, PageResult


@dataclass(frozen=True)
class ConvertOptions:
    """Per-run generation settings (defaults = the official PDF pipeline)."""

    mode: str = "gundam"
    prompt: str = "markdown"
    max_new_tokens: int = 8192
    ngram_size: int = 20
    ngram_window: int = 50


class Backend(Protocol):
    def convert(
        self, page: Page, options: ConvertOptions, on_text: Callable[[str], None] | None = None
    ) -> PageResult: ...
