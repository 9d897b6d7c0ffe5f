"""The OpenAI chat-completions wire format as ``dsocr serve`` speaks it (vLLM's DeepSeek-OCR dialect).

A request is checked completely, and its image decoded, before anything reaches the model: a bad request
is an ``ApiError`` (OpenAI's ``{"error": {"message", "type", "param", "code"}}`` with a 4xx status) and
never runs. Pure Python over dsocr's inputs and the family protocol: no web framework (``server.app`` calls
it; tests call it directly).

Request rules (``POST /v1/chat/completions``, a JSON object):

- ``messages``: exactly one message, role ``user``, whose ``content`` is a list of exactly one ``image_url``
  part and exactly one ``text`` part, in any order. The image is a ``data:`` URL with base64 data
  (``data:image/png;base64,...``; PNG, JPEG, WebP, TIFF (one page), GIF (first frame) or BMP, told from the
  bytes, not the media type); any other URL (``http://...``) is refused: the server fetches nothing. The image
  is decoded by dsocr's own input rules (``inputs.images.ImageReader``: upright by EXIF, transparency on
  white, at most ``max_pixels`` pixels, at least 2 px a side). The text is the instruction, ``<image>`` (and
  the newline after it) optional at its start, at most ``MAX_INSTRUCTION_CHARS`` characters: it becomes the
  prompt ``custom:TEXT``, so "<|grounding|>Convert the document to markdown." is exactly the ``markdown``
  prompt.
- ``max_tokens`` (or ``max_completion_tokens``, which wins as in vLLM): 1 to the model's context
  (``max_model_len``); default ``defaults.MAX_NEW_TOKENS``.
- ``temperature``: absent, null or 0 (greedy decoding, the only kind dsocr runs); ``n``: absent or 1;
  ``stop``: absent or empty. Other OpenAI fields (``top_p``, ``seed``, ...) are accepted and ignored.
- ``stream`` (bool): Server-Sent Events in OpenAI's chunk format, ``data: [DONE]`` last;
  ``stream_options.include_usage`` adds a last chunk with ``usage`` and no choices.
- ``skip_special_tokens`` (bool, default true as in vLLM): true removes the text of the tokenizer's special
  tokens (``<td>``, ``<|ref|>``, ``<|det|>``, ...) from the answer and from every streamed chunk; false keeps
  them, which dsocr's post-processing (tables, layout boxes, figures) needs.
- ``vllm_xargs`` (vLLM's DeepSeek-OCR ``NGramPerReqLogitsProcessor`` arguments): ``ngram_size`` (0 turns the
  loop guard off) and ``window_size`` set the guard; left out, the family's official values for images are
  used. ``whitelist_token_ids``, if given, must be the family's table-cell ids (``<td>``, ``</td>``, any order),
  the tokens dsocr's guard always lets repeat; other ids are a 400 (dsocr's guard cannot exempt others).
  Other keys are ignored.
- ``dsocr`` (dsocr's extension): ``{"mode": M}``, the resolution mode (default the family's default mode);
  an unknown mode is a 400 naming the family's modes. No other key.
- ``model``: any string (the server runs the one model it serves).

The answer is a ``chat.completion``: ``choices[0].message.content``, ``finish_reason`` "stop" (EOS) or
"length" (the token limit), ``usage`` (``prompt_tokens``: BOS, instruction and image positions;
``completion_tokens``: generated tokens, the EOS included, as vLLM counts them), and a ``dsocr`` extension
(``mode``, ``vision_tokens``, ``looped``: whether a page at the limit ended in a repeating tail).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from PIL import Image

from dsocr_cli import defaults
from dsocr_cli.engine.backend import ConvertOptions
from dsocr_cli.errors import DsocrError, InputError
from dsocr_cli.inputs.discover import InputSource
from dsocr_cli.inputs.images import ImageReader
from dsocr_cli.inputs.sniff import HEAD_SIZE, sniff
from dsocr_cli.models.family import ModelFamily
from dsocr_cli.results import PageResult

MAX_INSTRUCTION_CHARS = 2000
"""Longest instruction text accepted (the built-in prompts are under 60 characters; batch sizing assumes
short prompts, and a long one would be tokenized on the model thread, stalling every client)."""
IMAGE_MARKER = "<image>"
IMAGE_NAME = "image_url"
"""How messages name the request's image (``image_url: image too large: ...``)."""


