"""The FastAPI application of ``dsocr serve``: OpenAI-compatible routes over one ``Scheduler``.

Routes: ``POST /v1/chat/completions`` (one page per request, ``server.wire`` has the format), ``GET /v1/models``,
``GET /metrics`` (Prometheus text) and ``GET /health``. ``build_app(runner, scheduler, settings)`` makes it
from a loaded runner; tests drive it without a socket (``httpx.ASGITransport``), ``server.run`` under uvicorn.

Continuous batching across clients: every request's page is ``Scheduler.submit``-ted to the one scheduler,
joins the running batch at the next decode step and completes on its own (a short page sent after a long one
comes back first). The request's image is decoded (``wire.parse_chat``, in a worker thread) before it is
submitted, so a bad request never reaches the model.

Rules:

- Authentication (``ServerSettings.api_key``): every route except ``/health`` needs ``Authorization: Bearer
  KEY`` (compared in constant time); without it the answer is 401 and nothing runs. The key is never logged.
- The body is refused with 413 above ``max_body_bytes``: by its Content-Length before anything is read, else
  as soon as the bytes read pass the limit.
- At most ``max_pending`` chat requests are accepted and not yet done (each holds its body, then a decoded
  page image); more are a 429 with ``Retry-After`` (clients retry those).
- Errors are OpenAI's ``{"error": {"message", "type", "param", "code"}}``: 4xx for a bad request, 500 with
  the message for a model failure (that request only: the scheduler goes on with the others), 503 while the
  server shuts down.
- A client that goes away cancels its request in the scheduler (``Scheduler`` frees its row at the next step):
  a streamed answer when its response is closed, a plain one when the connection is seen closed while it
  waits (checked every ``DISCONNECT_POLL_SECONDS``).
- Streaming: the runner's streamer hands text to ``PageRequest.on_text`` on the model thread; it is passed to
  the event loop with ``call_soon_threadsafe`` (the callback never raises into the model loop) and sent as
  SSE chunks. A model failure after the stream started is a last ``data: {"error": ...}`` event, then
  ``data: [DONE]``.
"""

from __future__ import annotations

import asyncio
import hmac
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from dsocr_cli import __version__
from dsocr_cli.engine.backend import PageOutcome, PageRequest
from dsocr_cli.engine.scheduler import Scheduler
from dsocr_cli.errors import DsocrError, InputError, UsageError
from dsocr_cli.inputs.images import MAX_PIXELS
from dsocr_cli.inputs.sizes import format_size
from dsocr_cli.models.family import FamilyRunner
from dsocr_cli.results import Page, PageResult
from dsocr_cli.server import wire
from dsocr_cli.server.wire import ApiError, ChatRequest, Limits

DEFAULT_MAX_BODY_BYTES = 50 * 1024**2
"""``--max-body-size`` default (50 MiB): a 144 dpi A4 page is 1-5 MB as PNG, a third more in base64."""
CAPACITY_PER_ROW = 2
"""``/v1/models`` reports ``capacity`` = this times the batch rows: pages a client keeps in flight so that a
row freed by a finished page is refilled at once (the next page is already decoded and waiting)."""
PENDING_PER_ROW = 8
MIN_PENDING = 64
"""Requests accepted and not yet done, at most: ``max(MIN_PENDING, PENDING_PER_ROW * rows)`` by default."""
CHAT_PATH = "/v1/chat/completions"


@dataclass(frozen=True)
class ServerSettings:
    """What ``dsocr serve``'s options set."""

    model: str
    """The model id ``/v1/models`` reports and answers name (the ``--model`` reference)."""
    api_key: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_pixels: int = MAX_PIXELS
    max_pending: int | None = None
    """None: ``max(MIN_PENDING, PENDING_PER_ROW * rows)``."""


def special_token_texts(runner: FamilyRunner) -> list[str]:
    """The text of every special token of the runner's tokenizer (what ``skip_special_tokens`` removes).

    Read once, before serving: the tokenizer is the model thread's while the server runs."""
    tokenizer = runner.streamer(lambda text: None).tokenizer
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    return [token.content for token in added.values() if getattr(token, "special", False)]


