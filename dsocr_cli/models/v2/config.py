"""The official DeepSeek-OCR-2 ``config.json`` as transformers' native ``DeepseekOcr2Config``, built by dsocr.

``DeepseekOcr2Config.from_pretrained`` on the official file loads silently wrong values (text hidden
4096, 32 layers, vocab 102400: it does not read ``language_config``), and ``AutoConfig`` stops at the
remote-code prompt, so dsocr never calls either: this table maps the official fields onto the native
config, and adds what the official code fixes and the file leaves out (rope_theta 1e4 in the decoder,
1e6 in the Qwen2 encoder; routed scaling 1.0; untied head; a dense first layer; the encoder's 24 layers,
14 heads / 2 KV heads and MLP 4864). Where the official ``vision_config`` contradicts the official code
(``mlp_ratio`` 3.7362, ``downsample_channels`` [512, 1024]) the code wins: SAM's MLP is 4 x width and its
compressor ends at the encoder width (896).
"""

from __future__ import annotations

from typing import Any

from transformers import DeepseekOcr2Config

from dsocr_cli.errors import ModelError
from dsocr_cli.models.tokenizer import TokenIds
from dsocr_cli.models.v1.config import DECODER_FIELDS, OFFICIAL_MODEL_TYPE, decoder_defaults
from dsocr_cli.models.v2.layout import ENCODER_KEY, SAM_KEY, spec_from_config

CONVERTED_MODEL_TYPE = "deepseek_ocr2"
"""``model_type`` of the transformers-converted layout (``deepseek-community/DeepSeek-OCR-2``)."""
CONVERTED_REQUIRED = {
    "text_config": (
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
        "mlp_layer_types",
        "rope_parameters",
    ),
    "encoder_config": (
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "rope_parameters",
    ),
    "sam_config": ("hidden_size", "num_hidden_layers", "num_attention_heads", "downsample_channels"),
}
"""Fields a converted config.json must state: left out, ``DeepseekOcr2Config`` would fill in defaults that are
not DeepSeek-OCR-2's (text hidden 4096, 32 layers, vocab 102400), silently."""
ENCODER_ROPE_THETA = 1_000_000.0
ENCODER_RMS_NORM_EPS = 1e-6


