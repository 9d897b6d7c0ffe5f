"""The remote backend: pages go to OpenAI-compatible servers (vLLM, SGLang, ``dsocr serve``) instead of a local model.

``dsocr convert --server URL [--server URL ...]`` builds a ``RemoteBackend``; writers cannot tell its
``PageResult`` objects from the local model's, so every output format is written as in local mode.

Wire format (vLLM's DeepSeek-OCR recipe, ``vllm serve deepseek-ai/DeepSeek-OCR --logits-processors
vllm.model_executor.models.deepseek_ocr:NGramPerReqLogitsProcessor --no-enable-prefix-caching
--mm-processor-cache-gb 0``): one ``POST {server}/v1/chat/completions`` per page, not streamed::

    {"model": <the id GET /v1/models reports>,
     "messages": [{"role": "user", "content": [
         {"type": "image_url", "image_url": {"url": "data:image/png;base64,<the page, PNG: lossless>"}},
         {"type": "text", "text": <the prompt without its "<image>" marker and the newline after it>}]}],
     "max_tokens": <--max-tokens, capped to the server's context: see below>,
     "temperature": 0, "skip_special_tokens": false,
     "vllm_xargs": {"ngram_size": N, "window_size": W, "whitelist_token_ids": [128821, 128822]},
     "dsocr": {"mode": <--mode>}}

- N and W are the page's loop guard (``--no-repeat-ngram`` / ``--ngram-window``, else the family's official
  values for the input kind); with the guard off (N = 0) ``vllm_xargs`` is left out (vLLM refuses 0).
  SGLang ignores ``vllm_xargs``: there the loop guard runs only if the server applies one itself.
- ``dsocr`` is dsocr's own extension, sent to ``dsocr serve`` servers only: the resolution mode. Upstream vLLM
  and SGLang fix the resolution to Gundam (at most 6 crops), so a ``--mode`` other than gundam is a one-line
  warning there and the pages are recorded as gundam pages.
- ``max_tokens``: a server that reports its context (``max_model_len`` in ``/v1/models``) refuses requests
  whose prompt plus ``max_tokens`` exceed it, so a page asks for at most ``context - vision tokens -
  PROMPT_TEXT_TOKENS`` new tokens there.

The answer: ``choices[0].message.content`` is the page's text (special tokens kept; a trailing EOS marker, which
older servers leave in, is removed); ``finish_reason`` "stop" is a finished page, "length" one that hit the
token limit (reported as truncated or looped, exactly like a local page: exit 2); ``usage.completion_tokens``
is ``generated_tokens`` (0 when the server does not say). Remote results carry no token ids (``token_ids`` is
empty), so whether a page that hit the limit looped is decided from its text (``text_loops``); a looped page
is sent once more with the retry guard (``PageRequest.retry``), as the local engine does. ``vision_tokens`` is
the family's count for the page in the mode the server ran (dsocr's rule, which allows up to 9 Gundam crops).
A page whose text should stream (``--stream``) gets its whole text at once when it is done.

Servers (``GET /v1/models`` on each at the start): the model id (or its ``root``, a path) names the family
(``family_for_model``; an unknown model is a one-line ``ModelError``, exit 4; servers of different families
too); ``owned_by`` the kind (``vllm``, ``sglang``, ``dsocr``; anything else is taken for vLLM) unless
``--server-kind`` says; ``dsocr.capacity`` (a ``dsocr serve`` extension in the model entry) the pages it takes
at once, unless ``--concurrency`` says (default ``DEFAULT_CONCURRENCY``). No server answering is a
``ServerError``: exit 3, no input processed. A server down at the start is left out and probed later.

Threads: the caller's thread runs ``convert_many`` and hands outcomes back in request order; a loader thread
renders pages in request order and a small pool PNG-encodes them (``engine.prefetch.Prefetcher``); one thread
runs an asyncio event loop with one ``httpx.AsyncClient`` per server, where every page is a task. At most
``capacity`` pages are in flight per server, each sent to the least loaded server in service, and at most
``DELIVERY_FACTOR`` times the total capacity are admitted before the oldest undelivered page is back.
Messages from that loop reach the reporter through the caller's thread.

Fault tolerance (``RetryPolicy``; every delay is configurable, so tests run them short):

- A timeout, a connection error, a 5xx, 408 or 429 answer, or a generation the server aborted is retried, up to
  ``attempts`` tries per page, after an exponential backoff (``base_delay`` doubling up to ``max_delay``), on the
  least loaded server in service that has not failed this page yet, waiting for a slot on one of those while they
  are busy (a server that keeps failing never burns a page's tries while another could take it); only when every
  server in service has failed the page is it retried on those.
- A server failing ``take_out_after`` times in a row is taken out (a warning) and probed with ``GET
  /v1/models`` after ``probe_interval`` seconds, doubling after each failed probe up to
  ``max_probe_interval``; it is back in service (``-v`` says so) as soon as a probe succeeds.
- While no server is in service a page waits up to ``outage_wait`` seconds for one to come back.
- Any other 4xx is the page's failure at once, with the server's message; so is an answer that is not a chat
  completion. A page no server could convert fails with a ``ServerError`` naming the page and the last reason:
  it is never silently lost; the other pages go on.

httpx is imported where a backend is built, never at start-up (``--help`` stays fast).
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import io
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from dsocr_cli import __version__
from dsocr_cli.engine.backend import ConvertOptions, PageOutcome, PageRequest
from dsocr_cli.engine.prefetch import Loaded, Prefetcher
from dsocr_cli.errors import ModelError, ServerError, UsageError
from dsocr_cli.generation.loops import tail_repeats
from dsocr_cli.messages import redact
from dsocr_cli.models.family import GuardDefaults, ModelFamily
from dsocr_cli.models.registry import FAMILIES, expand_model
from dsocr_cli.models.tokenizer import SPECIAL_TOKENS
from dsocr_cli.results import Page, PageResult

if TYPE_CHECKING:
    import httpx

    from dsocr_cli.progress import Reporter

SERVER_KINDS = ("vllm", "sglang", "dsocr")
"""``--server-kind`` values besides ``auto`` (which reads ``owned_by`` from ``/v1/models``)."""
UPSTREAM_KINDS = frozenset({"vllm", "sglang"})
"""Servers that fix the resolution to ``UPSTREAM_MODE`` and take no ``dsocr`` extension."""
UPSTREAM_MODE = "gundam"
"""The resolution upstream vLLM and SGLang run DeepSeek-OCR at (Gundam, at most 6 crops)."""
DEFAULT_CONCURRENCY = 16
"""Pages in flight per server when neither ``--concurrency`` nor the server says."""
DELIVERY_FACTOR = 2
"""Pages admitted at most: this many times the servers' total capacity (finished pages wait behind a slow one)."""
TABLE_CELL_TOKEN_IDS = (128821, 128822)
"""The loop guard's whitelist (tokens that may repeat): the ids of ``<td>`` and ``</td>`` in the official
tokenizer.json (``added_tokens_decoder`` of the official tokenizer_config.json,
``dsocr_cli/testing/official/tokenizer_config.json``), which both families share; the official scripts and
vLLM's recipe send the same two."""
PROMPT_TEXT_TOKENS = 32
"""Upper bound on a prompt's text tokens (the built-in prompts use under 16), for the ``max_tokens`` cap."""
PNG_COMPRESS_LEVEL = 3
"""zlib level of the page PNGs: lossless whatever the level; 3 is about as small as 6 and twice as fast."""
ENCODE_WORKERS = 2
"""Threads PNG-encoding pages (the loader renders them in order on its own thread)."""
POLL_SECONDS = 0.1
"""How often the caller's thread, waiting for the next page, passes on the event loop's messages."""
EOS_TEXT = SPECIAL_TOKENS["eos"]
REPO_ALIASES = {"deepseek-community/DeepSeek-OCR-2": "deepseek-ai/DeepSeek-OCR-2"}
"""Hub repos of a family's weights besides its ``default_repo``: transformers' converted DeepSeek-OCR-2."""
RETRYABLE_STATUS = frozenset({408, 429})
"""4xx answers that say "try again" (request timeout, too many requests): retried like a 5xx."""


