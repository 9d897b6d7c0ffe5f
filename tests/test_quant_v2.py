"""``--quant nf4|int8`` for DeepSeek-OCR-2: the expert quantization v1 uses, on v2's decoder, both hub layouts.

v2 keeps v1's decoder (DeepSeek-3B-MoE), so one quantizer (``dsocr_cli.models.quantize``) serves both
families; these tests check that it reaches v2's experts and linears, that the cache entry loads back as a
v2 model, that its first-token logits stay close to the unquantized model's, and that ``dsocr convert``
runs end to end with it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import bitsandbytes as bnb
import pytest
import torch

from dsocr_cli.models import registry
from dsocr_cli.models.quantize import MANIFEST_NAME
from dsocr_cli.models.quantized_experts import QuantizedExperts
from dsocr_cli.models.v1.prompts import resolve_prompt
from dsocr_cli.models.v2.runner import V2Runner
from dsocr_cli.quant import prepare_quantized, quantized_kind, weight_memory
from dsocr_cli.testing.checkpoint_v2 import write_checkpoint_v2, write_converted_checkpoint_v2
from dsocr_cli.testing.images import make_page_image
from tests.checkpoints import always_emit, rewritten_checkpoint
from tests.cli_support import make_image

CPU = torch.device("cpu")
KINDS = ("nf4", "int8")
LAYOUTS = ("official", "converted")
STEPS = 6


@pytest.fixture(scope="module")
def quant_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("dsocr-cache-v2")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DSOCR_CACHE", str(root))
        yield root


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same random v2 network in both hub layouts."""
    root = tmp_path_factory.mktemp("v2-quant")
    return {
        "official": write_checkpoint_v2(root / "official", seed=0),
        "converted": write_converted_checkpoint_v2(root / "converted", seed=0),
    }


@pytest.fixture(scope="module")
def unquantized(checkpoints: dict[str, Path]) -> V2Runner:
    return registry.load_runner(checkpoints["official"], CPU, torch.float32)


@pytest.fixture(scope="module")
def entries(quant_cache: Path, checkpoints: dict[str, Path]) -> dict[tuple[str, str], Path]:
    return {
        (layout, kind): prepare_quantized(checkpoints[layout], kind, CPU) for layout in LAYOUTS for kind in KINDS
    }


def first_token_logits(runner: V2Runner, width: int, height: int) -> torch.Tensor:
    request = runner.request(runner.prepare_image(make_page_image(width, height, seed=5), "gundam"), resolve_prompt("markdown"))
    features = runner.encode_images([request], budget=2**40)[0]
    return runner.prefill(request, features).logits


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kind", KINDS)
def test_a_v2_checkpoint_quantizes_through_the_cache_and_stays_close(
    kind: str, layout: str, entries: dict[tuple[str, str], Path], unquantized: V2Runner
) -> None:
    entry = entries[(layout, kind)]
    assert quantized_kind(entry) == kind and json.loads((entry / MANIFEST_NAME).read_text())["quant"] == kind
    runner = registry.load_runner(entry, CPU, torch.float32)
    assert isinstance(runner, V2Runner)  # the cache entry is still recognised as DeepSeek-OCR-2

    layers = runner.model.model.language_model.layers
    moe = [layer.mlp for layer in layers if hasattr(layer.mlp, "experts")]
    assert moe and all(isinstance(block.experts, QuantizedExperts) and block.experts.kind == kind for block in moe)
    linear = bnb.nn.Linear4bit if kind == "nf4" else bnb.nn.Linear8bitLt
    assert isinstance(layers[0].self_attn.q_proj, linear) and isinstance(moe[0].shared_experts.up_proj, linear)
    memory, full = weight_memory(runner.model), weight_memory(unquantized.model)
    assert memory.categories["experts"].quantized_weights == full.categories["experts"].weights > 0
    assert memory.categories["kept"].stored_bytes == full.categories["kept"].stored_bytes  # lm_head untouched
    vision_linears = [m for m in runner.model.model.vision_tower.modules() if isinstance(m, torch.nn.Linear)]
    if kind == "int8":  # int8 keeps the vision tower (SAM runs its linears on 4-D maps)
        assert vision_linears and all(type(m) is torch.nn.Linear for m in vision_linears)
        assert memory.ratio_to_bf16("experts") <= 0.55
    else:
        assert all(isinstance(m, bnb.nn.Linear4bit) for m in vision_linears)
        assert memory.ratio_to_bf16("linear", "experts") <= 0.30

    expected, got = first_token_logits(unquantized, 900, 1200), first_token_logits(runner, 900, 1200)
    cosine = torch.nn.functional.cosine_similarity(expected, got, dim=0).item()
    print(f"\nv2 {layout} {kind}: first-token logit cosine vs unquantized {cosine:.4f}")
    assert cosine > (0.9 if kind == "nf4" else 0.99)

    request = runner.request(runner.prepare_image(make_page_image(640, 480, seed=1), "base"), resolve_prompt("free"))
    generation = runner.generate(request, max_new_tokens=STEPS, ngram_size=0)
    assert len(generation.token_ids) == STEPS


def test_a_v2_conversion_with_quant_runs_end_to_end(
    dsocr, checkpoints: dict[str, Path], unquantized: V2Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``dsocr convert --quant nf4`` on a v2 checkpoint: exit 0, a page of output, and a cache entry reused by the
    next run (no second build)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("DSOCR_CACHE", str(cache))
    model = rewritten_checkpoint(checkpoints["official"], tmp_path / "v2-eos", always_emit(unquantized.eos_id))
    make_image("scan.png")

    first = dsocr("convert", "scan.png", "--model", model, "--quant", "nf4", "--device", "cpu", "-v")
    second = dsocr("convert", "scan.png", "--model", model, "--quant", "nf4", "--device", "cpu", "-v")

    assert first.code == 0 and second.code == 0, first.stderr + second.stderr
    assert first.stdout == second.stdout
    assert "quantizing" in first.stderr and "quant nf4" in first.stderr
    assert "quantizing" not in second.stderr and "quant nf4" in second.stderr
    assert len([p for p in cache.rglob(MANIFEST_NAME)]) == 1
