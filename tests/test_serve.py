"""``dsocr serve``: the OpenAI-compatible server over the batched engine.

The app is driven in-process through ``httpx.ASGITransport`` (no socket) on the tiny checkpoints; one test
runs ``dsocr serve`` as a real process on a free port and stops it with SIGTERM while a request is in flight.
Answers are compared with what the local one-page path (``LocalBackend.convert``) gives for the same page,
prompt, mode and token limit (greedy decoding: the same tokens).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import queue
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from PIL import Image

from dsocr_cli.engine.backend import ConvertOptions
from dsocr_cli.engine.batched import BatchedEngine
from dsocr_cli.engine.local import LocalBackend
from dsocr_cli.engine.scheduler import Scheduler
from dsocr_cli.errors import ModelError, UsageError
from dsocr_cli.results import Page
from dsocr_cli.server.app import ServerSettings, build_app, special_token_texts
from dsocr_cli.server.wire import SpecialTokenFilter
from dsocr_cli.testing.images import make_page_image
from tests.cli_support import DSOCR, isolated_env
from tests.conftest import Family

MARKDOWN = "<image>\n<|grounding|>Convert the document to markdown."
"""The text part a vLLM-style client sends for dsocr's ``markdown`` prompt."""
KEY = "s3cret-key"


def png(seed: int = 1, size: tuple[int, int] = (320, 420)) -> Image.Image:
    return make_page_image(*size, seed=seed)


def data_url(image: Image.Image, fmt: str = "PNG") -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buffer.getvalue()).decode()


def chat(url: str, text: str = MARKDOWN, **fields: Any) -> dict[str, Any]:
    content = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": text}]
    return {"model": "tiny", "messages": [{"role": "user", "content": content}], "temperature": 0, **fields}


def events(response: httpx.Response) -> list[Any]:
    """The SSE ``data:`` payloads of a streamed answer (JSON, or the ``[DONE]`` string)."""
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text.endswith("\n\n")
    found = []
    for block in response.text.split("\n\n")[:-1]:
        assert block.startswith("data: "), block
        payload = block.removeprefix("data: ")
        found.append(payload if payload == "[DONE]" else json.loads(payload))
    return found


def metrics(text: str) -> dict[str, float]:
    return {name: float(value) for name, value in re.findall(r"^(dsocr_\w+) (\S+)$", text, flags=re.MULTILINE)}


