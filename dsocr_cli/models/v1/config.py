"""The official DeepSeek-OCR ``config.json`` (``model_type: deepseek_vl_v2``) as a transformers config.

transformers 5.23 does not register ``deepseek_vl_v2``; its ``unlimited_ocr`` classes are a native
twin of the v1 network. This module is the table from the official fields to that config, plus the
settings that make it v1 rather than Unlimited-OCR: full causal attention (Unlimited-OCR defaults to a
128-token sliding window), a dense first layer, and token ids from the tokenizer.
"""

from __future__ import annotations

from typing import Any

from transformers import UnlimitedOcrConfig

from dsocr_cli.errors import ModelError
from dsocr_cli.models.tables import OFFICIAL_MODEL_TYPE
from dsocr_cli.models.tokenizer import TokenIds

SAM_KEY = "sam_vit_b"
CLIP_KEY = "clip-l-14-224"
DECODER_FIELDS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "moe_intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "n_routed_experts",
    "n_shared_experts",
    "num_experts_per_tok",
    "max_position_embeddings",
    "n_group",
    "topk_group",
    "topk_method",
)
"""Official ``language_config`` fields that carry over to ``UnlimitedOcrTextConfig`` under the same name."""


def decoder_defaults() -> dict[str, Any]:
    """``DeepseekV2Config`` defaults that the official config.json leaves out (spec §1)."""
    return {
        "rms_norm_eps": 1e-6,
        "hidden_act": "silu",
        "routed_scaling_factor": 1.0,
        "attention_bias": False,
        "tie_word_embeddings": False,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
    }


def build_config(official: dict[str, Any], token_ids: TokenIds, source: str) -> UnlimitedOcrConfig:
    """Map an official v1 ``config.json`` dict onto ``UnlimitedOcrConfig``; ``source`` names it in errors."""
    if official.get("model_type") != OFFICIAL_MODEL_TYPE:
        raise ModelError(
            f"{source}: model_type is {official.get('model_type')!r}, expected {OFFICIAL_MODEL_TYPE!r} (DeepSeek-OCR v1)"
        )
    language = official.get("language_config") or {}
    missing = [name for name in DECODER_FIELDS if name not in language and name not in official]
    if missing:
        raise ModelError(f"{source}: language_config lacks {', '.join(missing)}")
    if language.get("use_mla", official.get("use_mla", False)):
        raise ModelError(f"{source}: use_mla=true is not DeepSeek-OCR v1 (its decoder uses plain multi-head attention)")
    text = {name: language.get(name, official.get(name)) for name in DECODER_FIELDS}
    layers = text["num_hidden_layers"]
    dense = language.get("first_k_dense_replace", official.get("first_k_dense_replace", 1))
    text.update(decoder_defaults())
    text.update(
        mlp_layer_types=["dense" if i < dense else "sparse" for i in range(layers)],
        layer_types=["full_attention"] * layers,
        bos_token_id=token_ids.bos,
        eos_token_id=token_ids.eos,
        pad_token_id=None,
    )
    widths = (official.get("vision_config") or {}).get("width") or {}
    sam, clip = widths.get(SAM_KEY), widths.get(CLIP_KEY)
    if sam is None or clip is None:
        raise ModelError(f"{source}: vision_config.width needs {SAM_KEY!r} and {CLIP_KEY!r} entries")
    sam_config = {
        "hidden_size": sam["width"],
        "num_hidden_layers": sam["layers"],
        "num_attention_heads": sam["heads"],
        "global_attn_indexes": list(sam["global_attn_indexes"]),
        "downsample_channels": list(sam["downsample_channels"]),
        "mlp_dim": 4 * sam["width"],
    }
    encoder_config = {
        "hidden_size": clip["width"],
        "intermediate_size": 4 * clip["width"],
        "num_hidden_layers": clip["layers"],
        "num_attention_heads": clip["heads"],
        "image_size": clip["image_size"],
        "patch_size": clip["patch_size"],
    }
    projector = official.get("projector_config") or {}
    expected_in = sam_config["downsample_channels"][-1] + encoder_config["hidden_size"]
    if (
        projector.get("input_dim", expected_in) != expected_in
        or projector.get("n_embed", text["hidden_size"]) != text["hidden_size"]
    ):
        raise ModelError(
            f"{source}: projector_config {projector.get('input_dim')}->{projector.get('n_embed')} does not join "
            f"vision features ({expected_in}) to the decoder ({text['hidden_size']})"
        )
    if projector.get("projector_type", "linear") != "linear":
        raise ModelError(f"{source}: projector_type {projector.get('projector_type')!r} is not v1's 'linear'")
    return UnlimitedOcrConfig(
        vision_config={"sam_config": sam_config, "encoder_config": encoder_config},
        text_config=text,
        image_token_id=token_ids.image,
        tie_word_embeddings=False,
    )
