"""The batched engine's model loop as a scheduler that owns its state and completes one future per request.

A ``Scheduler`` runs the loop of ``dsocr_cli.engine.batched`` (continuous batching: free rows are refilled
with the next ready pages before every decode step, each row stops on its own) on its own model thread,
fed by a loader thread and a preprocessing pool (``prefetch.Prefetcher``). Two ways in:

- ``ordered_outcomes(requests)``: a finite stream (``dsocr convert``); the loader pulls the requests lazily,
  in order (documents are opened and rendered on that one thread), and the caller gets the outcomes back in
  request order. A page is admitted at most ``DELIVERY_WINDOW`` batches ahead of the oldest outcome the
  caller has not taken, which bounds the results held back behind a long page.
- ``submit(request)`` from any thread (``dsocr serve``): a ``concurrent.futures.Future`` completed as soon as
  that page is done, never in global order, so a short request sent after a long one finishes first. A
  request that arrives while others decode joins the next step.

Failures: a page that cannot be rendered or prepared is that page's ``PageOutcome.error``. A caller may cancel a request's
future (a client that went away): a waiting page is dropped, a decoding one frees its row at the next step. A failure of the
model (NaN/inf logits, running out of memory at one row, a bug) fails the futures of the pages it was
running with that exception and the scheduler goes on with the next requests (a fresh cache); the ordered
stream re-raises it, which stops a conversion as before. Out of memory with more than one row halves the
batch and restarts its pages from their prompts (greedy decoding gives the same tokens), except a page that
has already streamed text to its client: that one fails alone.

``stats`` counts what ``/metrics`` reports: requests, pages, generated tokens, decode steps and the rows
they ran (``rows / steps`` is the mean batch occupancy), the queue and the live rows now.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

import torch

from dsocr_cli.engine.backend import PageOutcome, PageRequest
from dsocr_cli.engine.prefetch import Prefetcher

if TYPE_CHECKING:
    from dsocr_cli.engine.batched import BatchedEngine, LivePage
    from dsocr_cli.generation.kvcache import RowCache
    from dsocr_cli.models.family import PreparedPage

DELIVERY_WINDOW = 4
"""Ordered streams: pages are admitted at most this many batches ahead of the oldest one not yet taken."""


@dataclass
class SchedulerStats:
    """Counters since the scheduler started (read from any thread; written by the model thread only)."""

    requests: int = 0
    """Requests submitted or pulled."""
    pages: int = 0
    """Pages finished with a result."""
    failed: int = 0
    """Requests that ended with an error (a page's or the model's)."""
    cancelled: int = 0
    """Requests their caller cancelled while they waited or decoded (their rows were freed)."""
    tokens: int = 0
    """Tokens generated (the first token of each page, from its prefill, included)."""
    steps: int = 0
    """Batched decode steps."""
    step_rows: int = 0
    """Rows over all decode steps: ``step_rows / steps`` is the mean batch occupancy."""
    max_step_rows: int = 0
    """The most rows one decode step ran."""
    live: int = 0
    """Rows decoding now."""
    rows: int = 0
    """Batch rows now (halved after running out of memory)."""


class _Submitted:
    """The request source of a ``submit``-fed scheduler: a queue read on the loader thread."""

    def __init__(self) -> None:
        self.queue: queue.Queue[tuple[PageRequest, Future[PageOutcome]] | None] = queue.Queue()


class Scheduler:
    """Owns the model loop of ``engine`` on a model thread; use as a context manager (``close`` on exit)."""

    def __init__(self, engine: BatchedEngine, rows: int, ordered: bool = False) -> None:
        """``rows``: batch rows (``BatchedEngine.rows_for`` or ``auto_batch_size``); ``ordered``: the
        scheduler serves one ``ordered_outcomes`` stream instead of ``submit`` calls."""
        from dsocr_cli.engine.batched import VISION_SHARE, free_memory

        self.engine = engine
        self.runner = engine.runner
        self.ordered = ordered
        self.stats = SchedulerStats(rows=rows)
        self.vision_budget = int(VISION_SHARE * free_memory(self.runner.device))
        self.futures: dict[int, Future[PageOutcome]] = {}
        self.taken = 0
        """Ordered streams: outcomes the caller has taken (the delivery window counts from here)."""
        self.pulled = 0
        """Requests the model thread has taken from the feed (admitted or failed)."""
        self.stop = threading.Event()
        self.submitted = _Submitted()
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()
        self.closed = False

    # ---------------------------------------------------------------- callers' side

    def __enter__(self) -> Scheduler:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close(drain=exc_type is None)

    def submit(self, request: PageRequest) -> Future[PageOutcome]:
        """Queue ``request`` (any thread); its future completes with the page's outcome, or with the model's
        exception. Starts the model thread on first use."""
        if self.ordered:
            raise RuntimeError("an ordered scheduler takes its requests from ordered_outcomes")
        future: Future[PageOutcome] = Future()
        with self.lock:
            if self.closed:
                raise RuntimeError("the scheduler is closed")
            if self.thread is None:
                self.thread = self._start(self._pull_submitted())
            self.submitted.queue.put((request, future))
        return future

    def ordered_outcomes(self, requests: Iterable[PageRequest]) -> Iterator[PageOutcome]:
        """Run ``requests`` (pulled lazily on the loader thread) and yield their outcomes in request order; a
        model failure is raised here."""
        order: queue.Queue[Future[PageOutcome] | None] = queue.Queue()
        self.thread = self._start(self._pull_ordered(requests, order))
        while True:
            future = self._next(order)
            if future is None:
                return
            outcome = future.result()
            self.taken += 1
            yield outcome

    def close(self, drain: bool = True) -> None:
        """No more requests; with ``drain`` wait for the queued and running ones, else stop at the next step
        (their futures are cancelled)."""
        with self.lock:
            self.closed = True
            thread = self.thread
        if thread is None:
            return
        if not drain:
            self.stop.set()
        if not self.ordered:
            self.submitted.queue.put(None)
        while thread.is_alive():
            thread.join(timeout=0.1)
        for future in list(self.futures.values()):
            future.cancel()

    def queued(self) -> int:
        """Requests waiting for a row (submitted or pulled, not yet decoding or done)."""
        done = self.stats.pages + self.stats.failed + self.stats.cancelled
        return max(0, self.stats.requests - done - self.stats.live)

    def _next(self, order: queue.Queue[Future[PageOutcome] | None]) -> Future[PageOutcome] | None:
        while True:
            try:
                return order.get(timeout=0.1)
            except queue.Empty:
                if self.thread is not None and not self.thread.is_alive() and order.empty():
                    return None

    # ---------------------------------------------------------------- loader thread (request sources)

    def _pull_ordered(
        self, requests: Iterable[PageRequest], order: queue.Queue[Future[PageOutcome] | None]
    ) -> Iterator[PageRequest]:
        try:
            for index, request in enumerate(requests):
                future: Future[PageOutcome] = Future()
                self.futures[index] = future
                self.stats.requests += 1
                order.put(future)
                yield request
        finally:
            order.put(None)

    def _pull_submitted(self) -> Iterator[PageRequest]:
        index = 0
        while True:
            item = self.submitted.queue.get()
            if item is None:
                return
            request, future = item
            self.futures[index] = future
            self.stats.requests += 1
            index += 1
            yield request

    # ---------------------------------------------------------------- model thread

    def _start(self, source: Iterator[PageRequest]) -> threading.Thread:
        thread = threading.Thread(target=self._serve, args=(source,), name="dsocr-model", daemon=True)
        thread.start()
        return thread

    def _deliver(self, index: int, outcome: PageOutcome) -> None:
        future = self.futures.pop(index, None)
        if future is None:
            return
        if future.cancelled():
            self.stats.cancelled += 1
        elif outcome.error is None:
            self.stats.pages += 1
            if outcome.result is not None:
                self.stats.tokens += outcome.result.generated_tokens
        else:
            self.stats.failed += 1
        settle(future, outcome)

    def _fail(self, pages: Iterable[LivePage], error: BaseException) -> None:
        for index in sorted({page.index for page in pages}):
            future = self.futures.pop(index, None)
            if future is not None:
                self.stats.failed += 1
                settle(future, error=error)

    def _drop_cancelled(self, live: list[LivePage], cache: RowCache, retries: deque[LivePage]) -> None:
        """Free the rows of pages whose caller cancelled them (``dsocr serve``: the client went away), and
        forget their queued retries: nobody waits for them."""
        for row in reversed(range(len(live))):
            future = self.futures.get(live[row].index)
            if future is not None and future.cancelled():
                self.futures.pop(live[row].index, None)
                self.stats.cancelled += 1
                cache.remove(row)
                live[row] = live[-1]
                live.pop()
        for page in [page for page in retries if (f := self.futures.get(page.index)) is not None and f.cancelled()]:
            retries.remove(page)
            self.futures.pop(page.index, None)
            self.stats.cancelled += 1

    def _serve(self, source: Iterator[PageRequest]) -> None:
        engine, rows = self.engine, self.stats.rows
        depth = rows + engine.workers
        try:
            with Prefetcher(source, engine.prepare_image, engine.workers, depth=depth) as feed:
                self._loop(feed, rows)
        except BaseException as exc:  # the request stream itself broke: every waiting request hears it
            for future in list(self.futures.values()):
                settle(future, error=exc)
            self.futures.clear()

    def _loop(self, feed: Prefetcher[PreparedPage], rows: int) -> None:
        engine = self.engine
        cache = engine.new_cache(rows)
        live: list[LivePage] = []
        retries: deque[LivePage] = deque()
        while not self.stop.is_set():
            self._drop_cancelled(live, cache, retries)
            self.stats.live = len(live)  # before feed.take may wait: an idle scheduler reports no live rows
            free = rows - len(live)
            starting = [retries.popleft() for _ in range(min(free, len(retries)))]
            room = free - len(starting)
            if self.ordered:
                room = min(room, self.taken + DELIVERY_WINDOW * rows - self.pulled)
            if room > 0:
                for item in feed.take(room, wait=not live and not starting):
                    self.pulled += 1
                    waiting = self.futures.get(item.index)
                    if waiting is not None and waiting.cancelled():  # its caller left before it had a row
                        self.futures.pop(item.index, None)
                        self.stats.cancelled += 1
                    elif item.error is not None:
                        self._deliver(item.index, PageOutcome(item.request, error=item.error))
                    else:
                        starting.append(engine.admit(item))
            try:
                if starting:
                    engine.start(starting, cache, live, retries, self._deliver, self.vision_budget)
                if not live:
                    self.stats.live = 0
                    if not retries and feed.exhausted:
                        return
                    continue
                self.stats.live = len(live)
                logits = self.runner.decode_step([page.generated[-1] for page in live], cache)
                self.stats.steps += 1
                self.stats.step_rows += len(live)
                self.stats.max_step_rows = max(self.stats.max_step_rows, len(live))
                tokens = engine.choose(live, logits)
            except torch.OutOfMemoryError:
                running = [*live, *(page for page in starting if page not in live)]
                live.clear()
                try:
                    rows, streamed = engine.shrink(rows, running, retries)
                except Exception as exc:  # one row does not fit: those pages fail, the next ones get a try
                    if self.ordered:
                        raise
                    self._fail(running, exc)
                else:
                    if streamed and self.ordered:  # never: a conversion streams one page at a time
                        raise engine.streamed_out_of_memory()
                    self._fail(streamed, engine.streamed_out_of_memory())
                self.stats.rows = rows
                cache = engine.new_cache(rows)
                continue
            except Exception as exc:  # NaN/inf logits or a bug: the pages it hit fail, the scheduler goes on
                if self.ordered:
                    raise  # a conversion stops: _serve fails every waiting request with it
                self._fail([*live, *starting], exc)
                live.clear()
                cache = engine.new_cache(rows)
                continue
            for row in reversed(range(len(live))):
                page = live[row]
                if not engine.advance(page, tokens[row]):
                    cache.remove(row)
                    live[row] = live[-1]
                    live.pop()
                    engine.finish(page, retries, self._deliver)
        self.stats.live = 0


def settle(future: Future[PageOutcome], outcome: PageOutcome | None = None, error: BaseException | None = None) -> None:
    """Complete ``future`` unless its caller cancelled it (a cancelled request's result is dropped, and the model
    thread goes on)."""
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(outcome)  # type: ignore[arg-type]
    except InvalidStateError:
        pass


def wait_all(futures: Iterable[Future[PageOutcome]], timeout: float | None = None) -> list[PageOutcome]:
    """The outcomes of ``futures`` in the order given (a helper for callers that submit several pages)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    outcomes = []
    for future in futures:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        outcomes.append(future.result(timeout=remaining))
    return outcomes
