"""Loops: the official sliding-window no-repeat-n-gram guard, and telling a looping page from a long one.

DeepSeek-OCR can loop on a page (the same table row forever). The official vLLM pipeline bans any
token that would complete an n-gram already seen within the last ``window`` *generated* tokens, except
``<td>``/``</td>`` so that legitimately repeated table cells stay possible. transformers' own
``no_repeat_ngram_size`` differs: it scans the whole sequence including the prompt and has no whitelist.

A page that reaches the token limit has either looped or is simply longer than the limit; ``tail_repeats``
tells the two apart from the generated tokens alone, so that only a loop is retried with a stronger guard
and reported as one (``PageResult.looped``), and a long page is reported as truncated.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

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


LOOP_TAIL = 1024
"""Generated tokens at the end of a page that ``tail_repeats`` examines."""
LOOP_NGRAM = 8
"""Length of the token runs ``tail_repeats`` counts."""
LOOP_REPEATS = 3
"""Occurrences within the tail that make a run a repeat."""
LOOP_COVERAGE = 0.8
"""Share of the tail that repeated runs must cover for the tail to count as a loop."""
MIN_LOOP_TAIL = 32
"""Pages cut off with fewer generated tokens than this are never called loops: too short to tell."""


def tail_repeats(token_ids: Sequence[int]) -> bool:
    """Whether a page's generated tail is a model loop rather than content cut off by the token limit.

    Rule: take the last ``LOOP_TAIL`` (1,024) tokens, or all of them when fewer; a tail shorter than
    ``MIN_LOOP_TAIL`` (32) is never a loop. Every run of ``LOOP_NGRAM`` (8) consecutive tokens that
    occurs at least ``LOOP_REPEATS`` (3) times in the tail is a repeat; the tail loops when the token
    positions covered by repeats make up at least ``LOOP_COVERAGE`` (80%) of it.

    So a unit of up to ~330 tokens repeated to the end is a loop whatever its period, and so is one the
    no-repeat guard keeps nudging (a changed token every 10-20 tokens still leaves ~90% covered), while
    prose and tables whose cells differ are not: every 8-token run of a row then holds some of its own
    text. A table's markup tokens (``<tr>``, ``<td>``, ``</td>``) repeat on their own, so rows made
    almost only of empty cells count as a loop, like the model's endless ``<td></td>`` runs: with
    one-token cell texts, two filled cells and 8 or more empty ones per row (6 or fewer is not a
    loop; longer cell texts allow more). Cost: one pass over at most 1,024 tokens.
    """
    tail = list(token_ids[-LOOP_TAIL:])
    if len(tail) < MIN_LOOP_TAIL:
        return False
    n = LOOP_NGRAM
    starts = range(len(tail) - n + 1)
    counts = Counter(tuple(tail[i : i + n]) for i in starts)
    covered = [False] * len(tail)
    for i in starts:
        if counts[tuple(tail[i : i + n])] >= LOOP_REPEATS:
            covered[i : i + n] = [True] * n
    return sum(covered) >= LOOP_COVERAGE * len(tail)