@dataclass(frozen=True)
class RetryPolicy:
    """How hard a page is tried and how failing servers are handled (see the module docstring). Seconds."""

    attempts: int = 6
    """Tries per page, over all servers."""
    base_delay: float = 0.5
    max_delay: float = 8.0
    take_out_after: int = 3
    """Failures in a row that take a server out of service."""
    probe_interval: float = 5.0
    max_probe_interval: float = 60.0
    outage_wait: float = 120.0
    """How long a page waits for a server to come back while none is in service."""
    connect_timeout: float = 10.0
    request_timeout: float = 1800.0
    """A page's whole generation (the answer comes when it is done): 8,192 tokens at a slow 5 tokens/s."""
    probe_timeout: float = 10.0
    """``GET /v1/models`` at the start and when probing."""

    def delay(self, retry: int) -> float:
        """Backoff before retry number ``retry`` (0-based): ``base_delay * 2**retry``, at most ``max_delay``."""
        return min(self.max_delay, self.base_delay * 2**retry)


DEFAULT_POLICY = RetryPolicy()
"""What ``RemoteBackend`` uses unless given a policy (read when a backend is built)."""


class Unavailable(Exception):
    """The server could not answer this time (timeout, connection, 5xx): worth retrying elsewhere."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Refused(Exception):
    """The server answered, and the answer is final for this page (a 4xx, or not a chat completion)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Reply:
    """One chat completion, parsed (``parse_reply``)."""

    text: str
    finished: bool
    completion_tokens: int


