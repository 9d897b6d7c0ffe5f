"""DeepSeek-OCR-2 as a ``ModelFamily`` (``dsocr_cli.models.family``).

Pure Python at import (mode and prompt tables, the layout table): the registry, the CLI and doctor use
it without loading torch. ``load`` imports the model stack.

Modes: v2's encoder has learnable queries for a 1024 px view (256) and a 768 px crop (144) only, so it
runs ``base`` (the 1024 global view alone, 257 positions) and ``gundam`` (768 px crops + the 1024 view,
the official default, 257 + 144·k); any other ``--mode`` is a usage error naming these two.

Loop guard defaults (``GUARD_DEFAULTS``: the official vLLM scripts' windowed n-gram ban, ``<td>``/``</td>``
may repeat): 20-grams are banned within the last 90 generated tokens for image inputs and within 50 for PDF
pages (the official eval batch uses 40 within 90; the official HF ``infer()`` uses a plain no-repeat n-gram
of 20). ``--no-repeat-ngram`` / ``--ngram-window`` override them.

Prompts are v1's (the same decoder and tokenizer); the official ``infer()`` strips the prompt before
tokenizing, as v1's ``prompt_ids`` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dsocr_cli.models.family import GuardDefaults
from dsocr_cli.models.tables import TableFamily
from dsocr_cli.models.v1 import prompts as v1_prompts
from dsocr_cli.models.v2 import modes as v2_modes

if TYPE_CHECKING:
    from dsocr_cli.models.v2.layout import V2Spec

CONVERTED_MODEL_TYPE = "deepseek_ocr2"
CONVERTED_ARCHITECTURES = frozenset({"DeepseekOcr2ForConditionalGeneration"})
"""The transformers-converted layout (``deepseek-community/DeepSeek-OCR-2``): transformers' own config.json."""
GUARD_DEFAULTS = {"image": GuardDefaults(ngram_size=20, window=90), "pdf": GuardDefaults(ngram_size=20, window=50)}
MODE_DESCRIPTIONS = {
    "base": "base 1024/256 (+1 separator)",
    "gundam": "gundam 768px crops (2..6) + 1024 view",
}


class V2Family(TableFamily):
    """DeepSeek-OCR-2 (``deepseek-ai/DeepSeek-OCR-2``) on transformers' native ``DeepseekOcr2ForConditionalGeneration``."""

    name = "deepseek-ocr-2"
    description = "DeepSeek-OCR-2 (deepseek-ai/DeepSeek-OCR-2)"
    default_repo = "deepseek-ai/DeepSeek-OCR-2"
    short_names = ("v2", "ocr2")
    default_mode = v2_modes.DEFAULT_MODE
    guard_defaults = GUARD_DEFAULTS
    prompts = v1_prompts
    modes_module = v2_modes
    mode_descriptions = MODE_DESCRIPTIONS
    architectures = frozenset({"DeepseekOCR2ForCausalLM"})
    vision_model_names = frozenset({"deepencoderv2"})

    def recognises(self, config: dict[str, Any]) -> bool:
        """The official layout (``TableFamily.recognises_official``) or transformers' converted one
        (``model_type: deepseek_ocr2``)."""
        if config.get("model_type") == CONVERTED_MODEL_TYPE:
            architectures = set(config.get("architectures") or [])
            return not architectures or bool(architectures & CONVERTED_ARCHITECTURES)
        return self.recognises_official(config)

    def loaders(self) -> tuple[Any, Any, Any]:
        from dsocr_cli.models.v2.loader import empty_v2, load_v2
        from dsocr_cli.models.v2.runner import V2Runner

        return load_v2, empty_v2, V2Runner

    def official_layout(self) -> tuple[V2Spec, Any]:
        from dsocr_cli.models.v2.layout import V2Spec, tensor_shapes

        spec = V2Spec.official()
        return spec, tensor_shapes(spec)


FAMILY = V2Family()
