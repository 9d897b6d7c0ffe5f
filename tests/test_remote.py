"""``dsocr convert --server URL``: pages go to OpenAI-compatible servers, outputs are written as in local mode.

The servers here are fakes that answer as vLLM's OpenAI server does (``GET /v1/models``, ``POST
/v1/chat/completions``, not streamed), served by uvicorn on 127.0.0.1 in a background thread. Each records
what it was sent and can be told to fail (503 answers, dropped connections, 4xx, a model list that is down).
The response bodies have vLLM's shape (vLLM 0.11's ``ChatCompletionResponse``; written from its protocol
models, since no vLLM runs where dsocr is tested).
"""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from dsocr_cli.engine import remote
from dsocr_cli.engine.remote import RetryPolicy, family_for_model, parse_reply, parse_servers, text_loops
from dsocr_cli.errors import ExitCode, UsageError
from dsocr_cli.models.v1.family import FAMILY as V1
from dsocr_cli.models.v2.family import FAMILY as V2
from tests.cli_support import Run, make_image, make_pdf

TESTING = Path(__file__).resolve().parents[1] / "dsocr_cli" / "testing"
FAST_POLICY = RetryPolicy(
    attempts=4,
    base_delay=0.01,
    max_delay=0.05,
    take_out_after=3,
    probe_interval=0.05,
    max_probe_interval=0.2,
    outage_wait=0.5,
    connect_timeout=2.0,
    request_timeout=10.0,
    probe_timeout=2.0,
)
PAGE_TEXT = (
    "<|ref|>title<|/ref|><|det|>[[80, 40, 920, 90]]<|/det|>\n# FAKE-OCR heading\n\n"
    "<|ref|>text<|/ref|><|det|>[[80, 110, 920, 200]]<|/det|>\nFAKE-OCR body of a {width}x{height} page.\n\n"
)
LOOP_TEXT = "# A table\n\n" + "<table><tr><td>1</td><td></td><td></td><td></td></tr>" * 400


def vllm_completion(model: str, text: str, finish_reason: str, completion_tokens: int) -> dict[str, Any]:
    """A non-streamed chat completion as vLLM's OpenAI server sends it."""
    return {
        "id": "chatcmpl-6f0e1a8c2b3d4e5f",
        "object": "chat.completion",
        "created": 1761264000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": text,
                    "refusal": None,
                    "annotations": None,
                    "audio": None,
                    "function_call": None,
                    "tool_calls": [],
                    "reasoning_content": None,
                },
                "logprobs": None,
                "finish_reason": finish_reason,
                "stop_reason": None,
            }
        ],
        "service_tier": None,
        "system_fingerprint": None,
        "usage": {
            "prompt_tokens": 921,
            "total_tokens": 921 + completion_tokens,
            "completion_tokens": completion_tokens,
            "prompt_tokens_details": None,
        },
        "prompt_logprobs": None,
        "kv_transfer_params": None,
    }


# ---------------------------------------------------------------- the fake server


