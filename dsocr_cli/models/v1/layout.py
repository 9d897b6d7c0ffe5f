"""The official v1 checkpoint layout: sizes, tensor names and shapes.

One source of truth for what a DeepSeek-OCR v1 checkpoint contains. The loader checks a checkpoint's
safetensors headers against it before loading (so a missing or misshaped tensor is reported by name),
and ``dsocr_cli.testing`` writes random-weight checkpoints from it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CheckpointSpec:
    """Sizes of a v1 checkpoint. ``official()`` is DeepSeek-OCR; ``tiny()`` is a fast test model.

    The SAM neck (256 channels), the 16x compressor (256 -> 512 -> 1024) and therefore the CLIP width
    (1024) are fixed by the official code, so only depths, SAM width and the decoder are scaled down.
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
    clip_layers: int = 24
    clip_heads: int = 16
    clip_width: int = 1024
    downsample_channels: tuple[int, int] = (512, 1024)
    sam_neck_channels: int = 256
    sam_window_size: int = 14
    sam_pos_grid: int = 64
    clip_pos_grid: int = 16

    @classmethod
    def official(cls) -> CheckpointSpec:
        return cls()

    @classmethod
    def tiny(cls) -> CheckpointSpec:
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
            clip_layers=2,
        )


def tensor_shapes(spec: CheckpointSpec) -> Iterator[tuple[str, tuple[int, ...]]]:
    """Every tensor of the official checkpoint (the same names as the hub index) with its shape."""
    sam = "model.sam_model."
    w, head_dim = spec.sam_width, spec.sam_width // spec.sam_heads
    yield sam + "pos_embed", (1, spec.sam_pos_grid, spec.sam_pos_grid, w)
    yield sam + "patch_embed.proj.weight", (w, 3, 16, 16)
    yield sam + "patch_embed.proj.bias", (w,)
    for i in range(spec.sam_layers):
        b = f"{sam}blocks.{i}."
        rel = 2 * spec.sam_pos_grid - 1 if i in spec.sam_global_attn_indexes else 2 * spec.sam_window_size - 1
        yield b + "norm1.weight", (w,)
        yield b + "norm1.bias", (w,)
        yield b + "attn.rel_pos_h", (rel, head_dim)
        yield b + "attn.rel_pos_w", (rel, head_dim)
        yield b + "attn.qkv.weight", (3 * w, w)
        yield b + "attn.qkv.bias", (3 * w,)
        yield b + "attn.proj.weight", (w, w)
        yield b + "attn.proj.bias", (w,)
        yield b + "norm2.weight", (w,)
        yield b + "norm2.bias", (w,)
        yield b + "mlp.lin1.weight", (4 * w, w)
        yield b + "mlp.lin1.bias", (4 * w,)
        yield b + "mlp.lin2.weight", (w, 4 * w)
        yield b + "mlp.lin2.bias", (w,)
    neck = spec.sam_neck_channels
    yield sam + "neck.0.weight", (neck, w, 1, 1)
    yield sam + "neck.1.weight", (neck,)
    yield sam + "neck.1.bias", (neck,)
    yield sam + "neck.2.weight", (neck, neck, 3, 3)
    yield sam + "neck.3.weight", (neck,)
    yield sam + "neck.3.bias", (neck,)
    c2, c3 = spec.downsample_channels
    yield sam + "net_2.weight", (c2, neck, 3, 3)
    yield sam + "net_3.weight", (c3, c2, 3, 3)

    clip, cw = "model.vision_model.", spec.clip_width
    yield clip + "embeddings.class_embedding", (cw,)
    yield clip + "embeddings.patch_embedding.weight", (cw, 3, 14, 14)
    yield clip + "embeddings.position_embedding.weight", (spec.clip_pos_grid**2 + 1, cw)
    yield clip + "pre_layrnorm.weight", (cw,)
    yield clip + "pre_layrnorm.bias", (cw,)
    for i in range(spec.clip_layers):
        b = f"{clip}transformer.layers.{i}."
        yield b + "self_attn.qkv_proj.weight", (3 * cw, cw)
        yield b + "self_attn.qkv_proj.bias", (3 * cw,)
        yield b + "self_attn.out_proj.weight", (cw, cw)
        yield b + "self_attn.out_proj.bias", (cw,)
        yield b + "layer_norm1.weight", (cw,)
        yield b + "layer_norm1.bias", (cw,)
        yield b + "mlp.fc1.weight", (4 * cw, cw)
        yield b + "mlp.fc1.bias", (4 * cw,)
        yield b + "mlp.fc2.weight", (cw, 4 * cw)
        yield b + "mlp.fc2.bias", (cw,)
        yield b + "layer_norm2.weight", (cw,)
        yield b + "layer_norm2.bias", (cw,)

    h = spec.hidden_size
    yield "model.projector.layers.weight", (h, c3 + cw)
    yield "model.projector.layers.bias", (h,)
    yield "model.image_newline", (h,)
    yield "model.view_seperator", (h,)
    yield "model.embed_tokens.weight", (spec.vocab_size, h)
    for i in range(spec.num_hidden_layers):
        b = f"model.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            yield f"{b}self_attn.{proj}.weight", (h, h)
        if i < spec.first_k_dense_replace:
            yield b + "mlp.gate_proj.weight", (spec.intermediate_size, h)
            yield b + "mlp.up_proj.weight", (spec.intermediate_size, h)
            yield b + "mlp.down_proj.weight", (h, spec.intermediate_size)
        else:
            m = spec.moe_intermediate_size
            yield b + "mlp.gate.weight", (spec.n_routed_experts, h)
            for e in range(spec.n_routed_experts):
                yield f"{b}mlp.experts.{e}.gate_proj.weight", (m, h)
                yield f"{b}mlp.experts.{e}.up_proj.weight", (m, h)
                yield f"{b}mlp.experts.{e}.down_proj.weight", (h, m)
            s = m * spec.n_shared_experts
            yield b + "mlp.shared_experts.gate_proj.weight", (s, h)
            yield b + "mlp.shared_experts.up_proj.weight", (s, h)
            yield b + "mlp.shared_experts.down_proj.weight", (h, s)
        yield b + "input_layernorm.weight", (h,)
        yield b + "post_attention_layernorm.weight", (h,)
    yield "model.norm.weight", (h,)
    yield "lm_head.weight", (spec.vocab_size, h)


def spec_from_config(official: dict[str, Any]) -> CheckpointSpec:
    """The sizes an official ``config.json`` declares (decoder from ``language_config``, vision from ``width``)."""
    language = official.get("language_config") or official
    widths = official["vision_config"]["width"]
    sam, clip = widths["sam_vit_b"], widths["clip-l-14-224"]
    return CheckpointSpec(
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
        clip_layers=clip["layers"],
        clip_heads=clip["heads"],
        clip_width=clip["width"],
        downsample_channels=tuple(sam["downsample_channels"]),
    )
