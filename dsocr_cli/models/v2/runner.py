"""Run DeepSeek-OCR-2: its preprocessing and vision calls, on the decoder machinery it shares with v1.

v2's decoder is v1's network (DeepSeek-3B-MoE, same tokenizer, same prompts, same loop guard), so the
runner is v1's (``dsocr_cli.models.v1.runner.V1Runner``: the one-page ``generate``, ``guard``,
``streamer``, ``new_cache``, ``kv_bytes_per_token``, ``encode_images``' batching, the output head,
``decode``) with v2's own pieces: modes and preprocessing (1024 view + 768 crops), the vision inputs of
``DeepseekOcr2ForConditionalGeneration`` (no ``patches_grid``), its feature output class
(``encoder_output``) and its mask as is, without v1's per-layer-type mapping (``attention_mask``).

Fidelity: the batched calls are tested to give exactly the one-page result (float32), and the one-page
result is the official DeepSeek-OCR-2 code's (tests/test_golden_v2.py: ids, grids, tokens, logits).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image
from transformers import DeepseekOcr2ForConditionalGeneration
from transformers.models.deepseek_ocr2.modeling_deepseek_ocr2 import DeepseekOcr2ModelOutputWithPooling

from dsocr_cli.models.family import ModeInfo
from dsocr_cli.models.loading import Loaded
from dsocr_cli.models.v1.prompts import Prompt, prompt_ids
from dsocr_cli.models.v1.runner import V1Runner
from dsocr_cli.models.v2.family import FAMILY
from dsocr_cli.models.v2.modes import MODES, TILE_SIZE, Mode
from dsocr_cli.models.v2.preprocess import PreparedImage, prepare_image


@dataclass
class V2Request:
    """Everything the model needs for one v2 page."""

    input_ids: list[int]
    image: PreparedImage

    @property
    def views(self) -> int:
        """Views the encoder sees for this page: the global view plus its crops."""
        return 1 + (0 if self.image.tiles is None else self.image.tiles.shape[0])


class V2Runner(V1Runner):
    """Greedy DeepSeek-OCR-2 inference on a loaded model."""

    family = FAMILY

    def __init__(self, loaded: Loaded) -> None:  # type: ignore[override]
        self.loaded = loaded  # type: ignore[assignment]
        self.decode_forward = self.eager_decode_forward

    @property
    def model(self) -> DeepseekOcr2ForConditionalGeneration:  # type: ignore[override]
        return self.loaded.model

    def mode(self, name: str) -> ModeInfo:
        """v2's mode ``name`` (``UsageError`` naming ``base`` and ``gundam`` otherwise)."""
        return self.family.mode(name)

    def prepare_image(self, image: Image.Image, mode: str) -> PreparedImage:  # type: ignore[override]
        self.family.mode(mode)
        return prepare_image(image, MODES[mode])

    def prepare(self, image: Image.Image, mode: Mode, prompt: Prompt) -> V2Request:  # type: ignore[override]
        return self.request(prepare_image(image, mode), prompt)

    def request(self, image: PreparedImage, prompt: Prompt) -> V2Request:  # type: ignore[override]
        ids = prompt_ids(prompt, self.loaded.tokenizer, self.loaded.token_ids, image.num_image_tokens)
        return V2Request(input_ids=ids, image=image)

    def vision_inputs(self, requests: Sequence[V2Request]) -> dict:  # type: ignore[override]
        """v1's pixel tensors without ``patches_grid`` (v2's model takes none)."""
        inputs = super().vision_inputs(requests)  # type: ignore[arg-type]
        del inputs["patches_grid"]
        return inputs

    def page_vision_bytes(self, request: V2Request) -> tuple[int, int]:  # type: ignore[override]
        return self.view_bytes(request.image.global_view.shape[-1]), (request.views - 1) * self.view_bytes(TILE_SIZE)

    def encoder_output(self, features: list[torch.Tensor]) -> DeepseekOcr2ModelOutputWithPooling:  # type: ignore[override]
        return DeepseekOcr2ModelOutputWithPooling(pooler_output=features)

    def attention_mask(self, mask: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """v2's decoder takes the 4-D mask as is."""
        return mask
