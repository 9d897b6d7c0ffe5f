"""The sliding-window no-repeat-n-gram guard bans exactly what the official vLLM processor bans."""

from __future__ import annotations

import torch

from dsocr_cli.engine.guard import SlidingWindowNoRepeatNGram

TD, CLOSE_TD = 128821, 128822


def run(guard: SlidingWindowNoRepeatNGram, ids: list[int], vocab: int = 200_000) -> set[int]:
    scores = torch.zeros(1, vocab)
    out = guard(torch.tensor([ids]), scores)
    return set(torch.nonzero(out[0] == -float("inf")).flatten().tolist())


def test_bans_token_that_would_repeat_a_trigram() -> None:
    guard = SlidingWindowNoRepeatNGram(3, 50, prompt_length=2)
    assert run(guard, [9, 9, 5, 6, 7, 5, 6]) == {7}


def test_prompt_tokens_are_never_scanned() -> None:
    guard = SlidingWindowNoRepeatNGram(3, 50, prompt_length=3)
    assert run(guard, [5, 6, 7, 5, 6]) == set()


def test_only_the_window_of_recent_generated_tokens_counts() -> None:
    generated = [5, 6, 7] + list(range(100, 110)) + [5, 6]
    assert run(SlidingWindowNoRepeatNGram(3, 20, prompt_length=0), generated) == {7}
    assert run(SlidingWindowNoRepeatNGram(3, 10, prompt_length=0), generated) == set()


def test_table_cell_tokens_stay_allowed() -> None:
    guard = SlidingWindowNoRepeatNGram(2, 50, prompt_length=0, whitelist=(TD, CLOSE_TD))
    assert run(guard, [TD, 4, CLOSE_TD, TD, 4]) == set()
    assert run(guard, [4, TD, 4]) == set()
    assert run(SlidingWindowNoRepeatNGram(2, 50, prompt_length=0), [4, TD, 4]) == {TD}


def test_each_batch_row_is_guarded_on_its_own() -> None:
    guard = SlidingWindowNoRepeatNGram(2, 50, prompt_length=0)
    scores = guard(torch.tensor([[1, 2, 1], [3, 4, 5]]), torch.zeros(2, 10))
    assert scores[0, 2] == -float("inf") and torch.isfinite(scores[1]).all()