def build_config(official: dict[str, Any], token_ids: TokenIds, source: str) -> DeepseekOcr2Config:
    """Map an official v2 ``config.json`` dict onto ``DeepseekOcr2Config``; ``source`` names it in errors."""
    if official.get("model_type") != OFFICIAL_MODEL_TYPE:
        raise ModelError(
            f"{source}: model_type is {official.get('model_type')!r}, expected {OFFICIAL_MODEL_TYPE!r} (DeepSeek-OCR-2)"
        )
    language = official.get("language_config") or {}
    missing = [name for name in DECODER_FIELDS if name not in language and name not in official]
    if missing:
        raise ModelError(f"{source}: language_config lacks {', '.join(missing)}")
    if language.get("use_mla", official.get("use_mla", False)):
        raise ModelError(f"{source}: use_mla=true is not DeepSeek-OCR-2 (its decoder uses plain multi-head attention)")
    widths = (official.get("vision_config") or {}).get("width") or {}
    if not isinstance(widths.get(SAM_KEY), dict) or not isinstance(widths.get(ENCODER_KEY), dict):
        raise ModelError(f"{source}: vision_config.width needs {SAM_KEY!r} and {ENCODER_KEY!r} entries")
    try:
        spec = spec_from_config(official)
    except (KeyError, TypeError, IndexError) as exc:
        raise ModelError(f"{source}: incomplete vision/language sizes ({exc})") from None
    text = {name: language.get(name, official.get(name)) for name in DECODER_FIELDS}
    layers = text["num_hidden_layers"]
    dense = language.get("first_k_dense_replace", official.get("first_k_dense_replace", 1))
    text.update(decoder_defaults())
    text.update(
        mlp_layer_types=["dense" if i < dense else "sparse" for i in range(layers)],
        bos_token_id=token_ids.bos,
        eos_token_id=token_ids.eos,
        pad_token_id=None,
    )
    projector = official.get("projector_config") or {}
    if (
        projector.get("input_dim", spec.encoder_hidden) != spec.encoder_hidden
        or projector.get("n_embed", text["hidden_size"]) != text["hidden_size"]
    ):
        raise ModelError(
            f"{source}: projector_config {projector.get('input_dim')}->{projector.get('n_embed')} does not join "
            f"encoder features ({spec.encoder_hidden}) to the decoder ({text['hidden_size']})"
        )
    if projector.get("projector_type", "linear") != "linear":
        raise ModelError(f"{source}: projector_type {projector.get('projector_type')!r} is not v2's 'linear'")
    if spec.encoder_hidden % spec.encoder_heads or spec.encoder_heads % spec.encoder_kv_heads:
        raise ModelError(
            f"{source}: encoder width {spec.encoder_hidden} does not split into {spec.encoder_heads} heads "
            f"/ {spec.encoder_kv_heads} KV heads"
        )
    sam_config = {
        "hidden_size": spec.sam_width,
        "num_hidden_layers": spec.sam_layers,
        "num_attention_heads": spec.sam_heads,
        "global_attn_indexes": list(spec.sam_global_attn_indexes),
        "downsample_channels": [spec.sam_mid_channels, spec.encoder_hidden],
        "mlp_dim": 4 * spec.sam_width,
    }
    encoder_config = {
        "hidden_size": spec.encoder_hidden,
        "intermediate_size": spec.encoder_intermediate,
        "num_hidden_layers": spec.encoder_layers,
        "num_attention_heads": spec.encoder_heads,
        "num_key_value_heads": spec.encoder_kv_heads,
        "hidden_act": "silu",
        "rms_norm_eps": ENCODER_RMS_NORM_EPS,
        "rope_parameters": {"rope_type": "default", "rope_theta": ENCODER_ROPE_THETA},
        "use_sliding_window": False,
    }
    return DeepseekOcr2Config(
        vision_config={"sam_config": sam_config, "encoder_config": encoder_config},
        text_config=text,
        image_token_id=token_ids.image,
        tie_word_embeddings=False,
    )


def is_converted(config: dict[str, Any]) -> bool:
    """Whether a config.json is transformers' own (``model_type: deepseek_ocr2``), not the official one."""
    return config.get("model_type") == CONVERTED_MODEL_TYPE


def converted_config(config: dict[str, Any], token_ids: TokenIds, source: str) -> DeepseekOcr2Config:
    """A transformers-converted config.json (``deepseek-community/DeepSeek-OCR-2``) as ``DeepseekOcr2Config``.

    It is transformers' own serialisation, so it is read as such, but only once every size it must state is
    there (``CONVERTED_REQUIRED``) and its image token is the tokenizer's: a partial file would otherwise
    load with the native defaults, which are not v2's."""
    text = config.get("text_config")
    vision = config.get("vision_config")
    parts = {
        "text_config": text,
        "encoder_config": vision.get("encoder_config") if isinstance(vision, dict) else None,
        "sam_config": vision.get("sam_config") if isinstance(vision, dict) else None,
    }
    for part, fields in CONVERTED_REQUIRED.items():
        section = parts[part]
        if not isinstance(section, dict):
            raise ModelError(f"{source}: no {part} (not a converted DeepSeek-OCR-2 config)")
        missing = [name for name in fields if name not in section]
        if missing:
            raise ModelError(f"{source}: {part} lacks {', '.join(missing)}")
    image = config.get("image_token_id", token_ids.image)
    if image != token_ids.image:
        raise ModelError(f"{source}: image_token_id {image} is not the tokenizer's <image> ({token_ids.image})")
    try:
        built = DeepseekOcr2Config.from_dict(config)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{source}: invalid DeepSeek-OCR-2 config ({str(exc).splitlines()[0]})") from None
    built.text_config.bos_token_id = token_ids.bos
    built.text_config.eos_token_id = token_ids.eos
    return built
