"""Render and preprocess pages ahead of the model, in worker threads.

One loader thread pulls requests in order and renders them (PyMuPDF documents must not be used from
two threads at once); a small pool preprocesses the rendered pages (resizing, tiling, tensors: Pillow
and torch release the GIL). The model thread takes finished pages in request order without waiting for
ones still being prepared, unless it has nothing else to do.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Generic, TypeVar

from dsocr_cli.engine.backend import PageRequest
from dsocr_cli.results import Page

T = TypeVar("T")
POLL_SECONDS = 0.1
"""How often a blocked loader thread checks whether the run was stopped."""


@dataclass
class Loaded(Generic[T]):
    """A request in input order, with its page and preprocessed form, or the error that stopped it."""

    index: int
    request: PageRequest
    page: Page | None = None
    prepared: T | None = None
    error: Exception | None = None


class _End:
    """Marks the end of the request stream (``error`` set when pulling the next request raised)."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class Prefetcher(Generic[T]):
    """Keeps up to ``depth`` requests loaded or loading ahead of the model; use as a context manager."""

    def __init__(
        self,
        requests: Iterable[PageRequest],
        prepare: Callable[[Page, PageRequest], T],
        workers: int,
        depth: int,
    ) -> None:
        self.requests = requests
        self.prepare = prepare
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dsocr-prep")
        self.channel: queue.Queue[tuple[int, PageRequest, Future[tuple[Page, T]]] | _End] = queue.Queue(depth)
        self.pending: deque[tuple[int, PageRequest, Future[tuple[Page, T]]]] = deque()
        self.stop = threading.Event()
        self.ended = False
        self.loader = threading.Thread(target=self._load_all, name="dsocr-loader", daemon=True)

    def __enter__(self) -> Prefetcher[T]:
        self.loader.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop.set()
        while self.loader.is_alive():
            try:
                self.channel.get(timeout=POLL_SECONDS)
            except queue.Empty:
                pass
        self.pool.shutdown(wait=True, cancel_futures=True)

    @property
    def exhausted(self) -> bool:
        """True once every request has been handed out."""
        return self.ended and not self.pending

    def _load_all(self) -> None:
        end = _End()
        try:
            for index, request in enumerate(self.requests):
                if self.stop.is_set():
                    return
                future: Future[tuple[Page, T]]
                try:
                    page = request.load()
                except Exception as exc:  # a page that cannot be rendered fails alone
                    future = Future()
                    future.set_exception(exc)
                else:
                    future = self.pool.submit(self._prepare, page, request)
                if not self._put((index, request, future)):
                    return
        except BaseException as exc:  # the request stream itself broke: the model thread re-raises it
            end = _End(exc)
        self._put(end)

    def _prepare(self, page: Page, request: PageRequest) -> tuple[Page, T]:
        return page, self.prepare(page, request)

    def _put(self, item: tuple[int, PageRequest, Future[tuple[Page, T]]] | _End) -> bool:
        while not self.stop.is_set():
            try:
                self.channel.put(item, timeout=POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def _pull(self, block: bool) -> bool:
        """Move one item from the loader to ``pending``; False when nothing came."""
        if self.ended:
            return False
        try:
            item = self.channel.get(block=block)
        except queue.Empty:
            return False
        if isinstance(item, _End):
            self.ended = True
            if item.error is not None:
                raise item.error
            return False
        self.pending.append(item)
        return True

    def take(self, limit: int, wait: bool) -> list[Loaded[T]]:
        """Up to ``limit`` requests whose preparation is over, in order, stopping at the first still running.

        With ``wait``, blocks until at least one is ready or the stream has ended.
        """
        taken: list[Loaded[T]] = []
        while len(taken) < limit:
            if not self.pending and not self._pull(block=wait and not taken):
                break
            index, request, future = self.pending[0]
            if not future.done() and (taken or not wait):
                break
            self.pending.popleft()
            error = future.exception()
            if isinstance(error, Exception):
                taken.append(Loaded(index, request, error=error))
                continue
            page, prepared = future.result()
            taken.append(Loaded(index, request, page=page, prepared=prepared))
        return taken
