"""Fidelity: dsocr reproduces the official DeepSeek-OCR code's numbers (see tests/fixtures/GOLDEN.md).

The fixture was produced by running the official Hugging Face remote code on the same random-weight
checkpoint and images; here dsocr's own loader, preprocessing, prompt building and generation run on
them and must give identical token ids and greedy tokens, and first-step logits within 1e-4 (float32).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from dsocr_cli.models.v1.preprocess import MODES
from dsocr_cli.models.v1.prompts import Prompt
from dsocr_cli.testing.checkpoint import SHARD_NAME
from tests.checkpoints import generate_with_first_logits
from tests.conftest import FIXTURES

GOLDEN = json.loads((FIXTURES / "golden_v1.json").read_text())
LOGIT_TOLERANCE = 1e-4


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fixture_matches_this_checkpoint_and_images(tiny_checkpoint: Path) -> None:
    assert sha256(tiny_checkpoint / SHARD_NAME) == GOLDEN["checkpoint"]["safetensors_sha256"]
    assert sha256(tiny_checkpoint / "tokenizer.json") == GOLDEN["checkpoint"]["tokenizer_json_sha256"]
    for name, facts in GOLDEN["images"].items():
        assert sha256(FIXTURES / "images" / name) == facts["sha256"]


@pytest.fixture(scope="module")
def results(tiny_runner) -> dict[str, dict]:
    """Run every golden case once through dsocr: prompt ids, first-step logits, 20 greedy tokens."""
    out = {}
    for case in GOLDEN["cases"]:
        image = Image.open(FIXTURES / "images" / case["image"]).convert("RGB")
        request = tiny_runner.prepare(image, MODES[case["mode"]], Prompt("golden", case["prompt"]))
        generation, logits = generate_with_first_logits(tiny_runner, request, max_new_tokens=20)
        out[case["id"]] = {"request": request, "logits": logits, "tokens": generation.token_ids}
    return out


@pytest.mark.parametrize("case", GOLDEN["cases"], ids=[case["id"] for case in GOLDEN["cases"]])
def test_prompt_ids_and_tiling_match_official(case: dict, results: dict) -> None:
    request = results[case["id"]]["request"]
    assert request.input_ids == case["input_ids"]
    assert request.image.num_image_tokens == case["n_image_tokens"]
    assert list(request.image.grid) == case["images_spatial_crop"]
    assert request.image.global_view.double().sum().item() == pytest.approx(case["pixel_checksums"]["images_ori"], abs=1e-3)
    if request.image.tiles is not None:
        assert request.image.tiles.double().sum().item() == pytest.approx(case["pixel_checksums"]["images_crop"], abs=1e-3)


@pytest.mark.parametrize("case", GOLDEN["cases"], ids=[case["id"] for case in GOLDEN["cases"]])
def test_first_step_logits_match_official(case: dict, results: dict) -> None:
    logits = results[case["id"]]["logits"]
    expected_ids = case["first_step"]["top_ids"]
    assert logits.topk(len(expected_ids)).indices.tolist() == expected_ids
    diff = (logits[expected_ids] - torch.tensor(case["first_step"]["top_logits"])).abs().max().item()
    assert diff <= LOGIT_TOLERANCE, f"max |logit diff| {diff:.2e}"
    assert logits.abs().max().item() == pytest.approx(case["first_step"]["max_abs_logit"], abs=LOGIT_TOLERANCE)


@pytest.mark.parametrize("case", GOLDEN["cases"], ids=[case["id"] for case in GOLDEN["cases"]])
def test_greedy_tokens_match_official(case: dict, results: dict) -> None:
    assert results[case["id"]]["tokens"] == case["greedy_tokens"]
