"""Generation on the tiny checkpoint: the guard, EOS handling, loops, damaged weights and streaming (quantized
runs: test_quant.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dsocr_cli.engine.backend import ConvertOptions
from dsocr_cli.engine.local import LocalBackend
from dsocr_cli.errors import ExitCode, ModelError
from dsocr_cli.models.v1.loader import load_v1
from dsocr_cli.models.v1.preprocess import MODES
from dsocr_cli.models.v1.prompts import resolve_prompt
from dsocr_cli.models.v1.runner import V1Runner
from dsocr_cli.results import Page
from dsocr_cli.testing.images import make_page_image
from tests.test_batched import nan_weights, rewritten_checkpoint

PAGE = Page(source="page.png", number=1, image=make_page_image(600, 500, seed=3))


def repeated_ngrams(tokens: list[int], n: int) -> int:
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return len(grams) - len(set(grams))


def test_unguarded_random_model_loops_and_the_guard_stops_the_loop(tiny_runner) -> None:
    request = tiny_runner.prepare(make_page_image(1190, 1684, seed=1), MODES["gundam"], resolve_prompt("markdown"))
    looping = tiny_runner.generate(request, max_new_tokens=40, ngram_size=0)
    guarded = tiny_runner.generate(request, max_new_tokens=40, ngram_size=2, ngram_window=50)
    assert repeated_ngrams(looping.token_ids, 2) > 0 and looping.looped
    assert repeated_ngrams(guarded.token_ids, 2) == 0
    assert len(guarded.token_ids) == 40 and not guarded.finished and not guarded.looped


def test_page_without_eos_is_flagged_not_dropped(tiny_runner) -> None:
    result = LocalBackend(tiny_runner).convert(PAGE, ConvertOptions(mode="tiny", prompt="free", max_new_tokens=8))
    assert result.finished is False and result.looped is False  # cut off at the limit: 8 tokens show no loop
    assert result.generated_tokens == 8 and result.text
    assert result.vision_tokens == 73 and result.prompt == "<image>\nFree OCR."


def test_eos_ends_the_page_and_is_not_in_the_text(tiny_checkpoint: Path) -> None:
    loaded = load_v1(tiny_checkpoint)
    with torch.no_grad():
        loaded.model.lm_head.weight[loaded.token_ids.eos] = 0
        loaded.model.lm_head.weight[loaded.token_ids.eos, :] = loaded.model.lm_head.weight.abs().max() * 50
    runner = V1Runner(loaded)
    result = LocalBackend(runner).convert(PAGE, ConvertOptions(mode="tiny", prompt="free", max_new_tokens=8))
    assert result.finished is True
    assert "<｜end▁of▁sentence｜>" not in result.text


def test_streamed_text_equals_final_text(tiny_runner) -> None:
    pieces: list[str] = []
    result = LocalBackend(tiny_runner).convert(
        PAGE, ConvertOptions(mode="small", prompt="markdown", max_new_tokens=12), on_text=pieces.append
    )
    assert "".join(pieces) == result.text
    assert len(pieces) > 1


def test_nan_weights_on_the_one_page_path_are_a_model_error_naming_the_page(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    runner = V1Runner(load_v1(rewritten_checkpoint(tiny_checkpoint, tmp_path / "nan", nan_weights)))

    with pytest.raises(ModelError) as err:
        LocalBackend(runner).convert(PAGE, ConvertOptions(mode="tiny", max_new_tokens=4))

    assert str(err.value) == "model produced NaN/inf logits on page.png page 1; the weights are damaged"
    assert err.value.exit_code == ExitCode.MODEL