class ApiError(Exception):
    """A refused request: HTTP ``status`` and OpenAI's error object."""

    def __init__(
        self, status: int, message: str, param: str | None = None, code: str | None = None, kind: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.kind = kind or ("invalid_request_error" if status < 500 else "server_error")

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


@dataclass(frozen=True)
class Limits:
    """What the server accepts, from ``dsocr serve``'s options and the model."""

    max_pixels: int
    context: int
    """The model's context (``max_model_len``): the largest ``max_tokens``."""
    whitelist: frozenset[int]
    """Token ids the family's loop guard lets repeat (``<td>``, ``</td>``)."""


@dataclass
class ChatRequest:
    """A checked chat-completion request: the decoded page image and dsocr's settings for it."""

    image: Image.Image
    options: ConvertOptions
    stream: bool = False
    include_usage: bool = False
    skip_special_tokens: bool = True


def parse_chat(body: bytes, family: ModelFamily, limits: Limits) -> ChatRequest:
    """``body`` (the raw request body) -> a ``ChatRequest``, or ``ApiError`` (the module docstring's rules).

    Cheap checks come first: the image is decoded only for a request that is otherwise valid."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise bad_request("the request body is not valid JSON", code="invalid_json") from None
    if not isinstance(payload, dict):
        raise bad_request("the request body must be a JSON object (a chat completion request)")
    model = payload.get("model")
    if model is not None and not isinstance(model, str):
        raise bad_request("model: expected a string", param="model")
    check_sampling(payload)
    max_tokens = token_limit(payload, limits.context)
    stream = flag(payload, "stream", False)
    include_usage = False
    if stream and payload.get("stream_options") is not None:
        stream_options = payload["stream_options"]
        if not isinstance(stream_options, dict):
            raise bad_request("stream_options: expected an object", param="stream_options")
        include_usage = flag(stream_options, "include_usage", False, prefix="stream_options.")
    skip_special_tokens = flag(payload, "skip_special_tokens", True)
    ngram_size, ngram_window = guard_settings(payload.get("vllm_xargs"), limits.whitelist)
    mode = resolution_mode(payload.get("dsocr"), family)
    url, text = user_content(payload.get("messages"))
    prompt = instruction(text, family)
    options = ConvertOptions(
        mode=mode, prompt=prompt, max_new_tokens=max_tokens, ngram_size=ngram_size, ngram_window=ngram_window
    )
    image = decode_image(url, limits.max_pixels)
    return ChatRequest(image, options, stream, include_usage, skip_special_tokens)


def flag(payload: dict[str, Any], name: str, default: bool, prefix: str = "") -> bool:
    value = payload.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise bad_request(f"{prefix}{name}: expected true or false", param=prefix + name)
    return value


def integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_sampling(payload: dict[str, Any]) -> None:
    """Greedy decoding only: temperature 0 (or none), one choice, no stop sequences."""
    temperature = payload.get("temperature")
    if temperature is not None and (
        isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or temperature != 0
    ):
        raise bad_request("only greedy decoding (temperature 0) is supported", param="temperature")
    n = payload.get("n")
    if n is not None and n != 1:
        raise bad_request("n: only one choice per request is supported", param="n")
    stop = payload.get("stop")
    if stop not in (None, "", []):
        raise bad_request("stop: stop sequences are not supported (a page ends at EOS or max_tokens)", param="stop")


def token_limit(payload: dict[str, Any], context: int) -> int:
    """``max_completion_tokens`` or else ``max_tokens``, 1 to ``context``; default ``MAX_NEW_TOKENS``."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = payload.get(name)
        if value is None:
            continue
        if not integer(value) or value < 1:
            raise bad_request(f"{name}: expected a positive integer", param=name)
        if value > context:
            raise bad_request(f"{name} {value}: more than the model's context ({context} tokens)", param=name)
        return value
    return min(defaults.MAX_NEW_TOKENS, context)


def guard_settings(xargs: Any, whitelist: frozenset[int]) -> tuple[int | None, int | None]:
    """``vllm_xargs`` -> (ngram size, window), None where the family's official value applies."""
    if xargs is None:
        return None, None
    if not isinstance(xargs, dict):
        raise bad_request("vllm_xargs: expected an object", param="vllm_xargs")
    size, window = xargs.get("ngram_size"), xargs.get("window_size")
    if size is not None and (not integer(size) or size < 0):
        raise bad_request("vllm_xargs.ngram_size: expected an integer >= 0 (0: no loop guard)", param="vllm_xargs")
    if window is not None and (not integer(window) or window < 1):
        raise bad_request("vllm_xargs.window_size: expected a positive integer", param="vllm_xargs")
    listed = xargs.get("whitelist_token_ids")
    if listed is not None:
        if not isinstance(listed, list) or not all(integer(token) for token in listed):
            raise bad_request("vllm_xargs.whitelist_token_ids: expected a list of token ids", param="vllm_xargs")
        if frozenset(listed) != whitelist:
            raise bad_request(
                f"vllm_xargs.whitelist_token_ids {sorted(listed)}: dsocr's loop guard lets exactly the table-cell "
                f"tokens repeat, {sorted(whitelist)} (<td>, </td>); leave it out or send those",
                param="vllm_xargs",
            )
    return size, window


def resolution_mode(extension: Any, family: ModelFamily) -> str:
    """The ``dsocr`` extension's ``mode`` (default the family's default mode)."""
    if extension is None:
        return family.default_mode
    if not isinstance(extension, dict):
        raise bad_request('dsocr: expected an object, e.g. {"mode": "base"}', param="dsocr")
    unknown = sorted(set(extension) - {"mode"})
    if unknown:
        raise bad_request(f"dsocr: unknown key {unknown[0]!r} (dsocr takes mode)", param="dsocr")
    mode = extension.get("mode")
    if mode is None:
        return family.default_mode
    if not isinstance(mode, str) or mode not in family.modes:
        raise bad_request(
            f"dsocr.mode {mode!r}: {family.description} has the modes {', '.join(family.modes)}",
            param="dsocr.mode",
            code="unknown_mode",
        )
    return mode


def user_content(messages: Any) -> tuple[str, str]:
    """The image URL and the instruction text of the one user message."""
    if not isinstance(messages, list) or not messages:
        raise bad_request("messages: one user message with the page image and the instruction is required", "messages")
    if len(messages) != 1:
        raise bad_request(
            f"messages: exactly one user message is supported (the page image and the instruction), got "
            f"{len(messages)}",
            param="messages",
        )
    message = messages[0]
    if not isinstance(message, dict) or message.get("role") != "user":
        raise bad_request("messages[0]: expected a message with role user", param="messages[0].role")
    content = message.get("content")
    where = "messages[0].content"
    if not isinstance(content, list):
        raise bad_request(
            f"{where}: no image: the content must be a list of one image_url part and one text part",
            param=where,
            code="no_image",
        )
    images: list[tuple[int, Any]] = []
    texts: list[tuple[int, Any]] = []
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "image_url":
            images.append((index, part.get("image_url")))
        elif kind == "text":
            texts.append((index, part.get("text")))
        else:
            raise bad_request(f"{where}[{index}]: expected a part of type image_url or text", param=f"{where}[{index}]")
    if not images:
        raise bad_request(f"{where}: no image: one image_url part (the page) is required", param=where, code="no_image")
    if len(images) > 1:
        raise bad_request(
            f"{where}: {len(images)} images: one page image per request", param=where, code="too_many_images"
        )
    if len(texts) != 1:
        raise bad_request(
            f"{where}: exactly one text part (the instruction) is required, got {len(texts)}", param=where
        )
    index, image = images[0]
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise bad_request(f'{where}[{index}].image_url: expected {{"url": "data:..."}}', f"{where}[{index}]")
    text_index, text = texts[0]
    if not isinstance(text, str):
        raise bad_request(f"{where}[{text_index}].text: expected a string", param=f"{where}[{text_index}]")
    return url, text


def instruction(text: str, family: ModelFamily) -> str:
    """The text part -> the prompt spec ``custom:TEXT`` (its ``<image>`` marker at the start removed)."""
    body = text.strip()
    if body.startswith(IMAGE_MARKER):
        body = body[len(IMAGE_MARKER) :].strip()
    if not body:
        raise bad_request(
            "the text part is empty: it is the instruction, e.g. <|grounding|>Convert the document to markdown.",
            param="messages[0].content",
        )
    if IMAGE_MARKER in body:
        raise bad_request("<image> may appear only at the start of the text (one image per request)", "messages")
    if len(body) > MAX_INSTRUCTION_CHARS:
        raise bad_request(
            f"the instruction is {len(body)} characters; at most {MAX_INSTRUCTION_CHARS} are accepted", "messages"
        )
    prompt = "custom:" + body
    try:
        family.resolve_prompt(prompt)
    except DsocrError as exc:
        raise bad_request(str(exc), param="messages") from None
    return prompt


def decode_image(url: str, max_pixels: int) -> Image.Image:
    """A ``data:`` URL -> the RGB page image, by dsocr's input rules (``ImageReader``)."""
    param = "messages[0].content"
    if url[:5].lower() != "data:":
        scheme = url.split(":", 1)[0].lower() if ":" in url else ""
        what = f"{scheme}: URLs" if scheme else "URLs"
        raise bad_request(
            f"image_url: {what} are not fetched; send the image inline as a data URL (data:image/png;base64,...)",
            param=param,
            code="unsupported_url",
        )
    header, comma, data = url[5:].partition(",")
    if not comma or not header.lower().endswith(";base64"):
        raise bad_request("image_url: the data URL must be base64 (data:image/png;base64,...)", param, "invalid_image")
    try:
        raw = base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        raise bad_request("image_url: the data URL's base64 data is invalid", param, "invalid_image") from None
    try:
        return read_page(raw, max_pixels)
    except InputError as exc:
        raise bad_request(str(exc), param=param, code="invalid_image") from None


def read_page(raw: bytes, max_pixels: int) -> Image.Image:
    """Image bytes -> the RGB page, as ``dsocr convert`` reads an image file; ``InputError`` otherwise."""
    source = InputSource(name=IMAGE_NAME, stem="image", data=raw)
    kind = sniff(raw[:HEAD_SIZE], IMAGE_NAME)
    if kind == "pdf":
        raise source.fail("a PDF, not an image: send one page image per request (dsocr convert renders PDFs)")
    reader = ImageReader(source, kind, max_pixels=max_pixels)
    try:
        if reader.page_count > 1:
            raise source.fail(f"a {reader.page_count}-page TIFF: send one page image per request")
        return reader.render(1)
    finally:
        reader.close()


# ---------------------------------------------------------------- answers


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def finish_reason(result: PageResult) -> str:
    return "stop" if result.finished else "length"


def usage(result: PageResult) -> dict[str, int]:
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.generated_tokens,
        "total_tokens": result.prompt_tokens + result.generated_tokens,
    }