@dataclass
class Served:
    """An app over ``runner`` with its own scheduler, driven through ASGI."""

    app: Any
    scheduler: Scheduler

    def run(self, coroutine_function, *args: Any) -> Any:
        async def main() -> Any:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://dsocr", timeout=120) as client:
                return await coroutine_function(client, *args)

        return asyncio.run(main())

    def post(self, *bodies: dict[str, Any], headers: dict[str, str] | None = None) -> list[httpx.Response]:
        """The bodies posted at once (concurrent clients), their answers in order."""

        async def send(client: httpx.AsyncClient) -> list[httpx.Response]:
            return list(
                await asyncio.gather(
                    *(client.post("/v1/chat/completions", json=body, headers=headers) for body in bodies)
                )
            )

        return self.run(send)

    def get(self, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        async def send(client: httpx.AsyncClient) -> httpx.Response:
            return await client.get(path, headers=headers)

        return self.run(send)

    def metrics(self, headers: dict[str, str] | None = None) -> dict[str, float]:
        response = self.get("/metrics", headers=headers)
        assert response.status_code == 200, response.text
        return metrics(response.text)


@contextmanager
def serving(runner, rows: int = 8, **settings: Any) -> Iterator[Served]:
    with Scheduler(BatchedEngine(runner), rows=rows) as scheduler:
        yield Served(build_app(runner, scheduler, ServerSettings(model="tiny", **settings)), scheduler)


@pytest.fixture(scope="module")
def v1(tiny_runner) -> Iterator[Served]:
    """The v1 server every test of the module shares (counters are compared before and after)."""
    with serving(tiny_runner) as served:
        yield served


@pytest.fixture(scope="module")
def guarded(tiny_runner) -> Iterator[Served]:
    """A v1 server with an API key and small limits."""
    with serving(tiny_runner, rows=2, api_key=KEY, max_body_bytes=256 * 1024, max_pixels=400 * 500) as served:
        yield served


AUTH = {"Authorization": f"Bearer {KEY}"}


# ---------------------------------------------------------------- answers


def test_a_completion_is_the_local_page_and_its_stream_concatenates_to_it(family: Family, family_runner) -> None:
    image = png(seed=3)
    mode, limit = family.fast_mode, 6
    expected = LocalBackend(family_runner).convert(
        Page("scan.png", 1, image), ConvertOptions(mode=mode, prompt="markdown", max_new_tokens=limit)
    )
    assert not expected.finished and expected.generated_tokens == limit  # random weights run to the limit
    body = chat(data_url(image), max_tokens=limit, skip_special_tokens=False, dsocr={"mode": mode})
    with serving(family_runner, rows=4) as served:
        plain, streamed = served.post(body, {**body, "stream": True, "stream_options": {"include_usage": True}})
        models = served.get("/v1/models").json()

    assert plain.status_code == 200, plain.text
    answer = plain.json()
    assert answer["object"] == "chat.completion" and answer["model"] == "tiny"
    choice = answer["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": expected.text}
    assert choice["finish_reason"] == "length"
    assert expected.prompt_tokens > expected.vision_tokens > 0
    assert answer["usage"] == {
        "prompt_tokens": expected.prompt_tokens,
        "completion_tokens": limit,
        "total_tokens": expected.prompt_tokens + limit,
    }
    assert answer["dsocr"] == {"mode": mode, "vision_tokens": expected.vision_tokens, "looped": expected.looped}

    assert streamed.status_code == 200, streamed.text
    chunks = events(streamed)
    assert chunks[-1] == "[DONE]"
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    deltas = [c["choices"][0]["delta"].get("content", "") for c in chunks[1:-1] if c["choices"]]
    assert len([d for d in deltas if d]) > 1  # it streamed, not one piece at the end
    assert "".join(deltas) == expected.text
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks[:-1])
    assert [c["choices"][0]["finish_reason"] for c in chunks[1:-1] if c["choices"]][-1] == "length"
    assert chunks[-2]["choices"] == [] and chunks[-2]["usage"] == answer["usage"]

    (card,) = models["data"]
    assert models["object"] == "list"
    assert (card["id"], card["object"], card["owned_by"]) == ("tiny", "model", "dsocr")
    assert card["root"] == family.family.default_repo and card["max_model_len"] == 8192
    assert card["dsocr"]["family"] == family.family.name and card["dsocr"]["batch_rows"] == 4
    assert card["dsocr"]["modes"] == list(family.family.modes)


def test_a_page_that_ends_with_eos_stops(eos_checkpoint: Path) -> None:
    from dsocr_cli.models.registry import load_runner

    runner = load_runner(eos_checkpoint, torch.device("cpu"), torch.float32)
    with serving(runner, rows=2) as served:
        (response,) = served.post(chat(data_url(png()), max_tokens=50, dsocr={"mode": "tiny"}))
    answer = response.json()
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert answer["choices"][0]["message"]["content"] == ""
    assert answer["usage"]["completion_tokens"] == 1  # the EOS, as vLLM counts it


def test_skip_special_tokens_removes_exactly_what_the_tokenizer_skips(v1: Served, tiny_runner) -> None:
    tokenizer = tiny_runner.streamer(lambda text: None).tokenizer
    text = "<|ref|>title<|/ref|><|det|>[[1, 2, 3, 4]]<|/det|>\n<table><tr><td>x</td><td>y</td></tr></table>"
    ids = tokenizer.encode(text, add_special_tokens=False)
    keep = tokenizer.decode(ids, skip_special_tokens=False)
    skip = SpecialTokenFilter(special_token_texts(tiny_runner))
    assert skip(keep) == tokenizer.decode(ids, skip_special_tokens=True) != keep
    assert "<td>" in keep and "<td>" not in skip(keep)

    image = png(seed=4)
    body = chat(data_url(image), max_tokens=5, dsocr={"mode": "tiny"})
    default, kept = v1.post(body, {**body, "skip_special_tokens": False})
    raw = kept.json()["choices"][0]["message"]["content"]
    assert default.json()["choices"][0]["message"]["content"] == skip(raw)


