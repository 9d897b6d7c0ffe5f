"""Telling a page stuck in a loop from one that is merely longer than the token limit (pure Python).

A page that reaches the token limit has either looped or is simply longer than the limit; ``tail_repeats``
tells the two apart from the generated tokens alone, so that only a loop is retried with a stronger guard
and reported as one (``PageResult.looped``), and a long page is reported as truncated. No torch here: the
remote backend applies the same rule to a server's text.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

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