def extension(result: PageResult) -> dict[str, Any]:
    return {"mode": result.mode, "vision_tokens": result.vision_tokens, "looped": result.looped}


def completion(ident: str, created: int, model: str, result: PageResult, content: str) -> dict[str, Any]:
    """The ``chat.completion`` object for one page."""
    return {
        "id": ident,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "logprobs": None,
                "finish_reason": finish_reason(result),
            }
        ],
        "usage": usage(result),
        "dsocr": extension(result),
    }


def chunk(
    ident: str, created: int, model: str, delta: dict[str, Any] | None, finish: str | None = None, **extra: Any
) -> dict[str, Any]:
    """A ``chat.completion.chunk``; ``delta`` None is the usage chunk (no choices)."""
    choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    return {
        "id": ident,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": choices,
        **extra,
    }


def sse(data: dict[str, Any] | str) -> str:
    """One Server-Sent Event: ``data: JSON`` (or ``data: [DONE]``) and a blank line."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"data: {text}\n\n"


def now() -> int:
    return int(time.time())


class SpecialTokenFilter:
    """Removes the text of special tokens (``skip_special_tokens``) from model text.

    A special token is one piece of text that the streamer never splits across chunks, so filtering every
    streamed chunk gives exactly the filtered whole answer."""

    def __init__(self, specials: Iterable[str]) -> None:
        texts = sorted({text for text in specials if text}, key=len, reverse=True)
        self.pattern = re.compile("|".join(map(re.escape, texts))) if texts else None

    def __call__(self, text: str) -> str:
        return text if self.pattern is None else self.pattern.sub("", text)