@dataclass
class FakeServer:
    """What the fake answers; change the fields while it runs. ``url`` is set once it listens."""

    owned_by: str = "vllm"
    model: str = "deepseek-ai/DeepSeek-OCR"
    root: str | None = "deepseek-ai/DeepSeek-OCR"
    max_model_len: int | None = 8192
    text: str = PAGE_TEXT
    finish_reason: str = "stop"
    completion_tokens: int = 57
    delay: float = 0.0
    fail_after: int | None = None
    """Answer this many chat requests, then fail every later one as ``failure`` says."""
    failure: str = "503"
    """``503``, ``drop`` (the connection closes mid-answer) or ``400`` (a vLLM BadRequestError)."""
    models_down: bool = False
    """``GET /v1/models`` answers 503 (the server is starting or broken)."""
    chats: list[dict[str, Any]] = field(default_factory=list)
    """Bodies of the chat requests answered with a completion."""
    failed: int = 0
    headers: list[dict[str, str]] = field(default_factory=list)
    url: str = ""

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        assert scope["type"] == "http"
        self.headers.append({k.decode(): v.decode() for k, v in scope["headers"]})
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        if scope["method"] == "GET" and path == "/v1/models":
            if self.models_down:
                return await self.reply(send, 503, {"object": "error", "message": "starting", "code": 503})
            card: dict[str, Any] = {"id": self.model, "object": "model", "created": 0, "owned_by": self.owned_by}
            if self.root is not None:
                card["root"] = self.root
            if self.max_model_len is not None:
                card["max_model_len"] = self.max_model_len
            return await self.reply(send, 200, {"object": "list", "data": [card]})
        if scope["method"] == "POST" and path == "/v1/chat/completions":
            return await self.chat(json.loads(body), send)
        await self.reply(send, 404, {"detail": "Not Found"})

    async def chat(self, request: dict[str, Any], send: Callable[..., Any]) -> None:
        import asyncio

        if self.fail_after is not None and len(self.chats) >= self.fail_after:
            self.failed += 1
            if self.failure == "drop":
                await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"999")]})
                await send({"type": "http.response.body", "body": b'{"id"', "more_body": True})
                raise ConnectionAbortedError("the fake drops the connection")
            if self.failure == "400":
                message = "This model's maximum context length is 8192 tokens. However, you requested 9113 tokens."
                error = {"object": "error", "message": message, "type": "BadRequestError", "param": None, "code": 400}
                return await self.reply(send, 400, error)
            return await self.reply(send, 503, {"object": "error", "message": "overloaded", "code": 503})
        self.chats.append(request)
        if self.delay:
            await asyncio.sleep(self.delay)
        width, height = page_image(request).size
        text = self.text.format(width=width, height=height) if "{width}" in self.text else self.text
        await self.reply(send, 200, vllm_completion(self.model, text, self.finish_reason, self.completion_tokens))

    @staticmethod
    async def reply(send: Callable[..., Any], status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})


def page_image(request: dict[str, Any]) -> Image.Image:
    """The page a chat request carries (its data URL decoded)."""
    url = request["messages"][0]["content"][0]["image_url"]["url"]
    prefix = "data:image/png;base64,"
    assert url.startswith(prefix)
    image = Image.open(io.BytesIO(base64.b64decode(url[len(prefix) :])))
    assert image.format == "PNG"
    return image


@pytest.fixture
def serve() -> Iterator[Callable[..., FakeServer]]:
    """Start fake servers (keyword arguments: ``FakeServer`` fields); all are stopped after the test."""
    import uvicorn

    running: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(**fields: Any) -> FakeServer:
        fake = FakeServer(**fields)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        config = uvicorn.Config(fake, log_level="critical", access_log=False, lifespan="off")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "the fake server did not start"
            time.sleep(0.01)
        fake.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        running.append((server, thread))
        return fake

    yield start
    for server, _ in running:
        server.should_exit = True
    for _, thread in running:
        thread.join(timeout=5)


def nothing_listening() -> str:
    """A URL where connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Backoffs and probes in tens of milliseconds (``RemoteBackend`` reads ``remote.DEFAULT_POLICY``)."""
    monkeypatch.setattr(remote, "DEFAULT_POLICY", FAST_POLICY)


@pytest.fixture(autouse=True)
def no_local_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run with --server must never load a local model."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a local model was loaded")

    monkeypatch.setattr("dsocr_cli.engine.factory.local_backend", refuse)


def ok(run: Run) -> Run:
    assert run.code == 0, run.stderr
    return run


# ---------------------------------------------------------------- (a) what dsocr sends


