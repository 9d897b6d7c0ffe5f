"""Run DeepSeek-OCR v1 on one page: preprocessing, prompt, greedy generation with the loop guard."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from PIL import Image
from transformers import LogitsProcessorList

from dsocr_cli.engine.guard import SlidingWindowNoRepeatNGram
from dsocr_cli.engine.streaming import TextCallbackStreamer
from dsocr_cli.models.v1.loader import LoadedV1
from dsocr_cli.models.v1.preprocess import Mode, PreparedImage, prepare_image
from dsocr_cli.models.v1.prompts import Prompt, prompt_ids


@dataclass
class V1Request:
    """Everything the model needs for one page."""

    input_ids: list[int]
    image: PreparedImage


@dataclass
class Generation:
    """Generated token ids (EOS excluded) and whether generation ended with EOS."""

    token_ids: list[int]
    finished: bool


class V1Runner:
    """Greedy DeepSeek-OCR v1 inference on a loaded model, one page per call."""

    family = "deepseek-ocr"

    def __init__(self, loaded: LoadedV1) -> None:
        self.loaded = loaded

    def prepare(self, image: Image.Image, mode: Mode, prompt: Prompt) -> V1Request:
        prepared = prepare_image(image, mode)
        ids = prompt_ids(prompt, self.loaded.tokenizer, self.loaded.token_ids, prepared.num_image_tokens)
        return V1Request(input_ids=ids, image=prepared)

    def model_inputs(self, request: V1Request) -> dict:
        """Tensors for ``UnlimitedOcrForConditionalGeneration`` on the model's device and dtype."""
        device, dtype = self.loaded.device, self.loaded.dtype
        tiles = request.image.tiles
        return {
            "input_ids": torch.tensor([request.input_ids], device=device),
            "pixel_values": request.image.global_view[None].to(device, dtype),
            "pixel_values_local": None if tiles is None else tiles.to(device, dtype),
            "num_local_patches": [0 if tiles is None else tiles.shape[0]],
            "patches_grid": [list(request.image.grid)],
        }

    @torch.inference_mode()
    def generate(
        self,
        request: V1Request,
        max_new_tokens: int,
        ngram_size: int = 20,
        ngram_window: int = 50,
        on_text: Callable[[str], None] | None = None,
    ) -> Generation:
        ids = self.loaded.token_ids
        processors = LogitsProcessorList()
        if ngram_size > 0:
            processors.append(
                SlidingWindowNoRepeatNGram(
                    ngram_size,
                    max(ngram_window, ngram_size),
                    prompt_length=len(request.input_ids),
                    whitelist=(ids.td_open, ids.td_close),
                )
            )
        streamer = None
        if on_text is not None:
            streamer = TextCallbackStreamer(self.loaded.tokenizer, on_text, frozenset({ids.eos}))
        output = self.loaded.model.generate(
            **self.model_inputs(request),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            logits_processor=processors,
            eos_token_id=ids.eos,
            pad_token_id=ids.eos,
            streamer=streamer,
        )
        generated = output[0, len(request.input_ids) :].tolist()
        finished = bool(generated) and generated[-1] == ids.eos
        return Generation(token_ids=generated[:-1] if finished else generated, finished=finished)

    def decode(self, token_ids: list[int]) -> str:
        """Model text with special tokens kept: tables, boxes and grounding tags are special tokens."""
        return self.loaded.tokenizer.decode(token_ids, skip_special_tokens=False)