class Service:
    """The server's state: the runner and scheduler, limits, and counters the routes share."""

    def __init__(self, runner: FamilyRunner, scheduler: Scheduler, settings: ServerSettings) -> None:
        self.runner = runner
        self.scheduler = scheduler
        self.settings = settings
        self.family = runner.family
        self.context = self.family.reference_sizes().context_tokens
        self.limits = Limits(
            max_pixels=settings.max_pixels,
            context=self.context,
            whitelist=runner.guard(1, 1, prompt_length=0).whitelist,
        )
        self.skip_special = wire.SpecialTokenFilter(special_token_texts(runner))
        rows = scheduler.stats.rows
        self.max_pending = settings.max_pending or max(MIN_PENDING, PENDING_PER_ROW * rows)
        self.created = int(time.time())
        self.lock = threading.Lock()
        self.pending = 0
        self.rejected = 0
        self.key = None if settings.api_key is None else settings.api_key.encode("utf-8")

    # ---------------------------------------------------------------- requests

    async def authorize(self, request: Request) -> None:
        """The Bearer key check (a route dependency); 401 without the key."""
        if self.key is None:
            return
        scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
        given = token.strip().encode("latin-1", errors="replace")  # the header's bytes as sent
        if scheme.lower() != "bearer" or not hmac.compare_digest(given, self.key):
            raise ApiError(401, "missing or wrong API key (send Authorization: Bearer KEY)", code="invalid_api_key")

    async def read_body(self, request: Request) -> bytes:
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                raise wire.bad_request("invalid Content-Length header")
            if int(declared) > limit:
                raise self.too_large()
        chunks, size = [], 0
        async for piece in request.stream():
            size += len(piece)
            if size > limit:
                raise self.too_large()
            chunks.append(piece)
        return b"".join(chunks)

    def too_large(self) -> ApiError:
        limit = format_size(self.settings.max_body_bytes)
        return ApiError(
            413, f"the request body is over {limit} (dsocr serve --max-body-size)", code="request_too_large"
        )

    def admit(self) -> None:
        with self.lock:
            if self.pending >= self.max_pending:
                raise ApiError(
                    429,
                    f"the server is busy ({self.pending} requests in progress); retry later",
                    code="server_busy",
                    kind="rate_limit_error",
                )
            self.pending += 1

    def release(self) -> None:
        with self.lock:
            self.pending -= 1

    def reject(self) -> None:
        with self.lock:
            self.rejected += 1

    def submit(
        self, chat: ChatRequest, ident: str, on_text: Callable[[str], None] | None = None
    ) -> Future[PageOutcome]:
        """Hand an admitted request's page to the scheduler; the admission ends when its future is done."""
        page = Page(source=ident, number=1, image=chat.image)
        request = PageRequest(source=ident, number=1, load=lambda: page, options=chat.options, on_text=on_text)
        try:
            future = self.scheduler.submit(request)
        except RuntimeError:  # closed: the server is shutting down
            self.release()
            raise ApiError(503, "the server is shutting down", code="shutting_down") from None
        future.add_done_callback(lambda done: self.release())
        return future

    def content(self, chat: ChatRequest, text: str) -> str:
        return self.skip_special(text) if chat.skip_special_tokens else text

    # ---------------------------------------------------------------- reports

    def model_card(self) -> dict[str, Any]:
        rows = self.scheduler.stats.rows
        return {
            "id": self.settings.model,
            "object": "model",
            "created": self.created,
            "owned_by": "dsocr",
            "root": self.family.default_repo,
            "parent": None,
            "max_model_len": self.context,
            "dsocr": {
                "family": self.family.name,
                "batch_rows": rows,
                "capacity": CAPACITY_PER_ROW * rows,
                "modes": list(self.family.modes),
                "default_mode": self.family.default_mode,
                "version": __version__,
            },
        }

    def metrics(self) -> str:
        stats = self.scheduler.stats
        series = [
            ("dsocr_requests_total", "counter", "Requests that reached the model.", stats.requests),
            ("dsocr_pages_total", "counter", "Pages finished with a result.", stats.pages),
            ("dsocr_failed_total", "counter", "Requests that reached the model and failed.", stats.failed),
            ("dsocr_cancelled_total", "counter", "Requests whose client went away before the answer.", stats.cancelled),
            (
                "dsocr_rejected_total",
                "counter",
                "Chat requests refused (4xx) before reaching the model.",
                self.rejected,
            ),
            ("dsocr_generated_tokens_total", "counter", "Tokens generated (EOS included).", stats.tokens),
            ("dsocr_decode_steps_total", "counter", "Batched decode steps.", stats.steps),
            (
                "dsocr_decode_rows_total",
                "counter",
                "Rows over all decode steps (rows / steps = mean batch occupancy).",
                stats.step_rows,
            ),
            ("dsocr_batch_rows", "gauge", "Batch rows (halved after running out of memory).", stats.rows),
            ("dsocr_live_rows", "gauge", "Rows decoding now.", stats.live),
            ("dsocr_queue_length", "gauge", "Requests waiting for a row.", self.scheduler.queued()),
            ("dsocr_pending_requests", "gauge", "Requests accepted and not yet done.", self.pending),
        ]
        lines = []
        for name, kind, help_text, value in series:
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {value}"]
        return "\n".join(lines) + "\n"

    def healthy(self) -> bool:
        thread = self.scheduler.thread
        return not self.scheduler.closed and (thread is None or thread.is_alive())