def test_an_image_is_sent_as_vllms_recipe_sends_it(dsocr, serve, tmp_path: Path) -> None:
    fake = serve()
    make_image(tmp_path / "page.png", size=(300, 400))
    ok(dsocr("convert", "page.png", "--server", fake.url, "--max-tokens", "1000"))
    (body,) = fake.chats
    assert list(body) == ["model", "messages", "max_tokens", "temperature", "skip_special_tokens", "vllm_xargs"]
    assert body["model"] == "deepseek-ai/DeepSeek-OCR"
    (message,) = body["messages"]
    assert message["role"] == "user"
    image_part, text_part = message["content"]
    assert image_part["type"] == "image_url" and list(image_part["image_url"]) == ["url"]
    assert text_part == {"type": "text", "text": "<|grounding|>Convert the document to markdown."}
    sent = page_image(body)
    expected = Image.open(tmp_path / "page.png").convert("RGB")
    assert sent.size == (300, 400) and sent.convert("RGB").tobytes() == expected.tobytes()
    assert body["max_tokens"] == 1000
    assert body["temperature"] == 0 and body["skip_special_tokens"] is False
    assert body["vllm_xargs"] == {"ngram_size": 30, "window_size": 90, "whitelist_token_ids": [128821, 128822]}


def test_pdf_pages_are_sent_with_the_pdf_guard_and_their_rendered_pixels(dsocr, serve, tmp_path: Path) -> None:
    from dsocr_cli.inputs import discover
    from dsocr_cli.inputs.pages import open_document

    fake = serve()
    make_pdf(tmp_path / "doc.pdf", pages=2)
    ok(dsocr("convert", "doc.pdf", "--server", fake.url, "--prompt", "free"))
    assert len(fake.chats) == 2
    (source,) = discover([str(tmp_path / "doc.pdf")])
    document = open_document(source, dpi=144)
    rendered = list(document.pages())
    document.close()
    sent = sorted(page_image(body).convert("RGB").tobytes() for body in fake.chats)  # any order on the wire
    assert sent == sorted(page.image.tobytes() for page in rendered)
    for body in fake.chats:
        assert body["vllm_xargs"] == {"ngram_size": 20, "window_size": 50, "whitelist_token_ids": [128821, 128822]}
        assert body["messages"][0]["content"][1]["text"] == "Free OCR."
        # The server's context (8,192 tokens) holds the page's vision tokens, the prompt and max_tokens.
        width, height = page_image(body).size
        assert body["max_tokens"] == 8192 - V1.modes["gundam"].image_tokens(width, height) - remote.PROMPT_TEXT_TOKENS


def test_guard_settings_and_an_unlimited_context_go_through_as_given(dsocr, serve, tmp_path: Path) -> None:
    fake = serve(max_model_len=None)
    make_image(tmp_path / "page.png")
    ok(dsocr("convert", "page.png", "--server", fake.url, "--no-repeat-ngram", "12", "--ngram-window", "64"))
    assert fake.chats[0]["vllm_xargs"]["ngram_size"] == 12 and fake.chats[0]["vllm_xargs"]["window_size"] == 64
    assert fake.chats[0]["max_tokens"] == 8192
    ok(dsocr("convert", "page.png", "--server", fake.url, "--no-repeat-ngram", "0"))
    assert "vllm_xargs" not in fake.chats[1]  # the guard off: vLLM refuses ngram_size 0


def test_the_whitelist_is_the_official_ids_of_the_table_cell_tokens() -> None:
    added = json.loads((TESTING / "official" / "tokenizer_config.json").read_text())["added_tokens_decoder"]
    ids = {entry["content"]: int(token_id) for token_id, entry in added.items()}
    assert remote.TABLE_CELL_TOKEN_IDS == (ids["<td>"], ids["</td>"])


def test_a_dsocr_server_gets_the_mode_and_no_warning(dsocr, serve, tmp_path: Path) -> None:
    fake = serve(owned_by="dsocr")
    make_image(tmp_path / "page.png")
    run = ok(dsocr("convert", "page.png", "--server", fake.url, "--mode", "tiny", "-f", "json"))
    assert fake.chats[0]["dsocr"] == {"mode": "tiny"}
    assert "warning" not in run.stderr
    (page,) = json.loads(run.stdout)["pages"]
    assert page["mode"] == "tiny"
    assert page["vision_tokens"] == V1.modes["tiny"].image_tokens(300, 400)