def test_the_instruction_is_the_prompt_with_or_without_its_image_marker(v1: Served) -> None:
    body = chat(data_url(png(seed=5)), max_tokens=4, dsocr={"mode": "tiny"}, skip_special_tokens=False)
    bare = {
        **body,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<|grounding|>Convert the document to markdown."},  # text first: any order
                    body["messages"][0]["content"][0],
                ],
            }
        ],
    }
    marked, unmarked = v1.post(body, bare)
    assert marked.json()["choices"][0]["message"] == unmarked.json()["choices"][0]["message"]
    assert marked.json()["usage"] == unmarked.json()["usage"]


# ---------------------------------------------------------------- continuous batching


def test_simultaneous_clients_share_decode_steps_and_each_gets_its_own_page(v1: Served, tiny_runner) -> None:
    images = [png(seed=10 + i, size=(300 + 20 * i, 400)) for i in range(8)]
    limits = [5 + i % 3 for i in range(8)]
    alone = [
        LocalBackend(tiny_runner).convert(Page("p.png", 1, im), ConvertOptions(mode="tiny", max_new_tokens=n))
        for im, n in zip(images, limits, strict=True)
    ]
    assert len({r.text for r in alone}) > 3  # the pages' answers differ: a mix-up between rows would show
    before = v1.metrics()
    answers = v1.post(
        *(
            chat(data_url(im), max_tokens=n, skip_special_tokens=False, dsocr={"mode": "tiny"})
            for im, n in zip(images, limits, strict=True)
        )
    )
    after = v1.metrics()
    assert [a.json()["choices"][0]["message"]["content"] for a in answers] == [r.text for r in alone]
    assert [a.json()["usage"]["completion_tokens"] for a in answers] == limits
    steps = after["dsocr_decode_steps_total"] - before["dsocr_decode_steps_total"]
    rows = after["dsocr_decode_rows_total"] - before["dsocr_decode_rows_total"]
    assert rows > steps > 0  # decode steps ran several clients' pages at once
    assert after["dsocr_requests_total"] - before["dsocr_requests_total"] == 8
    assert after["dsocr_pages_total"] - before["dsocr_pages_total"] == 8
    assert after["dsocr_generated_tokens_total"] - before["dsocr_generated_tokens_total"] == sum(limits)
    assert after["dsocr_live_rows"] == 0 and after["dsocr_queue_length"] == 0
    assert after["dsocr_batch_rows"] == 8


def test_a_short_request_sent_after_a_long_one_finishes_first(v1: Served) -> None:
    long_body = chat(data_url(png(seed=20)), max_tokens=60, dsocr={"mode": "tiny"})
    short_body = chat(data_url(png(seed=21)), max_tokens=2, dsocr={"mode": "tiny"})

    async def race(client: httpx.AsyncClient) -> tuple[bool, httpx.Response, httpx.Response]:
        steps = v1.scheduler.stats.steps
        long = asyncio.ensure_future(client.post("/v1/chat/completions", json=long_body))
        while v1.scheduler.stats.steps < steps + 2:  # the long page is decoding
            await asyncio.sleep(0.01)
        short = await client.post("/v1/chat/completions", json=short_body)
        long_was_running = not long.done()
        return long_was_running, short, await long

    long_was_running, short, long = v1.run(race)
    assert long_was_running
    assert short.json()["usage"]["completion_tokens"] == 2
    assert long.json()["usage"]["completion_tokens"] == 60


