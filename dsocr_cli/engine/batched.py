"""The batched engine: pages from all inputs stream through one model in batches.

Flow (``BatchedEngine.run``, ``scheduler.Scheduler``):

1. A loader thread renders pages in request order and a small pool preprocesses them (``prefetch``),
   overlapping the model.
2. Free batch rows are refilled with the next ready pages (continuous batching). Their global views
   and tiles go through the vision encoder together, grouped by view size; each prompt is then
   prefilled on its own (the same call as the first step of transformers' ``generate``, so a page's
   first token does not depend on its batch mates) and its keys/values are copied into a row of the
   shared ``RowCache``.
3. Every decode step feeds one token per live row. Each row stops on its own (EOS or its token
   limit); the loop guard runs per row over that row's generated tokens; a row that hits the limit
   with a repeating tail (``Generation.looped``) and has ``retry`` settings is run once more with them.
   A finished row is freed at once and refilled. Logits that are not finite (NaN/inf: damaged weights
   or a dtype overflow) stop the run with a ``ModelError``, since every later page would fail the same way.
4. Outcomes are handed back in request order as soon as all earlier pages are done; a page admitted
   more than ``scheduler.DELIVERY_WINDOW`` batches ahead of the oldest undelivered one waits, which
   bounds the results held back behind a long page.

The loop runs in ``dsocr_cli.engine.scheduler.Scheduler`` on a model thread (this module holds the steps
it is built from: admitting, encoding and prefilling, choosing tokens under the guard, finishing or
retrying a page, shrinking after running out of memory); ``BatchedEngine.run`` is its ordered use, and
``dsocr serve`` submits requests from many clients to one scheduler (continuous batching across them).

Batch size (``auto_batch_size``): the memory a live page needs is its key/value cache,

    kv_bytes_per_token = 2 (keys, values) * layers * kv_heads * head_dim * dtype_bytes
                       = 2 * layers * hidden * dtype_bytes            (v1's multi-head attention)
    page_bytes         = kv_bytes_per_token * (image positions + PROMPT_TEXT_TOKENS + max_new_tokens)

with the mode's largest image (Gundam: a 1x9 tile grid plus the global view, 1,263 positions). The
vision encoder's activations come on top, per view about 3 * sam_heads * (view_px / 16)^4 * 4 bytes
(SAM's global-attention position bias; ``FamilyRunner.view_bytes``): encoder calls are cut to stay within
``VISION_SHARE`` of free memory, and one view of the mode is reserved. Then

    batch = clamp(floor((free * USABLE_SHARE - one view) / page_bytes), 1, cap)

where ``free`` is the memory left after loading the weights (CUDA: ``mem_get_info``; CPU: available
RAM), so quantization enters through ``free`` (smaller weights leave more), and the cache is in the
compute dtype. ``cap`` is 32 on the CPU (measured: decode steps still gain up to there, BENCHMARKS.md)
and 64 on GPUs (not measured). Full-size v1, Gundam, the default 8,192-token limit: 0.58 GB per page
in bf16 (94 pages fit an 80 GB GPU, so 64), 1.17 GB in float32 (4 pages on a 24 GB CPU machine).
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain

import psutil
import torch

from dsocr_cli.engine.backend import ConvertOptions, PageOutcome, PageRequest
from dsocr_cli.engine.prefetch import Loaded
from dsocr_cli.errors import ModelError
from dsocr_cli.generation.guard import SlidingWindowNoRepeatNGram
from dsocr_cli.generation.kvcache import RowCache
from dsocr_cli.generation.outcome import Generation, NonFiniteLogits, Prefill, check_finite
from dsocr_cli.generation.streaming import TextCallbackStreamer
from dsocr_cli.models.family import FamilyRunner, PageInputs, PreparedPage
from dsocr_cli.results import Page, PageResult

USABLE_SHARE = 0.8
"""Of the free memory, the share the engine plans to use (the rest is headroom for allocator slack)."""
VISION_SHARE = 0.2
"""Of the free memory, the share reserved for one vision-encoder call."""
PROMPT_TEXT_TOKENS = 32
"""Upper bound on the prompt's text tokens around the image (the built-in prompts use under 16)."""
PREP_WORKERS = 4
"""Preprocessing threads at most; one core is left to the model's own threads."""
CPU_BATCH_CAP = 32
GPU_BATCH_CAP = 64
PREFILL_TOKENS = 8192
"""Batched prefill: padded prompt positions per forward at most (rows x longest prompt)."""
BATCHED_PREFILL = {"cuda": True, "cpu": False}
"""Whether admitted pages' prompts share one forward by default, per device kind. CPU: measured no faster
(prefill is compute-bound there; BENCHMARKS.md); CUDA: many small forwards leave the GPU idle, so batched
(not yet measured on a GPU)."""