# ---------------------------------------------------------------- (b) what dsocr makes of the answers


def test_recorded_vllm_answers_parse_into_text_finish_and_tokens() -> None:
    stop = parse_reply(vllm_completion("m", "# Title\n\ntext<｜end▁of▁sentence｜>", "stop", 12))
    assert (stop.text, stop.finished, stop.completion_tokens) == ("# Title\n\ntext", True, 12)
    length = parse_reply(vllm_completion("m", "cut off mid", "length", 8192))
    assert (length.text, length.finished, length.completion_tokens) == ("cut off mid", False, 8192)
    with pytest.raises(remote.Refused):
        parse_reply({"object": "error", "message": "nope"})
    with pytest.raises(remote.Unavailable):
        parse_reply(vllm_completion("m", "", "abort", 0))


def test_a_page_cut_off_at_the_token_limit_is_truncated_exit_2(dsocr, serve, tmp_path: Path) -> None:
    prose = "Some long prose " + " ".join(f"where sentence {n} tells of item {n * 7}." for n in range(40))
    fake = serve(finish_reason="length", completion_tokens=300, text=prose)
    make_image(tmp_path / "page.png")
    run = dsocr("convert", "page.png", "--server", fake.url, "--max-tokens", "300")
    assert run.code == ExitCode.PARTIAL_FAILURE
    assert "warning: page.png: page 1 truncated at 300 tokens (--max-tokens)" in run.stderr
    assert "Some long prose" in run.stdout
    assert len(fake.chats) == 1  # a long page is not retried


def test_a_page_that_loops_is_retried_once_with_the_stronger_guard(dsocr, serve, tmp_path: Path) -> None:
    fake = serve(finish_reason="length", completion_tokens=8192, text=LOOP_TEXT)
    make_image(tmp_path / "page.png")
    run = dsocr("convert", "page.png", "--server", fake.url, "-v", "-f", "json")
    assert run.code == ExitCode.PARTIAL_FAILURE
    assert [body["vllm_xargs"]["ngram_size"] for body in fake.chats] == [30, 10]
    assert [body["vllm_xargs"]["window_size"] for body in fake.chats] == [90, 120]
    assert "page 1 looped; retried with a stronger guard" in run.stderr
    (page,) = json.loads(run.stdout)["pages"]
    assert page["finished"] is False


def test_loops_are_told_from_long_text_without_token_ids() -> None:
    assert text_loops(LOOP_TEXT)
    assert text_loops("Intro.\n" + "the same sentence again and again. " * 200)
    prose = " ".join(f"Sentence {n} says something new about item {n * 7}." for n in range(300))
    assert not text_loops(prose)
    assert not text_loops("short")


# ---------------------------------------------------------------- (c) end to end, every format


@pytest.mark.parametrize("output_format", ["markdown", "html", "text", "json", "raw"])
def test_convert_on_a_server_writes_every_format(dsocr, serve, tmp_path: Path, output_format: str) -> None:
    fake = serve()
    make_image(tmp_path / "page.png")
    make_pdf(tmp_path / "doc.pdf", pages=2)
    ok(dsocr("convert", "page.png", "doc.pdf", "--server", fake.url, "-o", "out", "-f", output_format))
    outputs = sorted(path for path in (tmp_path / "out").iterdir() if not path.name.startswith("."))
    assert len(outputs) == 2, outputs
    for path in outputs:
        text = path.read_text()
        assert "FAKE-OCR" in text, path
    assert len(fake.chats) == 3
    if output_format == "json":
        doc = json.loads((tmp_path / "out" / "doc.json").read_text())
        assert [page["number"] for page in doc["pages"]] == [1, 2]
        assert doc["dsocr"]["server"] == "vllm" and doc["dsocr"]["model"] == "deepseek-ai/DeepSeek-OCR"
        assert all(page["generated_tokens"] == 57 and page["finished"] for page in doc["pages"])
    if output_format == "markdown":
        text = (tmp_path / "out" / "doc.md").read_text()
        assert "<!-- page 1 -->" in text and "<!-- page 2 -->" in text
        assert "server=vllm" in text and "# FAKE-OCR heading" in text and "<|ref|>" not in text


