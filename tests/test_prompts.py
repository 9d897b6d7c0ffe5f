"""Prompts are the official strings and tokenize as the official code does: one BOS, no role tokens."""

from __future__ import annotations

import pytest

from dsocr_cli.errors import UsageError
from dsocr_cli.models.v1.prompts import prompt_ids, resolve_prompt


@pytest.mark.parametrize(
    ("spec", "text"),
    [
        ("markdown", "<image>\n<|grounding|>Convert the document to markdown."),
        ("free", "<image>\nFree OCR."),
        ("figure", "<image>\nParse the figure."),
        ("describe", "<image>\nDescribe this image in detail."),
        ("locate:the total", "<image>\nLocate <|ref|>the total<|/ref|> in the image."),
        ("custom:Read the table.", "<image>\nRead the table."),
        ("custom:<image>\nRead the table.", "<image>\nRead the table."),
    ],
)
def test_prompt_texts_are_the_official_ones(spec: str, text: str) -> None:
    assert resolve_prompt(spec).text == text


@pytest.mark.parametrize("spec", ["nonsense", "locate:", "custom:", "custom:two <image> pages"])
def test_bad_prompts_are_usage_errors(spec: str) -> None:
    with pytest.raises(UsageError):
        resolve_prompt(spec)


def test_prompt_ids_are_bos_image_positions_then_instruction(tiny_runner) -> None:
    loaded = tiny_runner.loaded
    ids = prompt_ids(resolve_prompt("free"), loaded.tokenizer, loaded.token_ids, 73)
    assert ids[0] == loaded.token_ids.bos and ids.count(loaded.token_ids.bos) == 1
    assert ids[1:74] == [loaded.token_ids.image] * 73
    assert loaded.tokenizer.decode(ids[74:]) == "\nFree OCR."
    assert 128825 not in ids and 128826 not in ids