def free_memory(device: torch.device) -> int:
    """Bytes the engine can still allocate on ``device``: free GPU memory, or available RAM on the CPU."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return psutil.virtual_memory().available


def page_kv_bytes(runner: FamilyRunner, options: ConvertOptions) -> int:
    """Key/value cache bytes of one page at its token limit (see the module docstring)."""
    positions = runner.mode(options.mode).max_image_tokens
    return runner.kv_bytes_per_token * (positions + PROMPT_TEXT_TOKENS + options.max_new_tokens)


def auto_batch_size(runner: FamilyRunner, options: ConvertOptions, free: int | None = None) -> int:
    """Rows for ``options`` given ``free`` bytes (default: measured now); see the module docstring."""
    device = runner.device
    free = free_memory(device) if free is None else free
    vision_reserve = min(VISION_SHARE * free, runner.view_bytes(runner.mode(options.mode).view_size))
    rows = int((free * USABLE_SHARE - vision_reserve) // page_kv_bytes(runner, options))
    return max(1, min(rows, GPU_BATCH_CAP if device.type == "cuda" else CPU_BATCH_CAP))


def non_finite_logits_error(runner: FamilyRunner, page: Page) -> ModelError:
    """The one wording of the NaN/inf-logits failure (exit 4), with advice that fits the compute dtype."""
    dtype = runner.dtype
    cause = (
        "the weights are damaged"
        if dtype == torch.float32
        else f"the weights are damaged or {str(dtype).removeprefix('torch.')} overflows (try --dtype float32)"
    )
    return ModelError(f"model produced NaN/inf logits on {page.source} page {page.number}; {cause}")


def page_result(
    runner: FamilyRunner,
    page: Page,
    options: ConvertOptions,
    request: PageInputs,
    generation: Generation,
    seconds: float,
    retried: bool = False,
) -> PageResult:
    return PageResult(
        page=page,
        text=runner.decode(generation.token_ids),
        mode=options.mode,
        prompt=runner.resolve_prompt(options.prompt).text,
        vision_tokens=request.image.num_image_tokens,
        generated_tokens=len(generation.token_ids) + int(generation.finished),
        finished=generation.finished,
        seconds=seconds,
        retried=retried,
        looped=generation.looped,
        token_ids=generation.token_ids,
        prompt_tokens=len(request.input_ids),
    )


@dataclass
class LivePage:
    """A page admitted to the batch: its inputs, settings and what it has generated so far."""

    index: int
    request: PageRequest
    page: Page
    prepared: PageInputs
    options: ConvertOptions
    guard: SlidingWindowNoRepeatNGram | None
    streamer: TextCallbackStreamer | None = None
    started: float = field(default_factory=time.perf_counter)
    generated: list[int] = field(default_factory=list)
    finished: bool = False
    first_token_at: float | None = None
    earlier_seconds: float = 0.0
    retried: bool = False


class BatchedEngine:
    """Converts a stream of page requests with batched, continuously refilled greedy decoding."""

    def __init__(
        self,
        runner: FamilyRunner,
        batch_size: int | None = None,
        suppress_eos: bool = False,
        compile: str | None = None,
        batched_prefill: bool | None = None,
    ) -> None:
        """``batch_size`` None = ``auto_batch_size`` for the first request's options; ``suppress_eos``
        makes every page run to its token limit (benchmarks compare runs at a fixed token count);
        ``compile`` (a ``torch.compile`` backend, e.g. ``inductor``) runs decode steps compiled on static
        caches (``generation.compiled``); ``batched_prefill`` None = the device kind's default
        (``BATCHED_PREFILL``)."""
        self.runner = runner
        if batched_prefill is None:
            batched_prefill = BATCHED_PREFILL.get(runner.device.type, False)
        self.batched_prefill = batched_prefill
        self.batch_size = batch_size
        self.workers = max(1, min(PREP_WORKERS, (os.cpu_count() or 2) - 1))
        self.suppress_eos = suppress_eos
        self.compiled = compile is not None
        if compile is not None:
            runner.compile_decode(compile)

    def new_cache(self, rows: int) -> RowCache:
        """The key/value cache of a run of ``rows`` rows (static when decode steps are compiled)."""
        return self.runner.new_cache(rows, static=self.compiled)

    def rows_for(self, first: PageRequest) -> int:
        """Batch rows for a run whose first request is ``first``: one when it streams text (streams must not
        interleave on stdout), else ``batch_size`` or ``auto_batch_size`` for its options."""
        return 1 if first.on_text is not None else self.batch_size or auto_batch_size(self.runner, first.options)

    def run(self, requests: Iterable[PageRequest]) -> Generator[PageOutcome, None, None]:
        """One outcome per request, in request order, each as soon as it and all before it are done
        (``dsocr_cli.engine.scheduler.Scheduler.ordered`` runs the model loop). A run whose first request
        streams text (``on_text``) goes one page at a time, so streams never interleave. A failure of the
        model itself (NaN/inf logits, out of memory at one row) raises here and stops the run."""
        from dsocr_cli.engine.scheduler import Scheduler

        stream = iter(requests)
        first = next(stream, None)
        if first is None:
            return
        with Scheduler(self, rows=self.rows_for(first), ordered=True) as scheduler:
            yield from scheduler.ordered_outcomes(chain([first], stream))

    def prepare_image(self, page: Page, request: PageRequest) -> PreparedPage:
        """Worker-thread half of preparing a page (pixels only: the tokenizer stays on the model thread);
        an unknown mode is the family's ``UsageError``."""
        return self.runner.prepare_image(page.image, request.options.mode)

    def shrink(self, rows: int, pages: Sequence[LivePage], retries: deque[LivePage]) -> tuple[int, list[LivePage]]:
        """Out of memory: halve the batch and restart its pages from their prompts; at one row, give up
        with advice. Restarted pages produce exactly what they would have (greedy decoding is deterministic).

        A page that has already streamed text cannot restart (its reader has that text): such pages are
        returned, for the caller to fail with ``streamed_out_of_memory``, and only the others restart."""
        device = self.runner.device
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if rows == 1:
            raise ModelError(
                f"out of memory on {device} even one page at a time; try --quant nf4, a smaller --mode "
                "or --max-tokens, or --device cpu"
            )
        lost = [page for page in pages if page.streamer is not None and page.generated]
        kept = {page.index for page in pages} - {page.index for page in lost}
        for page in sorted(pages, key=lambda page: page.index, reverse=True):
            if page.index not in kept:
                continue
            again = self.live_page(page.index, page.request, page.page, page.prepared, page.options)
            again.earlier_seconds, again.retried = page.earlier_seconds, page.retried
            retries.appendleft(again)
        return max(1, rows // 2), lost

    def streamed_out_of_memory(self) -> ModelError:
        """The error of a page that ran out of memory in a batch after streaming part of its text."""
        return ModelError(
            f"out of memory on {self.runner.device} while streaming this page in a batch; its text so far was "
            "sent, so it is not restarted: send it again (the batch is now smaller)"
        )

    def admit(self, item: Loaded[PreparedPage]) -> LivePage:
        """A loaded page as a batch member: prompt ids (tokenized here, on the model thread) and its guard."""
        assert item.page is not None and item.prepared is not None
        options = item.request.options
        prepared = self.runner.request(item.prepared, self.runner.resolve_prompt(options.prompt))
        return self.live_page(item.index, item.request, item.page, prepared, options)

    def live_page(
        self, index: int, request: PageRequest, page: Page, prepared: PageInputs, options: ConvertOptions
    ) -> LivePage:
        options = options.with_guard(self.runner.guard_defaults("image"))  # settings a caller left to the family
        guard = None
        if options.ngram_size > 0:
            guard = self.runner.guard(options.ngram_size, options.ngram_window, prompt_length=len(prepared.input_ids))
        return LivePage(index, request, page, prepared, options, guard)

    def start(
        self,
        pages: Sequence[LivePage],
        cache: RowCache,
        live: list[LivePage],
        retries: deque[LivePage],
        deliver: Callable[[int, PageOutcome], None],
        vision_budget: int,
    ) -> None:
        """Encode the images of ``pages`` together, prefill each prompt, and give each a cache row.

        The cache first reserves room for every live page's whole token limit when that fits the memory
        left (``USABLE_SHARE`` of it), so it is not copied again while these pages decode."""
        features = self.runner.encode_images([page.prepared for page in pages], vision_budget)
        longest = max(len(page.prepared.input_ids) + page.options.max_new_tokens for page in pages)
        budget = cache.allocated_bytes + int(USABLE_SHARE * free_memory(self.runner.device))
        cache.reserve(len(live) + len(pages), longest, budget=budget)
        for page in pages:
            page.started = time.perf_counter()
            if page.request.on_text is not None:
                page.streamer = self.runner.streamer(page.request.on_text)
                page.streamer.put(torch.tensor(page.prepared.input_ids))
        for page, prefill in zip(pages, self.prefill(pages, features), strict=True):
            if self.advance(page, self.choose([page], prefill.logits[None])[0]):
                cache.append(prefill.layer_kv)
                live.append(page)
            else:
                self.finish(page, retries, deliver)

    def prefill(self, pages: Sequence[LivePage], features: Sequence[torch.Tensor]) -> list[Prefill]:
        """Each page's prompt through the decoder: one forward per page, or with ``batched_prefill`` runs of
        consecutive pages whose padded prompts stay within ``PREFILL_TOKENS`` in one forward each."""
        if not self.batched_prefill or len(pages) == 1:
            return [self.runner.prefill(page.prepared, f) for page, f in zip(pages, features, strict=True)]
        prefills: list[Prefill] = []
        start = 0
        while start < len(pages):
            end = start + 1
            longest = len(pages[start].prepared.input_ids)
            while end < len(pages):
                longest_next = max(longest, len(pages[end].prepared.input_ids))
                if longest_next * (end + 1 - start) > PREFILL_TOKENS:
                    break
                longest, end = longest_next, end + 1
            run = pages[start:end]
            if len(run) == 1:
                prefills.append(self.runner.prefill(run[0].prepared, features[start]))
            else:
                prefills.extend(self.runner.prefill_batch([page.prepared for page in run], features[start:end]))
            start = end
        return prefills

    @torch.inference_mode()
    def choose(self, pages: Sequence[LivePage], logits: torch.Tensor) -> list[int]:
        """Greedy next tokens for ``pages`` (rows of ``logits``), after each page's loop guard; logits that
        are not finite raise ``ModelError`` naming the first such page (checked before the guard's -inf)."""
        try:
            check_finite(logits)
        except NonFiniteLogits as exc:
            raise non_finite_logits_error(self.runner, pages[exc.row].page) from None
        for row, page in enumerate(pages):
            if page.guard is not None:
                banned = page.guard.banned_tokens(page.generated)
                if banned:
                    logits[row, sorted(banned)] = -float("inf")
        if self.suppress_eos:
            logits[:, self.runner.eos_id] = -float("inf")
        return logits.argmax(dim=-1).tolist()

    def advance(self, page: LivePage, token: int) -> bool:
        """Record ``token`` for ``page``; False when the page is done (EOS or its token limit)."""
        if page.first_token_at is None:
            page.first_token_at = time.perf_counter()
        if page.streamer is not None:
            page.streamer.put(torch.tensor([token]))
        if token == self.runner.eos_id:
            page.finished = True
            return False
        page.generated.append(token)
        return len(page.generated) < page.options.max_new_tokens

    def finish(self, page: LivePage, retries: deque[LivePage], deliver: Callable[[int, PageOutcome], None]) -> None:
        """Hand a done page back, or queue its one retry when it looped (hit the limit with a repeating
        tail); a page merely cut off at the limit is not retried, since a stronger guard would not help it."""
        if page.streamer is not None:
            page.streamer.end()
        seconds = time.perf_counter() - page.started + page.earlier_seconds
        retry = page.request.retry
        generation = Generation(token_ids=page.generated, finished=page.finished)
        if retry is not None and not page.retried and generation.looped:
            again = self.live_page(page.index, page.request, page.page, page.prepared, retry)
            again.earlier_seconds, again.retried = seconds, True
            retries.append(again)
            return
        result = page_result(self.runner, page.page, page.options, page.prepared, generation, seconds, page.retried)
        deliver(page.index, PageOutcome(page.request, result=result, first_token_at=page.first_token_at))