@dataclass(eq=False)
class Server:
    """One ``--server`` and what is known about it; mutated only on the event loop once a run has started."""

    url: str
    kind: str | None = None
    model: str | None = None
    family: ModelFamily | None = None
    capacity: int = DEFAULT_CONCURRENCY
    context: int | None = None
    """``max_model_len`` as the server reports it (None: not reported, ``max_tokens`` is not capped)."""
    in_service: bool = False
    failures: int = 0
    """Failures in a row (a success resets it)."""
    outages: int = 0
    """Failed probes since it was taken out (each doubles the wait before the next)."""
    next_probe: float = 0.0
    """``time.monotonic()`` of the next probe while out of service."""
    busy: int = 0
    probing: bool = False
    reason: str = ""
    """Why it is out of service."""
    unusable: bool = False
    """It serves another model than the run's: never probed again."""
    taken_out: int = 0
    """Times it was taken out in this run (the first is a warning, later ones ``-v`` lines)."""


def parse_servers(values: Iterable[str]) -> list[str]:
    """``--server`` values -> base URLs, in order, without duplicates.

    Rules: a value may hold several URLs separated by commas (``DSOCR_SERVER=http://a:8000,http://b:8000``);
    each must be ``http://`` or ``https://`` with a host (and a valid port, if any); a trailing ``/`` or ``/v1`` (an OpenAI client's base
    URL) is dropped, as dsocr adds ``/v1/...`` itself. Anything else is a ``UsageError`` (exit 1).
    """
    urls: list[str] = []
    for value in values:
        for part in value.split(","):
            url = part.strip()
            if not url:
                continue
            parts = urlsplit(url)
            try:
                parts.port  # noqa: B018 (raises ValueError for a port that is not a number in range)
            except ValueError:
                parts = parts._replace(netloc="")
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise UsageError(
                    f"--server {redact(url)!r}: expected an http:// or https:// URL, e.g. http://gpu1:8000"
                )
            url = url.rstrip("/").removesuffix("/v1").rstrip("/")
            if url not in urls:
                urls.append(url)
    return urls


def family_for_model(*names: object) -> ModelFamily | None:
    """The family whose weights a served model is, from its id or ``root`` (vLLM: the path it loaded).

    Rule, case-insensitive, first name that matches: the name is a family's hub repo (``default_repo`` or a
    ``REPO_ALIASES`` one), ends with ``/`` + that repo (a local copy, a hub cache folder ``models--owner--name``
    read as ``owner/name``), or its last path part is the repo's name (``unsloth/DeepSeek-OCR``,
    ``/models/DeepSeek-OCR-2``).
    """
    repos = {family.default_repo.lower(): family for family in FAMILIES}
    for alias, repo in REPO_ALIASES.items():
        family = repos.get(repo.lower())
        if family is not None:
            repos[alias.lower()] = family
    for name in names:
        if not isinstance(name, str) or not name.strip():
            continue
        text = name.strip().rstrip("/").lower()
        cached = re.search(r"models--([^/]+?)--([^/]+)", text)
        if cached:
            text = f"{cached[1]}/{cached[2]}"
        for repo, family in repos.items():
            if text == repo or text.endswith("/" + repo):
                return family
        last = text.rsplit("/", 1)[-1]
        for repo, family in repos.items():
            if last == repo.rsplit("/", 1)[-1]:
                return family
    return None


def prompt_text(prompt: str) -> str:
    """The text part of a chat message: the prompt without its ``<image>`` marker and the newline after it
    (vLLM puts the image placeholder before the text, joined by a newline)."""
    before, marker, after = prompt.partition("<image>")
    if not marker:
        return prompt
    return before + after.removeprefix("\n")


def effective_mode(server: Server, mode: str) -> str:
    """The resolution ``server`` runs a page at: ``mode`` on a ``dsocr serve`` server, Gundam on upstream ones."""
    return mode if server.kind == "dsocr" else UPSTREAM_MODE