def test_streamed_pages_print_their_text_in_order(dsocr, serve, tmp_path: Path) -> None:
    fake = serve(text="FAKE-OCR text of a {width}x{height} page")
    make_image(tmp_path / "page.png", size=(320, 200))
    run = ok(dsocr("convert", "page.png", "--server", fake.url, "--stream", "-f", "raw"))
    assert run.stdout == "FAKE-OCR text of a 320x200 page\n"


def test_stopping_a_run_early_cancels_the_pages_in_flight(serve, tmp_path: Path) -> None:
    from dsocr_cli.engine.backend import ConvertOptions, PageRequest
    from dsocr_cli.results import Page

    fake = serve(delay=0.3)
    backend = remote.RemoteBackend([fake.url], concurrency=2)
    assert backend.provenance == {"model": "deepseek-ai/DeepSeek-OCR", "server": "vllm"}
    page = Page("page.png", 1, Image.new("RGB", (64, 64), "white"))
    options = ConvertOptions().with_guard(backend.guard_defaults("image"))
    requests = [PageRequest("page.png", n, load=lambda: page, options=options) for n in range(1, 21)]
    outcomes = backend.convert_many(requests)
    first = next(outcomes)
    assert first.result is not None and first.request.number == 1 and first.result.token_ids == []
    started = time.perf_counter()
    outcomes.close()
    assert time.perf_counter() - started < 2
    assert not [thread for thread in threading.enumerate() if thread.name == "dsocr-remote"]
    assert len(fake.chats) <= 4  # 2 at a time: the first two, and at most the two after them


def test_servers_come_from_the_environment_and_the_config_file(dsocr, serve, tmp_path: Path, monkeypatch) -> None:
    first, second = serve(), serve()
    make_pdf(tmp_path / "doc.pdf", pages=4)
    monkeypatch.setenv("DSOCR_SERVER", f"{first.url},{second.url}/v1")
    ok(dsocr("convert", "doc.pdf", "--concurrency", "1"))
    assert first.chats and second.chats and len(first.chats) + len(second.chats) == 4
    monkeypatch.delenv("DSOCR_SERVER")
    config = tmp_path / "no-config-home" / "dsocr" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'server = ["{first.url}"]\n')
    ok(dsocr("convert", "doc.pdf"))
    assert len(first.chats) + len(second.chats) == 8


# ---------------------------------------------------------------- (d) fault tolerance


@pytest.mark.parametrize("failure", ["503", "drop"])
def test_a_failing_server_is_taken_out_and_every_page_converted(dsocr, serve, tmp_path: Path, failure: str) -> None:
    flaky = serve(fail_after=2, failure=failure, delay=0.02)
    steady = serve(delay=0.02)
    make_pdf(tmp_path / "doc.pdf", pages=10)
    run = ok(dsocr("convert", "doc.pdf", "--server", flaky.url, "--server", steady.url, "--concurrency", "2", "-v"))
    assert run.stdout.count("FAKE-OCR heading") == 10
    assert [f"<!-- page {n} -->" in run.stdout for n in range(1, 11)] == [True] * 10
    assert f"warning: server {flaky.url} taken out after 3 failures in a row" in run.stderr
    assert f"{flaky.url} failed (" in run.stderr and "retrying" in run.stderr
    assert flaky.failed >= 3 and len(flaky.chats) + len(steady.chats) == 10


def test_a_retry_waits_for_a_busy_server_rather_than_return_to_the_one_that_failed_it(
    dsocr, serve, tmp_path: Path
) -> None:
    # One slot per server: while the slow server holds a page, the failing one is the only free slot; its
    # probe (GET /v1/models) keeps succeeding, so it keeps coming back in service. CI once lost a page so.
    failing = serve(fail_after=0, failure="drop")
    slow = serve(delay=0.4)
    make_pdf(tmp_path / "doc.pdf", pages=3)
    run = ok(dsocr("convert", "doc.pdf", "--server", failing.url, "--server", slow.url, "--concurrency", "1", "-v"))
    assert run.stdout.count("FAKE-OCR heading") == 3 and len(slow.chats) == 3
    assert failing.failed >= 1 and "no server could convert" not in run.stderr


