"""DeepSeek-OCR v1 as a ``ModelFamily`` (``dsocr_cli.models.family``).

Pure Python at import (mode and prompt tables, the layout table): the registry, the CLI and doctor use
it without loading torch. ``load`` imports the model stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dsocr_cli import defaults
from dsocr_cli.models.family import GuardDefaults
from dsocr_cli.models.tables import TableFamily
from dsocr_cli.models.v1 import modes as v1_modes
from dsocr_cli.models.v1 import prompts as v1_prompts

if TYPE_CHECKING:
    from dsocr_cli.models.v1.layout import CheckpointSpec

GUARD_DEFAULTS = {"image": GuardDefaults(ngram_size=30, window=90), "pdf": GuardDefaults(ngram_size=20, window=50)}
"""The official vLLM scripts' windowed n-gram ban: ``run_dpsk_ocr_image.py`` bans 30-grams within the last 90
generated tokens, ``run_dpsk_ocr_pdf.py`` 20-grams within 50 (upstream vLLM's per-request processor defaults to
30 within 90); ``<td>``/``</td>`` may repeat in both."""
MODE_DESCRIPTIONS = {
    "tiny": "tiny 512px/64 tokens",
    "small": "small 640/100",
    "base": "base 1024/256",
    "large": "large 1280/400",
    "gundam": "gundam 640px tiles + 1024 view",
}


class V1Family(TableFamily):
    """DeepSeek-OCR v1 (``deepseek-ai/DeepSeek-OCR``) on transformers' native ``unlimited_ocr`` classes."""

    name = "deepseek-ocr"
    description = "DeepSeek-OCR v1 (deepseek-ai/DeepSeek-OCR)"
    default_repo = defaults.DEFAULT_MODEL
    short_names = ("v1", "ocr")
    default_mode = defaults.MODE
    guard_defaults = GUARD_DEFAULTS
    prompts = v1_prompts
    modes_module = v1_modes
    mode_descriptions = MODE_DESCRIPTIONS
    architectures = frozenset({"DeepseekOCRForCausalLM"})
    vision_model_names = frozenset({"deeplip_b_l"})
    unnamed_vision_is_ours = True
    """A config without ``architectures`` or a vision tower name is v1's (the older hub config.json)."""

    def loaders(self) -> tuple[Any, Any, Any]:
        from dsocr_cli.models.v1.loader import empty_v1, load_v1
        from dsocr_cli.models.v1.runner import V1Runner

        return load_v1, empty_v1, V1Runner

    def official_layout(self) -> tuple[CheckpointSpec, Any]:
        from dsocr_cli.models.v1.layout import CheckpointSpec, tensor_shapes

        spec = CheckpointSpec.official()
        return spec, tensor_shapes(spec)


FAMILY = V1Family()
