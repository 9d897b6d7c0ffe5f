"""Run DeepSeek-OCR-2: its preprocessing and vision calls, on the decoder machinery it shares with v1.

v2's decoder is v1's network (DeepSeek-3B-MoE, same tokenizer, same prompts, same loop guard), so the
runner is v1's (``dsocr_cli.models.v1.runner.V1Runner``: the one-page ``generate``, ``guard``,
``streamer``, ``new_cache``, ``kv_bytes_per_token``, ``encode_images``' batching, the output head,
``decode``) with v2's own pieces: modes and preprocessing (1024 view + 768 crops), the vision inputs of
``DeepseekOcr2ForConditionalGeneration`` (no ``patches_grid``), its feature output class in ``prefill``,
and a decode forward without v1's per-layer-type mask mapping.

Fidelity: the batched calls are tested to give exactly the one-page result (float32), and the one-page
result is the official DeepSeek-OCR-2 code's (tests/test_golden_v2.py: ids, grids, tokens, logits).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image
from transformers import DeepseekOcr2ForConditionalGeneration, DynamicCache
from transformers.models.deepseek_ocr2.modeling_deepseek_ocr2 import DeepseekOcr2ModelOutputWithPooling

from dsocr_cli.generation.kvcache import RowCache
from dsocr_cli.generation.outcome import Prefill
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
        device, dtype = self.loaded.device, self.loaded.dtype
        tiles = [r.image.tiles for r in requests if r.image.tiles is not None]
        return {
            "pixel_values": torch.stack([r.image.global_view for r in requests]).to(device, dtype),
            "pixel_values_local": torch.cat(tiles).to(device, dtype) if tiles else None,
            "num_local_patches": [r.views - 1 for r in requests],
        }

    def page_vision_bytes(self, request: V2Request) -> tuple[int, int]:  # type: ignore[override]
        return self.view_bytes(request.image.global_view.shape[-1]), (request.views - 1) * self.view_bytes(TILE_SIZE)

    @torch.inference_mode()
    def prefill(self, request: V2Request, features: torch.Tensor) -> Prefill:  # type: ignore[override]
        """One page's prompt through the decoder, as the first step of ``generate`` runs it."""
        cache = DynamicCache(config=self.loaded.model.config.text_config)
        output = self.loaded.model(
            input_ids=torch.tensor([request.input_ids], device=self.loaded.device),
            mm_encoder_outputs={"image": DeepseekOcr2ModelOutputWithPooling(pooler_output=[features])},
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        return Prefill(
            logits=output.logits[0, -1].float(), layer_kv=[(layer.keys, layer.values) for layer in cache.layers]
        )

    def batch_prefill_forward(  # type: ignore[override]
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        positions: torch.Tensor,
        cache: DynamicCache,
        features: Sequence[torch.Tensor],
    ) -> torch.Tensor:
        return self.loaded.model.model(
            input_ids=ids,
            mm_encoder_outputs={"image": DeepseekOcr2ModelOutputWithPooling(pooler_output=list(features))},
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
        ).last_hidden_state

    def eager_decode_forward(
        self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: RowCache
    ) -> torch.Tensor:
        """The decoder on one token per row (v2's decoder takes the row mask as is): (rows, hidden)."""
        return self.loaded.model.model(
            input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True
        ).last_hidden_state[:, -1]
