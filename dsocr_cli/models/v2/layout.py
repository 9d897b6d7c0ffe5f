"""The official DeepSeek-OCR-2 checkpoint layout: sizes, tensor names and shapes.

One source of truth for what a ``deepseek-ai/DeepSeek-OCR-2`` checkpoint contains (at official sizes:
the 2,707 names of the hub's ``model.safetensors.index.json``). The loader checks safetensors headers
against it and ``dsocr_cli.testing.checkpoint_v2`` writes random-weight checkpoints from it.

The SAM backbone and the DeepSeek-3B-MoE decoder are v1's networks under v1's names, so their tensors
come from v1's layout table (``dsocr_cli.models.v1.layout``); v2 adds the Qwen2 encoder
(``model.qwen2_model.*``, with the two query tables), a 896 -> 1280 projector and no ``image_newline``.

The official ``vision_config`` does not describe the encoder (only ``qwen2-0-5b.dim``) and contradicts
the official code in places (``downsample_channels`` [512, 1024] where the code has [512, 896]); the
official code's values are used: only ``downsample_channels[0]`` is read, the last compressor width is the
encoder's ``dim``. Reduced-size test checkpoints record their encoder sizes in extra
``vision_config.width.qwen2-0-5b`` fields (``layers``, ``heads``, ``kv_heads``, ``intermediate_size``),
which official checkpoints do not have (the official values are then used).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from dsocr_cli.models.v1 import layout as v1_layout
from dsocr_cli.models.v2.modes import GLOBAL_TOKENS, TILE_TOKENS

ENCODER_KEY = "qwen2-0-5b"
SAM_KEY = "sam_vit_b"
DECODER_PREFIXES = ("model.embed_tokens.", "model.layers.", "model.norm.", "lm_head.")


@dataclass(frozen=True)
class V2Spec:
    """Sizes of a v2 checkpoint. ``official()`` is DeepSeek-OCR-2; ``tiny()`` is a fast test model.

    The encoder width is the SAM compressor's last channel count (``downsample_channels[1]``), so the two
    are one field here (``encoder_hidden``).
    """

    hidden_size: int = 1280
    intermediate_size: int = 6848
    moe_intermediate_size: int = 896
    num_hidden_layers: int = 12
    num_attention_heads: int = 10
    n_routed_experts: int = 64
    num_experts_per_tok: int = 6
    n_shared_experts: int = 2
    first_k_dense_replace: int = 1
    vocab_size: int = 129280
    sam_width: int = 768
    sam_layers: int = 12
    sam_heads: int = 12
    sam_global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    sam_mid_channels: int = 512
    encoder_hidden: int = 896
    encoder_intermediate: int = 4864
    encoder_layers: int = 24
    encoder_heads: int = 14
    encoder_kv_heads: int = 2

    @classmethod
    def official(cls) -> V2Spec:
        return cls()

    @classmethod
    def tiny(cls) -> V2Spec:
        return cls(
            hidden_size=128,
            intermediate_size=256,
            moe_intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=2,
            n_routed_experts=8,
            num_experts_per_tok=3,
            sam_width=64,
            sam_layers=4,
            sam_heads=2,
            sam_global_attn_indexes=(1, 3),
            sam_mid_channels=64,
            encoder_hidden=64,
            encoder_intermediate=128,
            encoder_layers=2,
            encoder_heads=4,
            encoder_kv_heads=2,
        )

    def as_v1(self) -> v1_layout.CheckpointSpec:
        """The v1 spec whose SAM and decoder tensors are this checkpoint's."""
        return v1_layout.CheckpointSpec(
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            moe_intermediate_size=self.moe_intermediate_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            n_routed_experts=self.n_routed_experts,
            num_experts_per_tok=self.num_experts_per_tok,
            n_shared_experts=self.n_shared_experts,
            first_k_dense_replace=self.first_k_dense_replace,
            vocab_size=self.vocab_size,
            sam_width=self.sam_width,
            sam_layers=self.sam_layers,
            sam_heads=self.sam_heads,
            sam_global_attn_indexes=self.sam_global_attn_indexes,
            downsample_channels=(self.sam_mid_channels, self.encoder_hidden),
        )