def test_a_server_down_at_the_start_is_probed_back_in(dsocr, serve, tmp_path: Path) -> None:
    late = serve(models_down=True)
    steady = serve(delay=0.05)
    make_pdf(tmp_path / "doc.pdf", pages=12)

    def heal() -> None:
        while not steady.chats:
            time.sleep(0.01)
        late.models_down = False

    threading.Thread(target=heal, daemon=True).start()
    run = ok(dsocr("convert", "doc.pdf", "--server", late.url, "--server", steady.url, "--concurrency", "1", "-v"))
    assert f"warning: server {late.url} is not answering (GET /v1/models: HTTP 503: starting)" in run.stderr
    assert f"server {late.url} back in service" in run.stderr
    assert late.chats and len(late.chats) + len(steady.chats) == 12


def test_all_servers_down_is_one_error_line_and_exit_3(dsocr, tmp_path: Path) -> None:
    make_image(tmp_path / "page.png")
    first, second = nothing_listening(), nothing_listening()
    with_password = second.replace("http://", "http://user:hunter2@")
    run = dsocr("convert", "page.png", "--server", first, "--server", with_password)
    assert run.code == ExitCode.ALL_FAILED == 3
    (line,) = run.stderr.splitlines()
    assert line.startswith("error: no server answered, nothing converted (")
    assert f"{first}: cannot connect" in line
    assert second.replace("http://", "http://***@") + ": cannot connect" in line and "hunter2" not in line
    assert run.stdout == ""


def test_a_page_no_server_can_convert_fails_alone_naming_it(dsocr, serve, tmp_path: Path) -> None:
    broken = serve(fail_after=0)
    make_image(tmp_path / "page.png")
    run = dsocr("convert", "page.png", "--server", broken.url)
    assert run.code == ExitCode.ALL_FAILED
    (error,) = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert error.startswith("error: page.png: page 1: no server could convert it (")
    assert error.endswith("HTTP 503: overloaded)")
    assert f"warning: server {broken.url} taken out after 3 failures in a row" in run.stderr
    assert broken.failed == FAST_POLICY.attempts  # its model list still answers: probed back in for the last try


def test_a_4xx_answer_is_not_retried_and_fails_the_page_with_the_servers_message(dsocr, serve, tmp_path) -> None:
    strict = serve(fail_after=0, failure="400")
    make_image(tmp_path / "page.png")
    make_image(tmp_path / "other.png", seed=1)
    run = dsocr("convert", "page.png", "other.png", "--server", strict.url, "-o", "out")
    assert run.code == ExitCode.ALL_FAILED
    assert strict.failed == 2  # one request per page
    assert (
        f"error: page.png: page 1: {strict.url} refused it: HTTP 400: This model's maximum context length is 8192"
        in run.stderr
    )


def test_an_unknown_model_is_one_error_line_and_exit_4(dsocr, serve, tmp_path: Path) -> None:
    other = serve(model="Qwen/Qwen2.5-VL-7B-Instruct", root="Qwen/Qwen2.5-VL-7B-Instruct")
    make_image(tmp_path / "page.png")
    run = dsocr("convert", "page.png", "--server", other.url)
    assert run.code == ExitCode.MODEL
    (line,) = run.stderr.splitlines()
    assert line.startswith(f"error: server {other.url} serves 'Qwen/Qwen2.5-VL-7B-Instruct', not a model dsocr runs")