def test_a_model_failure_is_a_500_for_that_request_and_the_server_goes_on(
    v1: Served, tiny_runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = type(tiny_runner).decode_step
    calls = {"n": 0}

    def failing_once(self, tokens, cache):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ModelError("model produced NaN/inf logits on a test page")
        return real(self, tokens, cache)

    monkeypatch.setattr(type(tiny_runner), "decode_step", failing_once)
    body = chat(data_url(png(seed=30)), max_tokens=4, dsocr={"mode": "tiny"})
    (failed,) = v1.post(body)
    assert failed.status_code == 500
    assert failed.json()["error"]["message"] == "model produced NaN/inf logits on a test page"
    assert failed.json()["error"]["type"] == "server_error"
    (again,) = v1.post(body)
    assert again.status_code == 200 and again.json()["usage"]["completion_tokens"] == 4


@contextmanager
def over_http(served: Served) -> Iterator[str]:
    """``served``'s app under uvicorn on a free loopback port in a background thread; yields its URL."""
    import uvicorn

    from dsocr_cli.server.run import Server, listen_socket

    sock = listen_socket("127.0.0.1", 0)
    server = Server(uvicorn.Config(served.app, log_level="critical", access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def test_convert_on_a_dsocr_server_writes_what_a_local_conversion_writes(
    v1: Served, dsocr, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    png(seed=50).save(tmp_path / "page.png")
    settings = ("--mode", "tiny", "--max-tokens", "8", "--no-provenance", "-f", "raw")
    local = dsocr("convert", "page.png", "--model", tiny_checkpoint, *settings)
    before = v1.metrics()
    with over_http(v1) as url:
        remote = dsocr("convert", "page.png", "--server", url, *settings)
    assert v1.metrics()["dsocr_pages_total"] - before["dsocr_pages_total"] == 1
    assert (remote.code, remote.stdout) == (local.code, local.stdout)  # exit 2: the page hit the token limit
    assert local.stdout.strip()


FORMATS = ("markdown", "html", "text", "json", "raw")


def untimed(document: bytes) -> bytes:
    """A JSON output with each page's ``seconds`` (wall time: never the same twice) blanked, byte layout kept."""
    return re.sub(rb'"seconds": [0-9.]+', b'"seconds": _', document)


def test_every_format_from_a_dsocr_server_is_byte_identical_to_local_for_images_and_pdfs(
    family: Family, family_runner, family_checkpoint: Path, dsocr, tmp_path: Path
) -> None:
    """Both families, an image and a 2-page PDF, every format: the files `convert --server` writes against a
    `dsocr serve` of the same checkpoint are byte for byte the local conversion's (provenance off: it names the
    device or the server)."""
    from tests.cli_support import make_pdf

    png(seed=51, size=(400, 520)).save(tmp_path / "scan.png")
    make_pdf(tmp_path / "report.pdf", pages=2)
    common = ("scan.png", "report.pdf", "--max-tokens", "4", "--no-provenance", *family.fast)
    with serving(family_runner) as served, over_http(served) as url:
        for output_format in FORMATS:
            local = dsocr("convert", *common, "-f", output_format, "-o", f"local-{output_format}", "--model", family_checkpoint)
            remote = dsocr("convert", *common, "-f", output_format, "-o", f"remote-{output_format}", "--server", url)
            assert local.code == remote.code == 2, local.stderr + remote.stderr  # pages end at the token limit
            files = sorted(p.name for p in (tmp_path / f"local-{output_format}").iterdir() if not p.name.startswith("."))
            assert files and files == sorted(
                p.name for p in (tmp_path / f"remote-{output_format}").iterdir() if not p.name.startswith(".")
            )
            for name in files:
                local_bytes = (tmp_path / f"local-{output_format}" / name).read_bytes()
                remote_bytes = (tmp_path / f"remote-{output_format}" / name).read_bytes()
                if output_format == "json":  # each page's "seconds" is a timing: it differs between any two runs
                    local_bytes, remote_bytes = (untimed(b) for b in (local_bytes, remote_bytes))
                assert remote_bytes == local_bytes, (output_format, name)
        assert served.metrics()["dsocr_pages_total"] == 3 * len(FORMATS)


# ---------------------------------------------------------------- security and bad requests


def test_without_the_key_every_endpoint_but_health_is_401_and_nothing_runs(guarded: Served) -> None:
    body = chat(data_url(png()), max_tokens=3, dsocr={"mode": "tiny"})
    for headers in (None, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}, {"Authorization": "Basic x"}):
        (response,) = guarded.post(body, headers=headers)
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"] == "Bearer"
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["code"] == "invalid_api_key"
        assert KEY not in response.text
        assert guarded.get("/v1/models", headers=headers).status_code == 401
        assert guarded.get("/metrics", headers=headers).status_code == 401
    assert guarded.get("/health").json() == {"status": "ok"}
    counts = guarded.metrics(headers=AUTH)
    assert counts["dsocr_requests_total"] == 0 and counts["dsocr_decode_steps_total"] == 0
    (good,) = guarded.post(body, headers=AUTH)
    assert good.status_code == 200, good.text


def bad_requests() -> dict[str, tuple[dict[str, Any] | bytes, int, str]]:
    """Name -> (body, status, a part of the error message)."""
    url = data_url(png())
    image_part = {"type": "image_url", "image_url": {"url": url}}
    text_part = {"type": "text", "text": MARKDOWN}
    corrupt = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20).decode()
    return {
        "bad json": (b'{"messages": [', 400, "not valid JSON"),
        "not an object": (b"[1, 2]", 400, "JSON object"),
        "no image": (
            {"messages": [{"role": "user", "content": MARKDOWN}]},
            400,
            "no image",
        ),
        "no image part": ({"messages": [{"role": "user", "content": [text_part]}]}, 400, "no image"),
        "two images": (
            {"messages": [{"role": "user", "content": [image_part, image_part, text_part]}]},
            400,
            "2 images",
        ),
        "http url": (chat("http://example.org/page.png"), 400, "not fetched"),
        "undecodable image": (chat(corrupt), 400, "corrupt PNG image"),
        "not base64": (chat("data:image/png;base64,@@@@"), 400, "base64"),
        "not an image": (
            chat("data:image/png;base64," + base64.b64encode(b"hello, world").decode()),
            400,
            "unsupported file type",
        ),
        "too many pixels": (chat(data_url(png(size=(500, 500)))), 400, "image too large: 500x500 pixels"),
        "temperature": (chat(url, temperature=0.7), 400, "only greedy decoding (temperature 0) is supported"),
        "unknown mode": (chat(url, dsocr={"mode": "huge"}), 400, "tiny, small, base, large, gundam"),
        "unknown extension key": (chat(url, dsocr={"mode": "tiny", "dpi": 3}), 400, "unknown key 'dpi'"),
        "other whitelist": (
            chat(url, vllm_xargs={"ngram_size": 30, "window_size": 90, "whitelist_token_ids": [5]}),
            400,
            "whitelist_token_ids",
        ),
        "zero max_tokens": (chat(url, max_tokens=0), 400, "max_tokens"),
        "max_tokens over the context": (chat(url, max_tokens=9000), 400, "context"),
        "two messages": (
            {"messages": [{"role": "system", "content": "Be nice."}, chat(url)["messages"][0]]},
            400,
            "exactly one user message",
        ),
        "empty instruction": (chat(url, text="<image>\n"), 400, "empty"),
        "two image markers": (chat(url, text="<image>\nA <image> B"), 400, "<image>"),
        "body over the limit": (chat(url, padding="x" * 300_000), 413, "over 256 KiB"),
    }


def test_bad_requests_are_openai_errors_and_never_reach_the_model(guarded: Served) -> None:
    cases = bad_requests()
    before = guarded.metrics(headers=AUTH)

    async def send_all(client: httpx.AsyncClient) -> dict[str, httpx.Response]:
        answers = {}
        for name, (body, _, _) in cases.items():
            if isinstance(body, bytes):
                answers[name] = await client.post(
                    "/v1/chat/completions", content=body, headers={**AUTH, "Content-Type": "application/json"}
                )
            else:
                answers[name] = await client.post("/v1/chat/completions", json=body, headers=AUTH)

        async def chunked() -> Any:  # no Content-Length: the limit is enforced on the bytes read
            for _ in range(100):
                yield b"x" * 10_000

        answers["chunked body over the limit"] = await client.post(
            "/v1/chat/completions", content=chunked(), headers=AUTH
        )
        return answers

    answers = guarded.run(send_all)
    cases["chunked body over the limit"] = (b"", 413, "over 256 KiB")
    for name, (_, status, message) in cases.items():
        response = answers[name]
        assert response.status_code == status, (name, response.text)
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}, name
        assert error["type"] == "invalid_request_error", name
        assert message in error["message"], (name, error["message"])
    after = guarded.metrics(headers=AUTH)
    assert after["dsocr_requests_total"] == before["dsocr_requests_total"]  # nothing ran
    assert after["dsocr_rejected_total"] - before["dsocr_rejected_total"] == len(cases)
    assert after["dsocr_pending_requests"] == 0
    (good,) = guarded.post(chat(data_url(png()), max_tokens=2, dsocr={"mode": "tiny"}), headers=AUTH)
    assert good.status_code == 200, good.text
    assert guarded.get("/no/such/page", headers=AUTH).json()["error"]["code"] == "not_found"


def test_serve_listens_on_loopback_by_default_and_limits_pixels_as_convert_does() -> None:
    import typer

    from dsocr_cli.cli import serve as serve_cli
    from dsocr_cli.cli.app import app
    from dsocr_cli.inputs.images import MAX_PIXELS
    from dsocr_cli.server.run import ServeOptions

    command = typer.main.get_command(app).commands["serve"]
    params = {param.name: param for param in command.params}
    assert params["host"].default == ServeOptions(model="m").host == "127.0.0.1"
    assert params["max_pixels"].default == serve_cli.DEFAULT_MAX_PIXELS == MAX_PIXELS == ServeOptions("m").max_pixels


def test_a_port_in_use_is_a_usage_error_before_the_model_loads() -> None:
    from dsocr_cli.server.run import listen_socket

    taken = listen_socket("127.0.0.1", 0)
    taken.listen()
    try:
        with pytest.raises(UsageError, match=r"cannot listen on http://127\.0\.0\.1:\d+"):
            listen_socket("127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()


# ---------------------------------------------------------------- the command as a process


def test_dsocr_serve_answers_and_finishes_its_request_on_sigterm(tiny_checkpoint: Path, tmp_path: Path) -> None:
    env = isolated_env(tmp_path) | {"DSOCR_API_KEY": KEY}
    process = subprocess.Popen(
        [str(DSOCR), "serve", "--model", str(tiny_checkpoint), "--port", "0", "--batch-size", "2"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stderr], daemon=True)
    reader.start()
    try:
        ready = lines.get(timeout=120)
        found = re.fullmatch(rf"serving {re.escape(str(tiny_checkpoint))} on (http://127\.0\.0\.1:(\d+))\n", ready)
        assert found, ready
        base, port = found[1], int(found[2])
        assert port != 0
        with httpx.Client(base_url=base, timeout=120) as client:
            assert client.get("/health").status_code == 200
            assert client.get("/v1/models").status_code == 401
            answer: dict[str, httpx.Response] = {}
            body = chat(data_url(png(seed=40)), max_tokens=80, dsocr={"mode": "tiny"})
            request = threading.Thread(
                target=lambda: answer.setdefault(
                    "response", client.post("/v1/chat/completions", json=body, headers=AUTH)
                )
            )
            request.start()
            deadline = time.monotonic() + 60
            while metrics(client.get("/metrics", headers=AUTH).text)["dsocr_decode_steps_total"] < 3:
                assert time.monotonic() < deadline, "the request never started decoding"
                time.sleep(0.05)
            process.send_signal(signal.SIGTERM)
            request.join(timeout=120)
        response = answer["response"]
        assert response.status_code == 200, response.text
        assert response.json()["usage"]["completion_tokens"] == 80  # finished, not cut short
        assert process.wait(timeout=60) == 0
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    reader.join(timeout=10)
    rest = []
    while not lines.empty():
        rest.append(lines.get())
    assert rest == [], rest  # quiet: the ready line only, and the key never appears
    assert KEY not in ready


def start_serve(checkpoint: Path, tmp_path: Path) -> tuple[subprocess.Popen[str], str]:
    """``dsocr serve`` as a process on a free port; (the process, its URL) once it says it is ready."""
    process = subprocess.Popen(
        [str(DSOCR), "serve", "--model", str(checkpoint), "--port", "0", "--batch-size", "2"],
        cwd=tmp_path, env=isolated_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    assert process.stderr is not None
    ready = process.stderr.readline()
    found = re.fullmatch(r"serving .* on (http://127\.0\.0\.1:\d+)\n", ready)
    assert found, ready
    return process, found[1]


def test_two_servers_one_killed_mid_run_every_page_is_converted(eos_checkpoint: Path, tmp_path: Path) -> None:
    """Two real `dsocr serve` processes; one is SIGKILLed once it has answered a page: the run converts every
    page on the other, exits 0 and says the failover on stderr."""
    from tests.cli_support import make_pdf

    make_pdf(tmp_path / "report.pdf", pages=12)
    (first, first_url), (second, second_url) = start_serve(eos_checkpoint, tmp_path), start_serve(eos_checkpoint, tmp_path)
    try:
        convert = subprocess.Popen(
            [str(DSOCR), "convert", "report.pdf", "-o", "out", "--mode", "tiny", "--no-provenance",
             "--server", first_url, "--server", second_url, "--concurrency", "1"],
            cwd=tmp_path, env=isolated_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        deadline = time.monotonic() + 120
        with httpx.Client(timeout=10) as client:
            while metrics(client.get(f"{first_url}/metrics").text)["dsocr_pages_total"] < 1:
                assert time.monotonic() < deadline and convert.poll() is None, "the first server never answered"
                time.sleep(0.02)
        first.kill()
        _, stderr = convert.communicate(timeout=300)
        with httpx.Client(timeout=10) as client:
            on_second = metrics(client.get(f"{second_url}/metrics").text)["dsocr_pages_total"]
    finally:
        for process in (first, second):
            process.kill()
            process.wait(timeout=30)
    assert convert.returncode == 0, stderr
    assert first_url in stderr  # the failover is said, naming the server that went away
    text = (tmp_path / "out" / "report.md").read_text()
    assert all(f"<!-- page {n} -->" in text for n in range(1, 13))
    assert 1 <= on_second <= 12


def test_a_client_that_goes_away_frees_its_row(v1: Served) -> None:
    """A streamed answer whose client closes the connection after the first chunk, and a plain one whose client
    times out: both requests are cancelled in the scheduler (their rows freed), and the server goes on."""
    before = v1.metrics()
    body = chat(data_url(png(seed=60)), max_tokens=2000, dsocr={"mode": "tiny"})
    with over_http(v1) as url, httpx.Client(base_url=url, timeout=60) as client:
        with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as response:
            assert response.status_code == 200
            next(response.iter_lines())  # the first chunk arrived: the page is decoding
        with pytest.raises(httpx.ReadTimeout):
            client.post("/v1/chat/completions", json=body, timeout=1.5)
        deadline = time.monotonic() + 30
        while v1.metrics()["dsocr_cancelled_total"] - before["dsocr_cancelled_total"] < 2:
            assert time.monotonic() < deadline, "a request whose client left kept running"
            time.sleep(0.05)
        after = v1.metrics()
        assert after["dsocr_live_rows"] == 0
        assert after["dsocr_generated_tokens_total"] - before["dsocr_generated_tokens_total"] == 0  # never finished
        good = client.post("/v1/chat/completions", json=chat(data_url(png()), max_tokens=3, dsocr={"mode": "tiny"}))
        assert good.status_code == 200 and good.json()["usage"]["completion_tokens"] == 3