def error_response(error: ApiError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else {}
    if error.status == 429:
        headers["Retry-After"] = "1"
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


def failure(exc: BaseException) -> ApiError:
    """A request that reached the model and failed: 400 for its page's own error, else 500 with the message."""
    if isinstance(exc, (InputError, UsageError)):
        return wire.bad_request(str(exc))
    message = str(exc) if isinstance(exc, DsocrError) else f"{type(exc).__name__}: {exc}"
    return ApiError(500, message or type(exc).__name__, code="model_error")


def outcome_of(future: Future[PageOutcome]) -> PageResult:
    """The result of a done future, or the ``ApiError`` its failure is."""
    if future.cancelled():
        raise ApiError(503, "the server is shutting down", code="shutting_down")
    try:
        outcome = future.result()
    except Exception as exc:
        raise failure(exc) from None
    if outcome.error is not None:
        raise failure(outcome.error)
    assert outcome.result is not None
    return outcome.result


def settled(future: Future[Any]) -> asyncio.Future[None]:
    """An asyncio future done when ``future`` is; cancelling it (a client gone) leaves ``future`` alone."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not waiter.done():
            waiter.set_result(None)

    future.add_done_callback(lambda done: call_soon(loop, wake))
    return waiter


def call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    """``loop.call_soon_threadsafe`` that never raises (model thread: a closed loop has nobody to tell)."""
    try:
        loop.call_soon_threadsafe(callback, *args)
    except Exception:
        pass


_END = object()
DISCONNECT_POLL_SECONDS = 0.5
"""How often a plain (not streamed) request checks whether its client is still connected while it waits."""


def build_app(runner: FamilyRunner, scheduler: Scheduler, settings: ServerSettings) -> FastAPI:
    """The application serving ``runner`` through ``scheduler`` (a ``submit``-fed one)."""
    service = Service(runner, scheduler, settings)
    app = FastAPI(title="dsocr", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        response = error_response(ApiError(exc.status_code, str(exc.detail), code=code))
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response

    @app.get("/health")
    async def health() -> Response:
        if not service.healthy():
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok"})

    api = APIRouter(dependencies=[Depends(service.authorize)])

    @api.get("/v1/models")
    async def models() -> Response:
        return JSONResponse({"object": "list", "data": [service.model_card()]})

    @api.get("/metrics")
    async def metrics() -> Response:
        return PlainTextResponse(service.metrics(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @api.post(CHAT_PATH)
    async def chat_completions(request: Request) -> Response:
        try:
            service.admit()  # before the body is read: bodies held in memory are bounded too
            try:
                body = await service.read_body(request)
                chat = await run_in_threadpool(wire.parse_chat, body, service.family, service.limits)
            except BaseException:
                service.release()
                raise
        except ApiError as exc:
            if exc.status < 500:
                service.reject()
            raise
        ident, created = wire.completion_id(), wire.now()
        if chat.stream:
            return stream(chat, ident, created)
        future = service.submit(chat, ident)
        waiter = settled(future)
        while not waiter.done():
            await asyncio.wait({waiter}, timeout=DISCONNECT_POLL_SECONDS)
            if not waiter.done() and await request.is_disconnected():
                future.cancel()  # nobody will read the answer: free the row
                raise ApiError(499, "the client closed the connection", code="client_closed")
        result = outcome_of(future)
        return JSONResponse(wire.completion(ident, created, settings.model, result, service.content(chat, result.text)))

    def stream(chat: ChatRequest, ident: str, created: int) -> Response:
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[object] = asyncio.Queue()

        def post(item: object) -> None:
            call_soon(loop, events.put_nowait, item)

        future = service.submit(chat, ident, on_text=post)
        future.add_done_callback(lambda done: post(_END))  # after every chunk: both are posted by the model thread

        def event(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> str:
            return wire.sse(wire.chunk(ident, created, settings.model, delta, finish, **extra))

        async def chunks() -> AsyncIterator[str]:
            try:
                async for text in answer():
                    yield text
            finally:  # the client went away mid-stream (or the answer is complete: then this does nothing)
                future.cancel()

        async def answer() -> AsyncIterator[str]:
            yield event({"role": "assistant", "content": ""})
            while (item := await events.get()) is not _END:
                text = service.content(chat, str(item))
                if text:
                    yield event({"content": text})
            try:
                result = outcome_of(future)
            except ApiError as exc:
                yield wire.sse(exc.body())
                yield wire.sse("[DONE]")
                return
            yield event({}, wire.finish_reason(result), dsocr=wire.extension(result))
            if chat.include_usage:
                yield event(None, usage=wire.usage(result))
            yield wire.sse("[DONE]")

        return StreamingResponse(chunks(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    app.include_router(api)
    return app
