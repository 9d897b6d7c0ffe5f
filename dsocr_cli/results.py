"""The data that flows between stages: a page to read, and what the model made of it.

inputs -> ``Page`` -> preprocessing -> model -> ``PageResult`` -> post-processing -> writers.
Writers only ever see ``PageResult``; they cannot tell which backend produced it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image


@dataclass
class Page:
    """One page image of one input document."""

    source: str
    """The input as the user named it (a path, or ``-`` for stdin)."""
    number: int
    """1-based page number within the document (always 1 for a single image)."""
    image: Image.Image
    """RGB page image at its rendered size."""


@dataclass
class PageResult:
    """The model's answer for one page, plus the facts the JSON writer reports."""

    page: Page
    text: str
    """Decoded model output, special tokens kept, EOS removed."""
    mode: str
    prompt: str
    vision_tokens: int
    """Image positions in the prompt (newline and separator positions included)."""
    generated_tokens: int
    finished: bool
    """True when the model stopped with EOS; False when it hit the token limit."""
    seconds: float
    retried: bool = False
    """True when the page looped and was re-run with a stronger no-repeat setting."""
    looped: bool = False
    """True when the page hit the token limit with a repeating tail (``generation.guard.tail_repeats``), after
    any retry: a model loop. ``finished`` False with ``looped`` False is a page merely cut off at the limit."""
    token_ids: list[int] = field(default_factory=list, repr=False)
    prompt_tokens: int = 0
    """The prompt's length in tokens: BOS, instruction text and image positions (0 when the backend does not
    know it, e.g. a remote server that did not say); ``dsocr serve`` reports it as ``usage.prompt_tokens``."""
    source: str = "ocr"
    """Where the text came from: ``ocr`` (the model) or ``text-layer`` (the PDF page's own text, ``--text-layer``)."""