def tensor_shapes(spec: V2Spec) -> Iterator[tuple[str, tuple[int, ...]]]:
    """Every tensor of the official v2 checkpoint with its shape, in the index's grouping order."""
    v1 = list(v1_layout.tensor_shapes(spec.as_v1()))
    yield from ((name, shape) for name, shape in v1 if name.startswith("model.sam_model."))
    q, h = "model.qwen2_model.", spec.encoder_hidden
    head_dim = h // spec.encoder_heads
    kv = spec.encoder_kv_heads * head_dim
    for i in range(spec.encoder_layers):
        b = f"{q}model.model.layers.{i}."
        yield b + "self_attn.q_proj.weight", (h, h)
        yield b + "self_attn.q_proj.bias", (h,)
        yield b + "self_attn.k_proj.weight", (kv, h)
        yield b + "self_attn.k_proj.bias", (kv,)
        yield b + "self_attn.v_proj.weight", (kv, h)
        yield b + "self_attn.v_proj.bias", (kv,)
        yield b + "self_attn.o_proj.weight", (h, h)
        yield b + "mlp.gate_proj.weight", (spec.encoder_intermediate, h)
        yield b + "mlp.up_proj.weight", (spec.encoder_intermediate, h)
        yield b + "mlp.down_proj.weight", (h, spec.encoder_intermediate)
        yield b + "input_layernorm.weight", (h,)
        yield b + "post_attention_layernorm.weight", (h,)
    yield q + "model.model.norm.weight", (h,)
    yield q + "query_768.weight", (TILE_TOKENS, h)
    yield q + "query_1024.weight", (GLOBAL_TOKENS, h)
    yield "model.projector.layers.weight", (spec.hidden_size, h)
    yield "model.projector.layers.bias", (spec.hidden_size,)
    yield "model.view_seperator", (spec.hidden_size,)
    yield from ((name, shape) for name, shape in v1 if name.startswith(DECODER_PREFIXES))


def spec_from_config(official: dict[str, Any]) -> V2Spec:
    """The sizes an official v2 ``config.json`` declares: the decoder from ``language_config``, SAM from
    ``width.sam_vit_b``, the encoder from ``width.qwen2-0-5b`` (official code values where it is silent)."""
    language = official.get("language_config") or official
    widths = official["vision_config"]["width"]
    sam, encoder = widths[SAM_KEY], widths[ENCODER_KEY]
    base = V2Spec.official()
    return replace(
        base,
        hidden_size=language["hidden_size"],
        intermediate_size=language["intermediate_size"],
        moe_intermediate_size=language["moe_intermediate_size"],
        num_hidden_layers=language["num_hidden_layers"],
        num_attention_heads=language["num_attention_heads"],
        n_routed_experts=language["n_routed_experts"],
        num_experts_per_tok=language["num_experts_per_tok"],
        n_shared_experts=language["n_shared_experts"],
        first_k_dense_replace=language.get("first_k_dense_replace", 1),
        vocab_size=language["vocab_size"],
        sam_width=sam["width"],
        sam_layers=sam["layers"],
        sam_heads=sam["heads"],
        sam_global_attn_indexes=tuple(sam["global_attn_indexes"]),
        sam_mid_channels=sam.get("downsample_channels", [base.sam_mid_channels])[0],
        encoder_hidden=encoder["dim"],
        encoder_intermediate=encoder.get("intermediate_size", base.encoder_intermediate),
        encoder_layers=encoder.get("layers", base.encoder_layers),
        encoder_heads=encoder.get("heads", base.encoder_heads),
        encoder_kv_heads=encoder.get("kv_heads", base.encoder_kv_heads),
    )