def test_bad_server_urls_are_usage_errors(dsocr, tmp_path: Path) -> None:
    make_image(tmp_path / "page.png")
    run = dsocr("convert", "page.png", "--server", "gpu1:8000")
    assert run.code == ExitCode.USAGE
    assert "expected an http:// or https:// URL" in run.stderr
    assert parse_servers(["http://a:8000/v1/, http://b:8000/", "http://a:8000"]) == ["http://a:8000", "http://b:8000"]
    for bad in ("ftp://a", "http://a:port", "http://:8000"):
        with pytest.raises(UsageError):
            parse_servers([bad])


@pytest.mark.parametrize(
    ("names", "family"),
    [
        (("deepseek-ai/DeepSeek-OCR",), V1),
        (("ocr", "/models/hub/models--deepseek-ai--DeepSeek-OCR/snapshots/0123abcd"), V1),
        (("unsloth/DeepSeek-OCR",), V1),
        (("deepseek-ai/DeepSeek-OCR-2",), V2),
        (("my-served-name", "deepseek-community/DeepSeek-OCR-2"), V2),
        (("/data/DeepSeek-OCR-2/",), V2),
        (("Qwen/Qwen2.5-VL-7B-Instruct", None), None),
    ],
)
def test_the_family_is_read_from_the_served_model_id_or_root(names: tuple[Any, ...], family: Any) -> None:
    assert family_for_model(*names) is family


def test_a_v2_server_gets_v2s_guard(dsocr, serve, tmp_path: Path) -> None:
    fake = serve(model="deepseek-ai/DeepSeek-OCR-2", root="deepseek-ai/DeepSeek-OCR-2")
    make_image(tmp_path / "page.png")
    make_pdf(tmp_path / "doc.pdf", pages=1)
    ok(dsocr("convert", "page.png", "doc.pdf", "--server", fake.url, "-o", "out"))
    guards = sorted((b["vllm_xargs"]["ngram_size"], b["vllm_xargs"]["window_size"]) for b in fake.chats)
    assert guards == [(20, 50), (20, 90)]
    assert fake.chats[0]["model"] == "deepseek-ai/DeepSeek-OCR-2"


# ---------------------------------------------------------------- (e) --mode with upstream servers


def test_a_mode_other_than_gundam_on_vllm_is_a_warning(dsocr, serve, tmp_path: Path) -> None:
    fake = serve()
    make_image(tmp_path / "page.png")
    run = ok(dsocr("convert", "page.png", "--server", fake.url, "--mode", "tiny", "-f", "json"))
    warnings = [line for line in run.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: --mode tiny is ignored by the vllm server(s) {fake.url}: upstream vLLM and SGLang fix the "
        "resolution to gundam (at most 6 crops)"
    ]
    assert "dsocr" not in fake.chats[0]
    (page,) = json.loads(run.stdout)["pages"]
    assert page["mode"] == "gundam"
    assert ok(dsocr("convert", "page.png", "--server", fake.url)).stderr == ""  # gundam: nothing to say


# ---------------------------------------------------------------- (f) the API key


def test_the_api_key_is_sent_as_a_bearer_token_and_never_shown(dsocr, serve, tmp_path: Path, monkeypatch) -> None:
    fake = serve(fail_after=1)
    make_pdf(tmp_path / "doc.pdf", pages=2)
    secret = "sk-remote-0123456789abcdef"
    run = dsocr("convert", "doc.pdf", "--server", fake.url, "--api-key", secret, "-v", "-f", "json")
    assert {headers.get("authorization") for headers in fake.headers} == {f"Bearer {secret}"}
    assert run.code == ExitCode.ALL_FAILED  # page 2 failed: its error line must not show the key either
    assert secret not in run.stderr and secret not in run.stdout
    monkeypatch.setenv("DSOCR_API_KEY", secret)
    down = dsocr("convert", "doc.pdf", "--server", nothing_listening(), "-v")
    assert down.code == ExitCode.ALL_FAILED and secret not in down.stderr
    fake.fail_after = None
    run = ok(dsocr("convert", "doc.pdf", "--server", fake.url, "-o", "out", "-f", "json"))
    assert fake.headers[-1]["authorization"] == f"Bearer {secret}"
    assert secret not in (tmp_path / "out" / "doc.json").read_text()
