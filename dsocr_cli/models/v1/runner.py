"""Run DeepSeek-OCR v1: preprocessing, prompt, and the model calls generation is built from.

``generate`` is the one-page path (transformers' ``generate`` with the loop guard), kept identical to
the official ``infer()``. The batched engine (``dsocr_cli.engine.batched``) drives the same network
through three smaller calls instead: ``encode_images`` (the vision encoder over many pages at once),
``prefill`` (one page's prompt) and ``decode_step`` (one token for every live sequence).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from PIL import Image
from transformers import DynamicCache, LogitsProcessorList, UnlimitedOcrForConditionalGeneration
from transformers.models.unlimited_ocr.modeling_unlimited_ocr import UnlimitedOcrModelOutputWithPooling

from dsocr_cli.generation.guard import SlidingWindowNoRepeatNGram
from dsocr_cli.generation.kvcache import RowCache
from dsocr_cli.generation.outcome import Generation, NonFiniteLogits, Prefill, check_finite  # noqa: F401  (re-exported)
from dsocr_cli.generation.streaming import TextCallbackStreamer
from dsocr_cli.models.family import GuardDefaults, ModeInfo, ModelFamily
from dsocr_cli.models.loading import Loaded
from dsocr_cli.models.v1.family import FAMILY
from dsocr_cli.models.v1.preprocess import MODES, PATCH_SIZE, TILE_SIZE, Mode, PreparedImage, prepare_image
from dsocr_cli.models.v1.prompts import Prompt, prompt_ids, resolve_prompt


@dataclass
class V1Request:
    """Everything the model needs for one page."""

    input_ids: list[int]
    image: PreparedImage

    @property
    def views(self) -> int:
        """Images the vision encoder sees for this page: the global view plus its tiles."""
        return 1 + (0 if self.image.tiles is None else self.image.tiles.shape[0])


def chunks_within(costs: list[tuple[int, int]], budget: int) -> list[list[int]]:
    """Consecutive runs of indices into ``costs`` (global-view bytes, tile bytes per page) whose global
    views and tiles each stay within ``budget`` bytes; a page over budget gets a run of its own."""
    chunks: list[list[int]] = []
    views = tiles = 0
    for index, (view_cost, tile_cost) in enumerate(costs):
        if not chunks or views + view_cost > budget or tiles + tile_cost > budget:
            chunks.append([])
            views = tiles = 0
        chunks[-1].append(index)
        views += view_cost
        tiles += tile_cost
    return chunks


class V1Runner:
    """Greedy DeepSeek-OCR v1 inference on a loaded model."""

    family: ModelFamily = FAMILY
    """The family this runner runs (its modes, prompts and guard defaults); subclasses of other families override it."""

    def __init__(self, loaded: Loaded) -> None:
        self.loaded = loaded
        self.decode_forward = self.eager_decode_forward
        """The decoder's part of a decode step; ``compile_decode`` swaps in a compiled one."""

    # The ``FamilyRunner`` protocol (dsocr_cli.models.family): what the engine reads instead of reaching
    # through ``loaded``.
    @property
    def device(self) -> torch.device:
        return self.loaded.device

    @property
    def dtype(self) -> torch.dtype:
        return self.loaded.dtype

    @property
    def eos_id(self) -> int:
        return self.loaded.token_ids.eos

    @property
    def model(self) -> UnlimitedOcrForConditionalGeneration:
        """The transformers model (quantization and weight accounting read it)."""
        return self.loaded.model

    @property
    def kv_bytes_per_token(self) -> int:
        """2 (keys, values) x layers x kv heads x head dim x dtype bytes (v1: multi-head attention)."""
        text = self.loaded.model.config.text_config
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        return 2 * text.num_hidden_layers * text.num_key_value_heads * head_dim * self.loaded.dtype.itemsize

    def mode(self, name: str) -> ModeInfo:
        """v1's mode ``name`` (``UsageError`` naming the modes otherwise)."""
        return self.family.mode(name)

    def resolve_prompt(self, spec: str) -> Prompt:
        return resolve_prompt(spec)

    def prepare_image(self, image: Image.Image, mode: str) -> PreparedImage:
        """Pixels of one page in mode ``mode`` (worker-thread safe: no model or tokenizer)."""
        self.family.mode(mode)
        return prepare_image(image, MODES[mode])

    def prepare(self, image: Image.Image, mode: Mode, prompt: Prompt) -> V1Request:
        return self.request(prepare_image(image, mode), prompt)

    def request(self, image: PreparedImage, prompt: Prompt) -> V1Request:
        """The prompt around an already preprocessed page (the batched engine preprocesses in worker threads)."""
        ids = prompt_ids(prompt, self.loaded.tokenizer, self.loaded.token_ids, image.num_image_tokens)
        return V1Request(input_ids=ids, image=image)

    def vision_inputs(self, requests: Sequence[V1Request]) -> dict:
        """Pixel tensors of several pages for one vision-encoder call; their global views must share one size."""
        tiles = [r.image.tiles for r in requests if r.image.tiles is not None]
        return {
            "pixel_values": self.to_model(torch.stack([r.image.global_view for r in requests])),
            "pixel_values_local": self.to_model(torch.cat(tiles)) if tiles else None,
            "num_local_patches": [r.views - 1 for r in requests],
            "patches_grid": [list(r.image.grid) for r in requests],
        }

    def to_model(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels onto the model's device and dtype; to a GPU from pinned memory, without waiting for the copy
        (the stream orders it before the encoder runs)."""
        device, dtype = self.loaded.device, self.loaded.dtype
        if device.type == "cuda":
            return pixels.pin_memory().to(device, dtype, non_blocking=True)
        return pixels.to(device, dtype)

    def model_inputs(self, request: V1Request) -> dict:
        """Tensors for ``UnlimitedOcrForConditionalGeneration`` on the model's device and dtype."""
        return {
            "input_ids": torch.tensor([request.input_ids], device=self.loaded.device),
            **self.vision_inputs([request]),
        }

    @torch.inference_mode()
    def generate(
        self,
        request: V1Request,
        max_new_tokens: int,
        ngram_size: int | None = None,
        ngram_window: int | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> Generation:
        """Greedy decoding of one page; raises ``NonFiniteLogits`` as soon as a step's logits are not finite
        (checked on the LM head's output, before any logits processor can set -inf on purpose). The guard
        settings left None are the family's image defaults (``guard_defaults("image")``)."""
        image_guard = self.guard_defaults("image")
        ngram_size = image_guard.ngram_size if ngram_size is None else ngram_size
        ngram_window = image_guard.window if ngram_window is None else ngram_window
        ids = self.loaded.token_ids
        processors = LogitsProcessorList()
        if ngram_size > 0:
            processors.append(self.guard(ngram_size, ngram_window, prompt_length=len(request.input_ids)))
        hook = self.loaded.model.lm_head.register_forward_hook(lambda head, inputs, logits: check_finite(logits[:, -1]))
        try:
            output = self.loaded.model.generate(
                **self.model_inputs(request),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                logits_processor=processors,
                eos_token_id=ids.eos,
                pad_token_id=ids.eos,
                streamer=None if on_text is None else self.streamer(on_text),
            )
        finally:
            hook.remove()
        generated = output[0, len(request.input_ids) :].tolist()
        finished = bool(generated) and generated[-1] == ids.eos
        return Generation(token_ids=generated[:-1] if finished else generated, finished=finished)

    def guard_defaults(self, kind: str) -> GuardDefaults:
        return self.family.guard_defaults[kind]

    def guard(self, ngram_size: int, ngram_window: int, prompt_length: int) -> SlidingWindowNoRepeatNGram:
        """The official loop guard; table cells (``<td>``, ``</td>``) may repeat."""
        ids = self.loaded.token_ids
        return SlidingWindowNoRepeatNGram(
            ngram_size,
            max(ngram_window, ngram_size),
            prompt_length=prompt_length,
            whitelist=(ids.td_open, ids.td_close),
        )

    def streamer(self, on_text: Callable[[str], None]) -> TextCallbackStreamer:
        return TextCallbackStreamer(self.loaded.tokenizer, on_text, frozenset({self.loaded.token_ids.eos}))

    def view_bytes(self, side: int) -> int:
        """Peak activation bytes of one ``side`` px view in the vision encoder: SAM's global attention
        materialises a heads x patches^2 relative-position bias (float32 at worst) and up to two more
        buffers of that size while adding and reshaping it. On the CPU it is built a slice of at most
        ``sam_attention.SLICE_BYTES`` at a time, so there this is an upper bound (kept: encoding more pages
        per call gains nothing on a compute-bound CPU)."""
        heads = self.loaded.model.config.vision_config.sam_config.num_attention_heads
        patches = (side // PATCH_SIZE) ** 2
        return 3 * heads * patches * patches * 4

    def page_vision_bytes(self, request: V1Request) -> tuple[int, int]:
        """Encoder activation bytes of a page's global view and of its tiles (they are encoded one after the other)."""
        return self.view_bytes(request.image.global_view.shape[-1]), (request.views - 1) * self.view_bytes(TILE_SIZE)

    @torch.inference_mode()
    def encode_images(self, requests: Sequence[V1Request], budget: int) -> list[torch.Tensor]:
        """Vision features per page, (image positions, hidden) each, with the encoder run on many pages at once.

        Pages are grouped by global-view size (fixed per mode; tiles are always 640 px), and each group is
        cut into calls whose activations stay within ``budget`` bytes (``view_bytes``); a page is never split.
        """
        features: dict[int, torch.Tensor] = {}
        groups: dict[int, list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault(request.image.global_view.shape[-1], []).append(i)
        for indices in groups.values():
            for chunk in chunks_within([self.page_vision_bytes(requests[i]) for i in indices], budget):
                pages = [indices[j] for j in chunk]
                output = self.loaded.model.get_image_features(**self.vision_inputs([requests[i] for i in pages]))
                features.update(zip(pages, output.pooler_output))
        return [features[i] for i in range(len(requests))]

    @torch.inference_mode()
    def prefill(self, request: V1Request, features: torch.Tensor) -> Prefill:
        """One page's prompt through the decoder, exactly as the first step of ``generate`` runs it."""
        cache = DynamicCache(config=self.loaded.model.config.text_config)
        output = self.loaded.model(
            input_ids=torch.tensor([request.input_ids], device=self.loaded.device),
            mm_encoder_outputs={"image": self.encoder_output([features])},
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        return Prefill(
            logits=output.logits[0, -1].float(), layer_kv=[(layer.keys, layer.values) for layer in cache.layers]
        )

    @torch.inference_mode()
    def prefill_batch(self, requests: Sequence[V1Request], features: Sequence[torch.Tensor]) -> list[Prefill]:
        """Several pages' prompts through the decoder in one forward: right-padded to the longest, each row
        attending causally to its own tokens only (a (rows, 1, L, L) mask), each row's logits taken at its
        last prompt token with the same head call as ``prefill``; keys and values cut back to each prompt."""
        device = self.loaded.device
        lengths = [len(request.input_ids) for request in requests]
        longest = max(lengths)
        ids = torch.full((len(requests), longest), self.eos_id, device=device)
        for row, request in enumerate(requests):
            ids[row, : lengths[row]] = torch.tensor(request.input_ids, device=device)
        size = torch.tensor(lengths, device=device)
        positions = torch.arange(longest, device=device)
        causal = positions[None, :, None] >= positions[None, None, :]
        mask = (causal & (positions[None, None, :] < size[:, None, None]))[:, None]
        cache = DynamicCache(config=self.loaded.model.config.text_config)
        hidden = self.batch_prefill_forward(ids, mask, positions.expand(len(requests), -1), cache, features)
        last = hidden[torch.arange(len(requests), device=device), size - 1]
        logits = self.loaded.model.lm_head(last[:, None]).float()[:, 0]
        return [
            Prefill(
                logits=logits[row],
                layer_kv=[
                    (layer.keys[row : row + 1, :, :length], layer.values[row : row + 1, :, :length])
                    for layer in cache.layers
                ],
            )
            for row, length in enumerate(lengths)
        ]

    def batch_prefill_forward(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        positions: torch.Tensor,
        cache: DynamicCache,
        features: Sequence[torch.Tensor],
    ) -> torch.Tensor:
        """The decoder over padded prompts with their image features: hidden states (rows, L, hidden)."""
        return self.loaded.model.model(
            input_ids=ids,
            mm_encoder_outputs={"image": self.encoder_output(list(features))},
            attention_mask=self.attention_mask(mask),
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
        ).last_hidden_state

    def encoder_output(self, features: list[torch.Tensor]) -> UnlimitedOcrModelOutputWithPooling:
        """Vision features as the model's forward takes them precomputed (``mm_encoder_outputs``)."""
        return UnlimitedOcrModelOutputWithPooling(pooler_output=features)

    def attention_mask(self, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """A 4-D mask as v1's decoder takes it: one per layer type (its layers are all full attention)."""
        return dict.fromkeys(self.loaded.model.config.text_config.layer_types, mask)

    def new_cache(self, rows: int, static: bool = False) -> RowCache:
        """An empty per-row key/value cache for up to ``rows`` sequences of this model (``static``: fixed-shape
        steps for a compiled decode forward, ``RowCache``)."""
        text = self.loaded.model.config.text_config
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        return RowCache(
            text.num_hidden_layers,
            rows,
            text.num_key_value_heads,
            head_dim,
            self.loaded.dtype,
            self.loaded.device,
            static=static,
        )

    def compile_decode(self, backend: str) -> None:
        """Run decode steps through ``torch.compile`` (``generation.compiled``); use with static caches."""
        from dsocr_cli.generation.compiled import compile_forward

        self.decode_forward = compile_forward(self.eager_decode_forward, self.loaded.device, backend)

    def decode_step(self, tokens: Sequence[int], cache: RowCache) -> torch.Tensor:
        """Feed one token per live row of ``cache``; returns (rows, vocab) float32 logits for the next tokens.

        In inference mode, or with autograd off on a static cache (compiled steps cannot trace inference tensors)."""
        with torch.inference_mode(not cache.static), torch.no_grad():
            if cache.static:
                ids, mask, positions = cache.begin_static_step(list(tokens), self.eos_id)
            else:
                mask, positions = cache.begin_step()
                ids = torch.tensor(tokens, device=self.loaded.device)[:, None]
            hidden = self.decode_forward(ids, mask, positions, cache)
            cache.end_step()
            return self.output_head(hidden[: len(tokens)]).float()

    def eager_decode_forward(
        self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: RowCache
    ) -> torch.Tensor:
        """The decoder on one token per row: last hidden states (rows, hidden)."""
        return self.loaded.model.model(
            input_ids=ids,
            attention_mask=self.attention_mask(mask),
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
        ).last_hidden_state[:, -1]

    def output_head(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits for a few rows of hidden states: the model's head (never quantized), which on float32 CPUs
        runs as ``W @ h^T`` at decode sizes like every linear layer (``models.cpu_linear``)."""
        return self.loaded.model.lm_head(hidden)

    def decode(self, token_ids: list[int]) -> str:
        """Model text with special tokens kept: tables, boxes and grounding tags are special tokens."""
        return self.loaded.tokenizer.decode(token_ids, skip_special_tokens=False)
