"""The sliding-window no-repeat-n-gram guard bans exactly what the official vLLM processor bans, and
``tail_repeats`` tells a page stuck in a loop from one that was merely longer than the token limit."""

from __future__ import annotations

import torch

from dsocr_cli.generation.guard import SlidingWindowNoRepeatNGram
from dsocr_cli.generation.loops import tail_repeats

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


# ---------------------------------------------------------------- tail_repeats: a loop, or a long page?

TR, CLOSE_TR = 128823, 128824
_WORD_IDS: dict[str, int] = {}


def tokens(text: str) -> list[int]:
    """Word-level token ids (markup tags at their official ids): one token per word is the worst case for
    telling a table from a loop, since a real tokenizer gives each cell's text more tokens."""
    markup = {"<tr>": TR, "</tr>": CLOSE_TR, "<td>": TD, "</td>": CLOSE_TD}
    ids = []
    for word in text.replace("<", " <").replace(">", "> ").split():
        ids.append(markup.get(word) or _WORD_IDS.setdefault(word, 1000 + len(_WORD_IDS)))
    return ids


PROSE = (
    "Scaled dot-product attention computes the compatibility of a query with every key, divides by the square "
    "root of their dimension and applies a softmax to obtain the weights on the values. Multi-head attention "
    "projects queries, keys and values h times with different learned projections, attends in parallel and "
    "concatenates the outputs, which lets the model jointly attend to information from different subspaces at "
    "different positions. Encoder and decoder stacks each hold six identical layers with residual connections "
    "around both sub-layers followed by layer normalisation; positional encodings use sines and cosines."
)


def guarded(unit: list[int], ngram_size: int, window: int, total: int) -> list[int]:
    """What a model stuck on ``unit`` emits under the no-repeat guard: whenever the guard bans its next
    token it writes a different one instead and carries on with the unit."""
    guard = SlidingWindowNoRepeatNGram(ngram_size, window, prompt_length=0)
    out: list[int] = []
    position = 0
    while len(out) < total:
        want = unit[position % len(unit)]
        if want in guard.banned_tokens(out):
            out.append(900_000 + len(out))  # a fresh token every time: the hardest case
        else:
            out.append(want)
        position += 1
    return out


def test_exact_loops_of_any_period_up_to_a_third_of_the_tail_are_loops() -> None:
    row = tokens("<tr><td>Net income</td><td>1,204</td><td>1,177</td></tr>")
    sentence = tokens(PROSE)[:120]
    assert tail_repeats(tokens(PROSE) + [TD, CLOSE_TD] * 600)  # the model's endless empty cells
    assert tail_repeats(tokens(PROSE) + row * 300)  # the same table row forever
    assert tail_repeats(tokens(PROSE) + sentence * 20)  # a 120-token passage, again and again
    assert tail_repeats([7] * 40)


def test_a_loop_the_guard_keeps_nudging_is_still_a_loop() -> None:
    row = tokens("<tr><td>Total</td><td>12.5</td><td>13.1</td></tr>")
    for ngram_size, window in ((20, 50), (10, 120)):  # the default guard and the retry's
        assert tail_repeats(guarded(row, ngram_size, window, total=2000)), (ngram_size, window)


def test_a_long_table_whose_cells_differ_is_not_a_loop_even_with_empty_cells() -> None:
    for empties in (0, 2, 6):
        table = "".join(f"<tr><td>R{k}</td>" + "<td></td>" * empties + f"<td>{k * 37}</td></tr>" for k in range(300))
        assert not tail_repeats(tokens(table)), empties


def test_text_that_does_not_repeat_and_short_tails_are_not_loops() -> None:
    assert not tail_repeats(tokens(PROSE))
    assert not tail_repeats(list(range(5000)))
    assert not tail_repeats([7] * 31)  # too short to tell


def test_a_loop_that_only_began_near_the_limit_is_not_called_one() -> None:
    body = list(range(10_000, 12_000))
    assert not tail_repeats(body + [TD, CLOSE_TD] * 100)  # 200 of the last 1,024 tokens repeat
    assert tail_repeats(body + [TD, CLOSE_TD] * 450)  # 900 of them do
