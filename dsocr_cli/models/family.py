"""What a model family is: the one interface the engine, the CLI, hub, quant and doctor see.

A *family* is a kind of checkpoint dsocr can run (DeepSeek-OCR v1 today: ``dsocr_cli.models.v1``). It
is described by a ``ModelFamily`` object that is cheap to import (pure Python: mode and prompt tables,
no torch), so that ``--help``, config validation, ``dsocr models`` and ``dsocr doctor`` can consult it
without loading the model stack. ``ModelFamily.load`` returns a ``FamilyRunner``: the loaded network
behind the calls the batched engine (``dsocr_cli.engine.batched``) and the one-page path
(``dsocr_cli.engine.local``) are built from.

``dsocr_cli.models.registry`` holds the families and picks one from a checkpoint's config.json
(``ModelFamily.recognises``). Import direction: ``dsocr_cli.generation`` < families
(``dsocr_cli.models.<family>``) < ``dsocr_cli.engine``; the engine reaches a family only through this
protocol and the registry (``tests/test_layers.py`` checks it).

This module imports nothing heavy: torch appears in annotations only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from dsocr_cli.generation.guard import SlidingWindowNoRepeatNGram
    from dsocr_cli.generation.kvcache import RowCache
    from dsocr_cli.generation.outcome import Generation, Prefill
    from dsocr_cli.generation.streaming import TextCallbackStreamer


@dataclass(frozen=True)
class ModeInfo:
    """A resolution mode of a family, as the engine and the CLI see it.

    ``max_image_tokens`` (the largest page's image positions) sizes batches; ``image_tokens(width,
    height)`` is the family's exact token-count rule for one page; ``view_size`` is the side of the
    largest single view the vision encoder sees in this mode (its activation memory is reserved).
    """

    name: str
    description: str
    """One line for ``--help`` (e.g. ``base 1024/256``)."""
    view_size: int
    max_image_tokens: int
    image_tokens: Callable[[int, int], int]


INPUT_KINDS = ("image", "pdf")
"""What a page came from, for settings the official code chooses per input (the loop guard's window)."""


@dataclass(frozen=True)
class GuardDefaults:
    """A family's official loop guard for one input kind: ban repeating ``ngram_size``-grams within the last
    ``window`` generated tokens (``dsocr_cli.generation.guard.SlidingWindowNoRepeatNGram``)."""

    ngram_size: int
    window: int


@dataclass(frozen=True)
class ReferenceSizes:
    """Sizes of a family's official (full-size) checkpoint, for ``doctor`` and ``--quant auto`` estimates."""

    bf16_weight_bytes: int
    num_hidden_layers: int
    hidden_size: int
    context_tokens: int
    """The decoder's context length (``max_position_embeddings``): the KV cache one page can grow to."""


class PreparedPage(Protocol):
    """A page after the family's preprocessing (pixels only; made in a worker thread)."""

    num_image_tokens: int


class PageInputs(Protocol):
    """A request: the prompt's token ids around the image positions of one prepared page."""

    input_ids: list[int]
    image: Any
    """The ``PreparedPage`` the request was built from."""


class PromptLike(Protocol):
    """A resolved prompt: its name and exact text (``<image>`` marks where the page goes)."""

    name: str
    text: str


@runtime_checkable
class FamilyRunner(Protocol):
    """A loaded model of one family: everything the engine calls, nothing it has to reach through.

    The model thread calls every method except ``prepare_image``, which the engine calls from worker
    threads and must therefore touch no model, tokenizer or shared mutable state.
    """

    @property
    def family(self) -> ModelFamily:
        """The family this runner runs (its modes, prompts, guard defaults and hub repo)."""
        ...

    @property
    def device(self) -> torch.device: ...

    @property
    def dtype(self) -> torch.dtype:
        """The compute dtype (activations and the KV cache)."""
        ...

    @property
    def eos_id(self) -> int:
        """The token that ends a page."""
        ...

    @property
    def kv_bytes_per_token(self) -> int:
        """Key/value cache bytes one token takes across all decoder layers, in the compute dtype."""
        ...

    def mode(self, name: str) -> ModeInfo:
        """The family's mode ``name``; ``UsageError`` (exit 1) naming the supported ones otherwise."""
        ...

    def resolve_prompt(self, spec: str) -> PromptLike:
        """``--prompt`` text -> the family's prompt; ``UsageError`` when it is not one."""
        ...

    def prepare_image(self, image: Image.Image, mode: str) -> PreparedPage:
        """Pixels of one page for ``mode`` (worker-thread safe: no model or tokenizer use)."""
        ...

    def request(self, prepared: Any, prompt: Any) -> PageInputs:
        """The prompt's token ids around an already prepared page (model thread: uses the tokenizer)."""
        ...

    def view_bytes(self, side: int) -> int:
        """Peak vision-encoder activation bytes of one ``side`` px view."""
        ...

    def encode_images(self, requests: Sequence[Any], budget: int) -> list[torch.Tensor]:
        """Vision features per request, encoder calls cut to stay within ``budget`` activation bytes."""
        ...

    def prefill(self, request: Any, features: torch.Tensor) -> Prefill:
        """One request's prompt through the decoder: first-token logits and the keys/values it left."""
        ...

    def prefill_batch(self, requests: Sequence[Any], features: Sequence[torch.Tensor]) -> list[Prefill]:
        """Several prompts in one forward (right-padded, each row attending to its own tokens)."""
        ...

    def new_cache(self, rows: int, static: bool = False) -> RowCache:
        """An empty per-row key/value cache for up to ``rows`` sequences (``static``: fixed-shape steps)."""
        ...

    def compile_decode(self, backend: str) -> None:
        """Run later decode steps compiled (``generation.compiled``); they need static caches."""
        ...

    def decode_step(self, tokens: Sequence[int], cache: RowCache) -> torch.Tensor:
        """One token per live row of ``cache`` -> (rows, vocab) float32 next-token logits."""
        ...

    def guard_defaults(self, kind: str) -> GuardDefaults:
        """The family's official guard for pages of input kind ``kind`` (``INPUT_KINDS``)."""
        ...

    def guard(self, ngram_size: int, ngram_window: int, prompt_length: int) -> SlidingWindowNoRepeatNGram:
        """The family's loop guard, its whitelist (tokens that may repeat, e.g. table cells) inside; the engine
        calls its ``banned_tokens(generated)``, the one-page path uses it as a logits processor."""
        ...

    def decode(self, token_ids: list[int]) -> str:
        """Generated ids -> model text (special tokens the post-processing reads are kept)."""
        ...

    def streamer(self, on_text: Callable[[str], None]) -> TextCallbackStreamer:
        """A streamer that hands decoded text to ``on_text`` as tokens arrive."""
        ...

    def generate(
        self,
        request: Any,
        max_new_tokens: int,
        ngram_size: int = ...,
        ngram_window: int = ...,
        on_text: Callable[[str], None] | None = None,
    ) -> Generation:
        """One-page greedy decoding the way the family's official code runs it; raises
        ``dsocr_cli.generation.outcome.NonFiniteLogits`` on NaN/inf logits."""
        ...


@runtime_checkable
class ModelFamily(Protocol):
    """A kind of checkpoint dsocr runs; cheap to import (no torch) so the CLI can consult it at parse time."""

    name: str
    """Short name shown to users (e.g. ``deepseek-ocr``)."""
    description: str
    """What it is, for messages (e.g. ``DeepSeek-OCR v1 (deepseek-ai/DeepSeek-OCR)``)."""
    default_repo: str
    """The hub repo of the official checkpoint."""
    short_names: tuple[str, ...]
    """What ``--model`` may say instead of ``default_repo`` (e.g. ``v2``); ``registry.expand_model`` resolves them."""
    default_mode: str
    prompt_choices: tuple[str, ...]
    guard_defaults: dict[str, GuardDefaults]
    """Input kind (``INPUT_KINDS``) -> the official loop guard for it, used where ``--no-repeat-ngram`` /
    ``--ngram-window`` are not given."""
    """What ``--prompt`` accepts, for ``--help`` and error messages."""

    def recognises(self, config: dict[str, Any]) -> bool:
        """Whether a checkpoint with this config.json is one of this family's (official or converted layout).

        Must not rely on ``model_type`` alone: DeepSeek-OCR v1 and v2 share ``deepseek_vl_v2``.
        """
        ...

    @property
    def modes(self) -> dict[str, ModeInfo]:
        """Mode name -> its token-count rule, in the order ``--help`` lists them."""
        ...

    def resolve_prompt(self, spec: str) -> PromptLike:
        """``--prompt`` text -> the family's prompt (``UsageError`` naming the choices otherwise)."""
        ...

    def load(
        self,
        directory: Path,
        device: torch.device,
        dtype: torch.dtype,
        notify: Callable[[str], None] | None = None,
    ) -> FamilyRunner:
        """Load the checkpoint in ``directory`` (plain or dsocr-quantized) onto ``device`` in ``dtype``."""
        ...

    def reference_sizes(self) -> ReferenceSizes:
        """Sizes of the official checkpoint, from the family's layout table (nothing is read)."""
        ...
