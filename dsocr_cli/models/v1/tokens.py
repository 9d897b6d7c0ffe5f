"""The token ids v1 prompts and guards rely on (read from the tokenizer, never hard-coded)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TokenIds:
    """Ids of the tokens v1 prompts and guards rely on, read from the tokenizer."""

    bos: int
    eos: int
    image: int
    td_open: int
    td_close: int
