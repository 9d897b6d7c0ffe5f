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

import math
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsocr_cli.errors import UsageError
from dsocr_cli.models.family import GuardDefaults, ModeInfo, ReferenceSizes
from dsocr_cli.models.v1 import prompts as v1_prompts
from dsocr_cli.models.v2 import modes as v2_modes

if TYPE_CHECKING:
    import torch

    from dsocr_cli.models.v2.runner import V2Runner

ARCHITECTURES = frozenset({"DeepseekOCR2ForCausalLM"})
"""``architectures`` of the official v2 config.json."""
MODEL_TYPE = "deepseek_vl_v2"
"""The official ``model_type``, shared with v1."""
VISION_MODEL_NAMES = frozenset({"deepencoderv2"})
"""``vision_config.model_name`` of the official v2 config.json."""
CONVERTED_MODEL_TYPE = "deepseek_ocr2"
CONVERTED_ARCHITECTURES = frozenset({"DeepseekOcr2ForConditionalGeneration"})
"""The transformers-converted layout (``deepseek-community/DeepSeek-OCR-2``): transformers' own config.json."""
DEFAULT_REPO = "deepseek-ai/DeepSeek-OCR-2"
CONTEXT_TOKENS = 8192
BF16_BYTES = 2
GUARD_DEFAULTS = {"image": GuardDefaults(ngram_size=20, window=90), "pdf": GuardDefaults(ngram_size=20, window=50)}
MODE_DESCRIPTIONS = {
    "base": "base 1024/256 (+1 separator)",
    "gundam": "gundam 768px crops (2..6) + 1024 view",
}


def mode_info(mode: v2_modes.Mode) -> ModeInfo:
    return ModeInfo(
        name=mode.name,
        description=MODE_DESCRIPTIONS[mode.name],
        view_size=mode.view_size,
        max_image_tokens=v2_modes.max_image_tokens(mode),
        image_tokens=partial(v2_modes.image_tokens, mode),
    )


class V2Family:
    """DeepSeek-OCR-2 (``deepseek-ai/DeepSeek-OCR-2``) on transformers' native ``DeepseekOcr2ForConditionalGeneration``."""

    name = "deepseek-ocr-2"
    description = "DeepSeek-OCR-2 (deepseek-ai/DeepSeek-OCR-2)"
    default_repo = DEFAULT_REPO
    short_names = ("v2", "ocr2")
    default_mode = v2_modes.DEFAULT_MODE
    prompt_choices = v1_prompts.PROMPT_CHOICES
    guard_defaults = GUARD_DEFAULTS

    def __init__(self) -> None:
        self._modes = {name: mode_info(mode) for name, mode in v2_modes.MODES.items()}

    def recognises(self, config: dict[str, Any]) -> bool:
        """The official layout: ``model_type: deepseek_vl_v2`` with v2's architecture, or, without
        ``architectures``, v2's vision tower (``vision_config.model_name: deepencoderv2``); or transformers'
        converted layout (``model_type: deepseek_ocr2``)."""
        if config.get("model_type") == CONVERTED_MODEL_TYPE:
            architectures = set(config.get("architectures") or [])
            return not architectures or bool(architectures & CONVERTED_ARCHITECTURES)
        if config.get("model_type") != MODEL_TYPE:
            return False
        architectures = set(config.get("architectures") or [])
        if architectures:
            return bool(architectures & ARCHITECTURES)
        vision = config.get("vision_config")
        return isinstance(vision, dict) and vision.get("model_name") in VISION_MODEL_NAMES

    @property
    def modes(self) -> dict[str, ModeInfo]:
        return self._modes

    def mode(self, name: str) -> ModeInfo:
        if name not in self._modes:
            raise UsageError(
                f"--mode {name!r} is not supported by {self.description} (choose from {', '.join(self._modes)})"
            )
        return self._modes[name]

    def resolve_prompt(self, spec: str) -> v1_prompts.Prompt:
        return v1_prompts.resolve_prompt(spec)

    def load(
        self,
        directory: Path,
        device: torch.device,
        dtype: torch.dtype,
        notify: Callable[[str], None] | None = None,
    ) -> V2Runner:
        """A plain checkpoint (either layout) through ``loader.load_v2``; a dsocr-quantized directory through
        ``dsocr_cli.models.quantize.load_quantized`` (bitsandbytes imported only then, notices to ``notify``)."""
        from dsocr_cli.models.v2.loader import empty_v2, load_v2
        from dsocr_cli.models.v2.runner import V2Runner
        from dsocr_cli.quant import MANIFEST_NAME, quantization

        directory = Path(directory)
        if (directory / MANIFEST_NAME).is_file():
            return V2Runner(quantization(notify).load_quantized(directory, device, dtype, empty_v2))
        return V2Runner(load_v2(directory, device=device, dtype=dtype))

    def reference_sizes(self) -> ReferenceSizes:
        from dsocr_cli.models.v2.layout import V2Spec, tensor_shapes

        spec = V2Spec.official()
        weights = sum(math.prod(shape) for _, shape in tensor_shapes(spec)) * BF16_BYTES
        return ReferenceSizes(
            bf16_weight_bytes=weights,
            num_hidden_layers=spec.num_hidden_layers,
            hidden_size=spec.hidden_size,
            context_tokens=CONTEXT_TOKENS,
        )


FAMILY = V2Family()
