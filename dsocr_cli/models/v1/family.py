"""DeepSeek-OCR v1 as a ``ModelFamily`` (``dsocr_cli.models.family``).

Pure Python at import (mode and prompt tables, the layout table): the registry, the CLI and doctor use
it without loading torch. ``load`` imports the model stack.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsocr_cli import defaults
from dsocr_cli.errors import UsageError
from dsocr_cli.models.family import GuardDefaults, ModeInfo, ReferenceSizes
from dsocr_cli.models.v1 import modes as v1_modes
from dsocr_cli.models.v1 import prompts as v1_prompts

if TYPE_CHECKING:
    import torch

    from dsocr_cli.models.v1.runner import V1Runner

ARCHITECTURES = frozenset({"DeepseekOCRForCausalLM"})
"""``architectures`` of the official v1 config.json."""
MODEL_TYPE = "deepseek_vl_v2"
"""The official ``model_type``, shared with DeepSeek-OCR-2: never enough on its own to tell them apart."""
VISION_MODEL_NAMES = frozenset({"deeplip_b_l"})
"""``vision_config.model_name`` of the official v1 config.json (v2's is ``deepencoderv2``)."""
CONTEXT_TOKENS = 8192
"""The decoder's ``max_position_embeddings`` in the official config.json."""
BF16_BYTES = 2
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


def mode_info(mode: v1_modes.Mode) -> ModeInfo:
    return ModeInfo(
        name=mode.name,
        description=MODE_DESCRIPTIONS[mode.name],
        view_size=mode.view_size,
        max_image_tokens=v1_modes.max_image_tokens(mode),
        image_tokens=partial(v1_modes.image_tokens, mode),
    )


class V1Family:
    """DeepSeek-OCR v1 (``deepseek-ai/DeepSeek-OCR``) on transformers' native ``unlimited_ocr`` classes."""

    name = "deepseek-ocr"
    description = "DeepSeek-OCR v1 (deepseek-ai/DeepSeek-OCR)"
    default_repo = defaults.DEFAULT_MODEL
    short_names = ("v1", "ocr")
    default_mode = defaults.MODE
    prompt_choices = v1_prompts.PROMPT_CHOICES
    guard_defaults = GUARD_DEFAULTS

    def __init__(self) -> None:
        self._modes = {name: mode_info(mode) for name, mode in v1_modes.MODES.items()}

    def recognises(self, config: dict[str, Any]) -> bool:
        """The official layout: ``model_type: deepseek_vl_v2`` with v1's architecture; a config without
        ``architectures`` counts when its vision tower is not another family's."""
        if config.get("model_type") != MODEL_TYPE:
            return False
        architectures = set(config.get("architectures") or [])
        if architectures:
            return bool(architectures & ARCHITECTURES)
        vision = config.get("vision_config")
        name = vision.get("model_name") if isinstance(vision, dict) else None
        return name is None or name in VISION_MODEL_NAMES

    @property
    def modes(self) -> dict[str, ModeInfo]:
        return self._modes

    def mode(self, name: str) -> ModeInfo:
        if name not in self._modes:
            raise UsageError(f"unknown --mode {name!r} (choose from {', '.join(self._modes)})")
        return self._modes[name]

    def resolve_prompt(self, spec: str) -> v1_prompts.Prompt:
        return v1_prompts.resolve_prompt(spec)

    def load(
        self,
        directory: Path,
        device: torch.device,
        dtype: torch.dtype,
        notify: Callable[[str], None] | None = None,
    ) -> V1Runner:
        """A plain checkpoint through ``loader.load_v1``; a dsocr-quantized directory (it has a manifest)
        through ``dsocr_cli.models.quantize.load_quantized``, importing bitsandbytes only then (its notices go
        to ``notify``)."""
        from dsocr_cli.models.v1.loader import empty_v1, load_v1
        from dsocr_cli.models.v1.runner import V1Runner
        from dsocr_cli.quant import MANIFEST_NAME, quantization

        directory = Path(directory)
        if (directory / MANIFEST_NAME).is_file():
            return V1Runner(quantization(notify).load_quantized(directory, device, dtype, empty_v1))
        return V1Runner(load_v1(directory, device=device, dtype=dtype))

    def reference_sizes(self) -> ReferenceSizes:
        from dsocr_cli.models.v1.layout import CheckpointSpec, tensor_shapes

        spec = CheckpointSpec.official()
        weights = sum(math.prod(shape) for _, shape in tensor_shapes(spec)) * BF16_BYTES
        return ReferenceSizes(
            bf16_weight_bytes=weights,
            num_hidden_layers=spec.num_hidden_layers,
            hidden_size=spec.hidden_size,
            context_tokens=CONTEXT_TOKENS,
        )


FAMILY = V1Family()