def png_data_url(page: Page, request: PageRequest | None = None) -> str:
    """The page image as a ``data:image/png;base64,...`` URL (lossless: the server sees dsocr's pixels)."""
    buffer = io.BytesIO()
    page.image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def request_body(
    server: Server, image_url: str, options: ConvertOptions, prompt: str, max_tokens: int
) -> dict[str, Any]:
    """The chat-completion request for one page (the module docstring's wire format); ``options`` resolved
    (``ConvertOptions.with_guard``), ``prompt`` the family's prompt text with its ``<image>`` marker."""
    body: dict[str, Any] = {
        "model": server.model,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": image_url}},
                    {"type": "text", "text": prompt_text(prompt)},
                ],
            }
        ],
        "max_tokens": max_tokens,
        "temperature": 0,
        "skip_special_tokens": False,
    }
    if options.ngram_size:
        body["vllm_xargs"] = {
            "ngram_size": options.ngram_size,
            "window_size": options.ngram_window,
            "whitelist_token_ids": list(TABLE_CELL_TOKEN_IDS),
        }
    if server.kind == "dsocr":
        body["dsocr"] = {"mode": options.mode}
    return body


def parse_reply(payload: Any) -> Reply:
    """A chat completion -> ``Reply``. ``Refused`` when it is not one; ``Unavailable`` when the generation ended
    otherwise than "stop" (EOS) or "length" (the token limit), e.g. aborted by a server shutting down."""
    try:
        choice = payload["choices"][0]
        content = choice["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise Refused("the answer is not a chat completion (no choices[0].message.content)") from None
    if content is None:
        content = ""
    if not isinstance(content, str):
        raise Refused("the answer's message content is not text")
    finish = choice.get("finish_reason") if isinstance(choice, dict) else None
    if finish not in ("stop", "length"):
        raise Unavailable(f"the generation ended with finish_reason {finish!r}")
    usage = payload.get("usage") if isinstance(payload, dict) else None
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 0:
        tokens = 0
    return Reply(text=content.removesuffix(EOS_TEXT), finished=finish == "stop", completion_tokens=tokens)


_TEXT_TOKEN = re.compile(r"\s*(?:<\|?/?[A-Za-z_]+\|?>|[A-Za-z0-9]+|\S)|\s+")
"""Stand-in tokens for ``text_loops``: a special or HTML tag, an ASCII word or number, or one other character
(CJK text has no spaces), each with the whitespace before it, as BPE tokens carry theirs."""


def text_loops(text: str) -> bool:
    """Whether a page's text ends in a model loop: ``generation.loops.tail_repeats`` (the local rule) over
    stand-in tokens (``_TEXT_TOKEN``), since a remote page has no token ids (pure Python: no torch)."""
    ids: dict[str, int] = {}
    return tail_repeats([ids.setdefault(token, len(ids)) for token in _TEXT_TOKEN.findall(text)])


def transport_reason(exc: Exception) -> str:
    """A connection-level failure in a few words."""
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect ({exc})" if str(exc) else "cannot connect"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"connection dropped ({exc})" if str(exc) else "connection dropped"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def http_reason(response: httpx.Response) -> str:
    """``HTTP 503: <the server's message>``: the message from vLLM's, SGLang's, FastAPI's or OpenAI's error
    shapes, else the body's start."""
    message = ""
    try:
        payload = response.json()
    except ValueError:
        message = response.text.strip()
    else:
        error = payload.get("error") if isinstance(payload, dict) else None
        if isinstance(error, dict) and error.get("message"):
            message = str(error["message"])
        elif isinstance(error, str) and error:
            message = error
        elif isinstance(payload, dict) and (payload.get("message") or payload.get("detail")):
            message = str(payload.get("message") or payload.get("detail"))
        else:
            message = str(payload)
    message = " ".join(message.split())[:300]
    return f"HTTP {response.status_code}" + (f": {message}" if message else "")


class RemoteBackend:
    """Converts pages on OpenAI-compatible servers (``dsocr convert --server``); implements ``Backend``."""

    def __init__(
        self,
        servers: list[str],
        api_key: str | None = None,
        concurrency: int | None = None,
        kind: str = "auto",
        reporter: Reporter | None = None,
        *,
        model: str | None = None,
        policy: RetryPolicy | None = None,
    ) -> None:
        """Ask every server for its model (``GET /v1/models``), concurrently.

        ``servers`` are base URLs (``parse_servers``); ``api_key`` is sent as ``Authorization: Bearer`` and never
        shown; ``concurrency`` None takes what each server reports, else ``DEFAULT_CONCURRENCY``; ``kind``
        ``auto`` reads each server's ``owned_by``; ``model`` picks among a server's models when it serves several
        (the first DeepSeek-OCR one otherwise). Raises ``ServerError`` (exit 3) when no server answers,
        ``ModelError`` (exit 4) for a model dsocr does not know or servers of different families, ``UsageError``
        for bad arguments.
        """
        if not servers:
            raise UsageError("--server: no server URL given")
        if kind not in ("auto", *SERVER_KINDS):
            raise UsageError(f"--server-kind {kind!r}: choose from auto, {', '.join(SERVER_KINDS)}")
        if concurrency is not None and concurrency < 1:
            raise UsageError(f"--concurrency {concurrency}: expected a positive number")
        self.servers = [Server(url, capacity=concurrency or DEFAULT_CONCURRENCY) for url in servers]
        self.api_key = api_key
        self.concurrency = concurrency
        self.kind = kind
        self.reporter = reporter
        self.model_hint = model
        self.policy = policy or DEFAULT_POLICY
        self.family: ModelFamily | None = None
        self.mode_warned = False
        connecting = reporter.loading(f"connecting to {len(servers)} server(s) ...") if reporter else nullcontext()
        with connecting:
            asyncio.run(self._discover())
        up = [server for server in self.servers if server.in_service]
        family = up[0].family
        assert family is not None
        self.family = family
        for server in self.servers:
            if server.in_service:
                self._info(
                    f"server {server.url}: {server.kind}, model {server.model}, {server.capacity} page(s) at a time"
                    + (f", context {server.context} tokens" if server.context else "")
                )
            else:
                self._warn(f"server {server.url} is not answering ({server.reason}); it is tried again during the run")
        self.provenance: dict[str, Any] = {
            "model": up[0].model,
            "server": ",".join(sorted({str(server.kind) for server in up})),
        }
        """The served model's id and the server kind(s); never a URL or the key."""

    # ------------------------------------------------------------ Backend

    def guard_defaults(self, kind: str) -> GuardDefaults:
        assert self.family is not None
        return self.family.guard_defaults[kind]

    def convert(self, page: Page, options: ConvertOptions, on_text: Callable[[str], None] | None = None) -> PageResult:
        """One page (guard settings left None are the family's image defaults); a failure raises its error."""
        options = options.with_guard(self.guard_defaults("image"))
        request = PageRequest(page.source, page.number, load=lambda: page, options=options, on_text=on_text)
        (outcome,) = list(self.convert_many([request]))
        if outcome.error is not None:
            raise outcome.error
        assert outcome.result is not None
        return outcome.result

    def convert_many(self, requests: Iterable[PageRequest]) -> Generator[PageOutcome, None, None]:
        """One outcome per request, in request order, each as soon as it and all before it are done."""
        run = _Run(self)
        try:
            with Prefetcher(requests, png_data_url, ENCODE_WORKERS, depth=2 * ENCODE_WORKERS) as feed:
                pending: deque[tuple[Loaded[str], concurrent.futures.Future[PageOutcome] | None]] = deque()
                while True:
                    self._pass_on(run)
                    room = DELIVERY_FACTOR * sum(server.capacity for server in self.servers) - len(pending)
                    if room > 0:
                        for item in feed.take(room, wait=not pending):
                            self._note_mode(item.request.options)
                            pending.append((item, run.submit(item) if item.error is None else None))
                    if not pending:
                        if feed.exhausted:
                            return
                        continue
                    item, future = pending[0]
                    if future is None:
                        outcome = PageOutcome(item.request, error=item.error)
                    else:
                        try:
                            outcome = future.result(timeout=POLL_SECONDS)
                        except concurrent.futures.TimeoutError:
                            continue
                    pending.popleft()
                    self._pass_on(run)
                    if outcome.result is not None and item.request.on_text is not None:
                        item.request.on_text(outcome.result.text)
                    yield outcome
        finally:
            run.close()
            self._pass_on(run)

    # ------------------------------------------------------------ servers

    def client(self, server: Server, probe: bool = False) -> httpx.AsyncClient:
        """An HTTP client for ``server``: its base URL, the key, timeouts for probes or for pages."""
        import httpx

        headers = {"User-Agent": f"dsocr/{__version__}"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        policy = self.policy
        read = policy.probe_timeout if probe else policy.request_timeout
        connections = 2 if probe else server.capacity + 1
        return httpx.AsyncClient(
            base_url=server.url,
            headers=headers,
            timeout=httpx.Timeout(read, connect=min(policy.connect_timeout, read)),
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )

    async def _discover(self) -> None:
        async def one(server: Server) -> None:
            try:
                async with self.client(server, probe=True) as client:
                    await self.describe(server, client)
            except Unavailable as exc:
                server.reason = exc.reason
                server.next_probe = time.monotonic() + self.policy.probe_interval
            else:
                server.in_service = True

        results = await asyncio.gather(*(one(server) for server in self.servers), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        up = [server for server in self.servers if server.in_service]
        if not up:
            reasons = "; ".join(f"{server.url}: {server.reason}" for server in self.servers)
            raise ServerError(f"no server answered, nothing converted ({reasons})")
        families = {server.family for server in up}
        if len(families) > 1:
            served = ", ".join(f"{server.url} serves {server.model}" for server in up)
            raise ModelError(f"the servers serve different models ({served}); give servers of one model")

    async def describe(self, server: Server, client: httpx.AsyncClient) -> None:
        """Learn ``server``'s model, family, kind, capacity and context from ``GET /v1/models``.

        ``Unavailable`` when it does not answer with a model list (or lists none); ``ModelError`` when none of its
        models is a DeepSeek-OCR family dsocr knows, or (once the run's family is known) another family.
        """
        import httpx

        try:
            response = await client.get("/v1/models")
        except httpx.HTTPError as exc:
            raise Unavailable(transport_reason(exc)) from None
        if response.status_code != 200:
            raise Unavailable(f"GET /v1/models: {http_reason(response)}")
        try:
            entries = response.json()["data"]
        except (ValueError, KeyError, TypeError):
            entries = None
        if not isinstance(entries, list):
            raise Unavailable("GET /v1/models: not an OpenAI-compatible model list")
        models = [entry for entry in entries if isinstance(entry, dict) and isinstance(entry.get("id"), str)]
        if not models:
            raise Unavailable("it serves no model yet")
        known = [(entry, family_for_model(entry["id"], entry.get("root"))) for entry in models]
        recognised = [(entry, family) for entry, family in known if family is not None]
        if not recognised:
            ids = ", ".join(repr(entry["id"]) for entry in models)
            runs = ", ".join(family.description for family in FAMILIES)
            raise ModelError(f"server {server.url} serves {ids}, not a model dsocr runs ({runs})")
        wanted = family_for_model(expand_model(self.model_hint)) if self.model_hint else None
        if self.family is not None:
            wanted = self.family
        entry, family = next(((e, f) for e, f in recognised if f is wanted), recognised[0])
        if self.family is not None and family is not self.family:
            raise ModelError(f"server {server.url} serves {entry['id']}, not {self.family.description} as the others")
        server.model = entry["id"]
        server.family = family
        owned_by = str(entry.get("owned_by") or "").lower()
        server.kind = self.kind if self.kind != "auto" else (owned_by if owned_by in SERVER_KINDS else "vllm")
        extension = entry.get("dsocr")
        reported = extension.get("capacity") if isinstance(extension, dict) else None
        if not isinstance(reported, int) or isinstance(reported, bool) or reported < 1:
            reported = None
        server.capacity = self.concurrency or reported or DEFAULT_CONCURRENCY
        context = entry.get("max_model_len")
        server.context = context if isinstance(context, int) and not isinstance(context, bool) and context > 0 else None

    # ------------------------------------------------------------ messages (the caller's thread)

    def _info(self, message: str) -> None:
        if self.reporter is not None:
            self.reporter.info(message)

    def _warn(self, message: str) -> None:
        if self.reporter is not None:
            self.reporter.warn(message)

    def _pass_on(self, run: _Run) -> None:
        while True:
            try:
                level, message = run.messages.get_nowait()
            except queue.Empty:
                return
            (self._warn if level == "warn" else self._info)(message)

    def _note_mode(self, options: ConvertOptions) -> None:
        """Once per backend: a ``--mode`` other than gundam is ignored by upstream servers; say so."""
        if self.mode_warned or options.mode == UPSTREAM_MODE:
            return
        upstream = [server for server in self.servers if server.kind in UPSTREAM_KINDS]
        if upstream:
            self.mode_warned = True
            kinds = "/".join(sorted({str(server.kind) for server in upstream}))
            self._warn(
                f"--mode {options.mode} is ignored by the {kinds} server(s) {', '.join(s.url for s in upstream)}: "
                f"upstream vLLM and SGLang fix the resolution to {UPSTREAM_MODE} (at most 6 crops)"
            )


class _Run:
    """One ``convert_many`` call's event loop (on its own thread), HTTP clients and server bookkeeping."""

    def __init__(self, backend: RemoteBackend) -> None:
        self.backend = backend
        self.policy = backend.policy
        self.servers = backend.servers
        self.messages: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
        self.clients: dict[Server, httpx.AsyncClient] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="dsocr-remote", daemon=True)
        self.thread.start()
        self.wakeup: asyncio.Event | None = None
        self.prober = asyncio.run_coroutine_threadsafe(self._probe_forever(), self.loop)

    def submit(self, item: Loaded[str]) -> concurrent.futures.Future[PageOutcome]:
        return asyncio.run_coroutine_threadsafe(self.convert_page(item), self.loop)

    def close(self) -> None:
        """Cancel what is still running, close the clients, stop the loop (a request stuck past this is dropped
        with its daemon thread)."""

        async def shutdown() -> None:
            current = asyncio.current_task()
            tasks = [task for task in asyncio.all_tasks() if task is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for client in self.clients.values():
                await client.aclose()

        if self.loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(timeout=10)
            except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError, RuntimeError):
                pass
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        if not self.thread.is_alive():
            self.loop.close()

    def say(self, level: str, message: str) -> None:
        self.messages.put((level, message))

    def client(self, server: Server) -> httpx.AsyncClient:
        if server not in self.clients:
            self.clients[server] = self.backend.client(server)
        return self.clients[server]

    def notify(self) -> None:
        """Wake every page waiting for a server slot (they look again)."""
        if self.wakeup is not None:
            self.wakeup.set()
        self.wakeup = asyncio.Event()

    # ------------------------------------------------------------ one page

    async def convert_page(self, item: Loaded[str]) -> PageOutcome:
        request, page, image_url = item.request, item.page, item.prepared
        assert page is not None and image_url is not None
        label = f"{request.source}: page {request.number}"
        family = self.backend.family
        assert family is not None
        try:
            options = request.options
            if options.mode not in family.modes and any(server.kind == "dsocr" for server in self.servers):
                family.mode(options.mode)  # the family's UsageError, as a local run gives
            started = time.perf_counter()
            result = await self.generate(label, page, image_url, options, started, retried=False)
            if not result.finished and result.looped and request.retry is not None:
                result = await self.generate(label, page, image_url, request.retry, started, retried=True)
            return PageOutcome(request, result=result)
        except Exception as exc:  # a DsocrError, or a bug: the page fails with it, the run goes on
            return PageOutcome(request, error=exc)

    async def generate(
        self, label: str, page: Page, image_url: str, options: ConvertOptions, started: float, retried: bool
    ) -> PageResult:
        family = self.backend.family
        assert family is not None
        prompt = family.resolve_prompt(options.prompt).text
        width, height = page.image.size

        def body(server: Server) -> dict[str, Any]:
            mode = effective_mode(server, options.mode)
            max_tokens = options.max_new_tokens
            if server.context is not None:
                room = server.context - family.modes[mode].image_tokens(width, height) - PROMPT_TEXT_TOKENS
                max_tokens = max(1, min(max_tokens, room))
            return request_body(server, image_url, options, prompt, max_tokens)

        server, reply = await self.dispatch(label, body)
        looped = not reply.finished and await asyncio.to_thread(text_loops, reply.text)
        mode = effective_mode(server, options.mode)
        return PageResult(
            page=page,
            text=reply.text,
            mode=mode,
            prompt=prompt,
            vision_tokens=family.modes[mode].image_tokens(width, height),
            generated_tokens=reply.completion_tokens,
            finished=reply.finished,
            seconds=time.perf_counter() - started,
            retried=retried,
            looped=looped,
            token_ids=[],
        )

    async def dispatch(self, label: str, body: Callable[[Server], dict[str, Any]]) -> tuple[Server, Reply]:
        """Send the page until a server answers it (the module docstring's retry rules); ``ServerError`` else."""
        tried: set[Server] = set()
        reason = ""
        for attempt in range(self.policy.attempts):
            if attempt:
                await asyncio.sleep(self.policy.delay(attempt - 1))
            server = await self.acquire(tried)
            if server is None:
                outage = f"no server in service for {self.policy.outage_wait:g} s"
                reason = f"{outage}; last: {reason}" if reason else outage
                break
            try:
                reply = await self.post(server, body(server))
            except Unavailable as exc:
                self.release(server, failed=exc.reason, label=label)
                tried.add(server)
                reason = f"{server.url}: {exc.reason}"
                continue
            except Refused as exc:
                self.release(server)
                raise ServerError(f"{label}: {server.url} refused it: {exc.reason}") from None
            except BaseException:
                self.release(server, counted=False)
                raise
            self.release(server)
            return server, reply
        raise ServerError(f"{label}: no server could convert it ({reason})")

    async def post(self, server: Server, body: dict[str, Any]) -> Reply:
        import httpx

        try:
            response = await self.client(server).post("/v1/chat/completions", json=body)
        except httpx.HTTPError as exc:
            raise Unavailable(transport_reason(exc)) from None
        status = response.status_code
        if status >= 500 or status in RETRYABLE_STATUS:
            raise Unavailable(http_reason(response))
        if status != 200:
            raise Refused(http_reason(response))
        try:
            payload = response.json()
        except ValueError:
            raise Refused("the answer is not JSON") from None
        return parse_reply(payload)

    # ------------------------------------------------------------ server slots and health

    async def acquire(self, avoid: set[Server]) -> Server | None:
        """A slot on the least loaded server in service that is not in ``avoid`` (the servers that failed this
        page), waiting while those are all busy; only when every server in service is in ``avoid``, on the least
        loaded of them. Waits up to ``outage_wait`` while none is in service (then None)."""
        deadline: float | None = None
        while True:
            serving = [server for server in self.servers if server.in_service]
            candidates = [server for server in serving if server not in avoid] or serving
            free = [server for server in candidates if server.busy < server.capacity]
            if free:
                server = min(free, key=lambda s: s.busy / s.capacity)
                server.busy += 1
                return server
            if self.wakeup is None:
                self.notify()
            assert self.wakeup is not None
            event = self.wakeup
            if any(server.in_service for server in self.servers):
                await event.wait()
                continue
            now = time.monotonic()
            deadline = deadline if deadline is not None else now + self.policy.outage_wait
            if now >= deadline:
                return None
            try:
                await asyncio.wait_for(event.wait(), deadline - now)
            except asyncio.TimeoutError:
                return None

    def release(self, server: Server, failed: str | None = None, label: str = "", counted: bool = True) -> None:
        """Give the slot back; count a success (resets the failures) or a failure (``failed``: the reason),
        taking the server out after ``take_out_after`` in a row."""
        server.busy -= 1
        if counted and failed is None:
            server.failures = 0
        elif counted and failed is not None:
            server.failures += 1
            if server.in_service and server.failures >= self.policy.take_out_after:
                server.in_service = False
                server.outages = 0
                server.reason = failed
                server.next_probe = time.monotonic() + self.policy.probe_interval
                left = any(other.in_service for other in self.servers)
                server.taken_out += 1
                self.say(
                    "warn" if server.taken_out == 1 else "info",
                    f"server {server.url} taken out after {server.failures} failures in a row (last: {failed}); "
                    + (
                        "its pages go to the other servers"
                        if left
                        else f"no server left: pages wait up to {self.policy.outage_wait:g} s for one to come back"
                    ),
                )
            else:
                self.say("info", f"{label}: {server.url} failed ({failed}); retrying")
        self.notify()

    async def _probe_forever(self) -> None:
        """Probe servers out of service when their time comes (``RetryPolicy.probe_interval``, doubling)."""
        while True:
            await asyncio.sleep(max(0.01, min(1.0, self.policy.probe_interval / 4)))
            now = time.monotonic()
            for server in self.servers:
                if not server.in_service and not server.unusable and not server.probing and now >= server.next_probe:
                    server.probing = True
                    task = asyncio.create_task(self._probe(server))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)

    async def _probe(self, server: Server) -> None:
        policy = self.policy
        try:
            async with self.backend.client(server, probe=True) as client:
                await self.backend.describe(server, client)
        except Unavailable as exc:
            server.outages += 1
            server.reason = exc.reason
            wait = min(policy.max_probe_interval, policy.probe_interval * 2**server.outages)
            server.next_probe = time.monotonic() + wait
            return
        except ModelError as exc:
            server.unusable = True
            self.say("warn", f"{exc}; it is not used")
            return
        finally:
            server.probing = False
        server.in_service = True
        server.failures = 0
        self.say("info", f"server {server.url} back in service ({server.kind}, model {server.model})")
        self.notify()


__all__ = [
    "DEFAULT_CONCURRENCY",
    "RemoteBackend",
    "RetryPolicy",
    "SERVER_KINDS",
    "TABLE_CELL_TOKEN_IDS",
    "family_for_model",
    "parse_reply",
    "parse_servers",
    "request_body",
    "text_loops",
]
