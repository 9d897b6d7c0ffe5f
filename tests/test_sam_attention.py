"""SAM's global attention a slice at a time on the CPU: bit for bit transformers' SDPA attention in both families
in float32 whatever the slicing (bfloat16 within rounding), and given to exactly the global-attention layers of a
CPU model."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from transformers.models.deepseek_ocr2.modeling_deepseek_ocr2 import DeepseekOcr2SamVisionSdpaAttention
from transformers.models.unlimited_ocr.modeling_unlimited_ocr import UnlimitedOcrSamVisionSdpaAttention

from dsocr_cli.models import sam_attention

CLASSES = [UnlimitedOcrSamVisionSdpaAttention, DeepseekOcr2SamVisionSdpaAttention]


def attention(cls: type, hidden: int, heads: int, grid: int, seed: int = 0) -> torch.nn.Module:
    config = SimpleNamespace(
        image_size=grid * 16,
        patch_size=16,
        num_attention_heads=heads,
        hidden_size=hidden,
        attention_dropout=0.0,
        qkv_bias=True,
        use_rel_pos=True,
    )
    torch.manual_seed(seed)
    module = cls(config, 0).eval()
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_(0, 0.1)  # transformers initialises the relative positions to zero
    return module


@pytest.mark.parametrize("cls", CLASSES, ids=["v1", "v2"])
@pytest.mark.parametrize(
    ("images", "hidden", "heads", "grid", "slice_rows"),
    [(1, 96, 4, 16, 1), (3, 96, 4, 16, 5), (2, 64, 2, 12, 100), (1, 768, 12, 8, 7)],
    ids=["one-per-slice", "remainder", "one-slice", "sam-b-width"],
)  # fmt: skip
def test_it_is_transformers_attention_bit_for_bit(
    cls: type, images: int, hidden: int, heads: int, grid: int, slice_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = attention(cls, hidden, heads, grid)
    monkeypatch.setattr(sam_attention, "SLICE_BYTES", slice_rows * (grid * grid) ** 2 * 4)
    inputs = torch.randn(images, grid, grid, hidden)
    with torch.inference_mode():
        expected, _ = module(inputs)
        got, weights = sam_attention.sam_attention_forward(module, inputs)
    assert weights is None and got.shape == expected.shape
    assert torch.equal(got, expected)


@pytest.mark.parametrize("cls", CLASSES, ids=["v1", "v2"])
def test_it_is_transformers_attention_in_bfloat16(cls: type) -> None:
    # Identical on the CPUs measured; bf16 attention kernels differ between CPU kinds (AMX), so within rounding.
    module = attention(cls, 64, 2, 8).to(torch.bfloat16)
    inputs = torch.randn(2, 8, 8, 64, dtype=torch.bfloat16)
    with torch.inference_mode():
        torch.testing.assert_close(sam_attention.sam_attention_forward(module, inputs)[0], module(inputs)[0])


def test_layers_without_relative_positions_keep_transformers_forward() -> None:
    module = attention(UnlimitedOcrSamVisionSdpaAttention, 64, 2, 8)
    module.use_rel_pos = False
    inputs = torch.randn(1, 8, 8, 64)
    with torch.inference_mode():
        assert torch.equal(sam_attention.sam_attention_forward(module, inputs)[0], module(inputs)[0])


def test_a_cpu_model_gets_it_on_its_global_attention_layers_only(family_runner) -> None:
    model = family_runner.loaded.model
    layers = [m for m in model.modules() if isinstance(getattr(m, "attn", None), tuple(CLASSES))]
    sliced = [m for m in layers if vars(m.attn).get("forward") is not None]
    assert sliced and len(sliced) < len(layers)  # the tiny checkpoints have windowed layers too
    assert all(m.window_size == 0 and m.attn.forward.__func__ is sam_attention.sam_attention_forward for m in sliced)
    assert all(m.window_size > 0 for m in layers if m not in sliced)
