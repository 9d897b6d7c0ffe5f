"""Loops: the official sliding-window no-repeat-n-gram guard, and telling a looping page from a long one.

DeepSeek-OCR can loop on a page (the same table row forever). The official vLLM pipeline bans any
token that would complete an n-gram already seen within the last ``window`` *generated* tokens, except
``<td>``/``</td>`` so that legitimately repeated table cells stay possible. transformers' own
``no_repeat_ngram_size`` differs: it scans the whole sequence including the prompt and has no whitelist.

Telling a loop from a long page (``tail_repeats``) is in ``dsocr_cli.generation.loops``: pure Python, so
the remote backend uses it without importing torch.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from transformers import LogitsProcessor


class SlidingWindowNoRepeatNGram(LogitsProcessor):
    """Ban the token that would repeat an ``ngram_size``-gram seen in the last ``window_size`` generated tokens."""

    def __init__(self, ngram_size: int, window_size: int, prompt_length: int, whitelist: Iterable[int] = ()) -> None:
        if ngram_size < 1 or window_size < ngram_size:
            raise ValueError(f"need 1 <= ngram_size <= window_size, got {ngram_size} and {window_size}")
        self.ngram_size = ngram_size
        self.window_size = window_size
        self.prompt_length = prompt_length
        self.whitelist = frozenset(whitelist)

    def banned_tokens(self, generated: list[int]) -> set[int]:
        """Tokens that would complete an n-gram whose first n-1 tokens equal the last n-1 generated ones."""
        n = self.ngram_size
        if len(generated) < n:
            return set()
        prefix = generated[len(generated) - (n - 1) :]
        first = max(0, len(generated) - self.window_size)
        banned = {
            generated[i + n - 1] for i in range(first, len(generated) - n + 1) if generated[i : i + n - 1] == prefix
        }
        return banned - self.whitelist

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids[:, self.prompt_length :].tolist()
        for row, tokens in enumerate(generated):
            banned = self.banned_tokens(tokens)
            if banned:
                scores[row, sorted(banned)] = -float("inf")
        return scores
