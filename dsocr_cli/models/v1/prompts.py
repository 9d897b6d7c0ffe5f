"""v1 prompts and prompt token ids, built the way the official ``infer()`` builds them.

The official "plain" conversation template ignores roles, so the model sees exactly
BOS + image positions + the instruction text (the text after ``<image>``, prompt stripped): no
``<|User|>``/``<|Assistant|>`` tokens, one BOS, no EOS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dsocr_cli.errors import UsageError
from dsocr_cli.models.tokenizer import TokenIds

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

IMAGE_TOKEN = "<image>"
PROMPTS: dict[str, str] = {
    "markdown": "<image>\n<|grounding|>Convert the document to markdown.",
    "ocr": "<image>\n<|grounding|>OCR this image.",
    "free": "<image>\nFree OCR.",
    "figure": "<image>\nParse the figure.",
    "describe": "<image>\nDescribe this image in detail.",
}
PROMPT_CHOICES = (*PROMPTS, "locate:TEXT", "custom:TEXT")


@dataclass(frozen=True)
class Prompt:
    """A named prompt and its exact text (``<image>`` marks where the page goes)."""

    name: str
    text: str

    @property
    def grounded(self) -> bool:
        """Whether the answer carries ``<|ref|>``/``<|det|>`` layout boxes."""
        return "<|grounding|>" in self.text or "<|ref|>" in self.text


def resolve_prompt(spec: str) -> Prompt:
    """``markdown|ocr|free|figure|describe|locate:TEXT|custom:TEXT`` -> the official prompt text."""
    if spec in PROMPTS:
        return Prompt(spec, PROMPTS[spec])
    kind, sep, value = spec.partition(":")
    if sep and kind == "locate":
        if not value.strip():
            raise UsageError("--prompt locate:TEXT needs the text to locate")
        if "<|ref|>" in value or "<|/ref|>" in value:
            raise UsageError("--prompt locate:TEXT: the text must not contain <|ref|> tags (dsocr adds them)")
        return Prompt("locate", f"<image>\nLocate <|ref|>{value.strip()}<|/ref|> in the image.")
    if sep and kind == "custom":
        body = value.strip()
        if body.startswith(IMAGE_TOKEN):
            body = body[len(IMAGE_TOKEN) :].lstrip("\n")
        if not body:
            raise UsageError("--prompt custom:TEXT needs an instruction")
        if IMAGE_TOKEN in body:
            raise UsageError("--prompt custom:TEXT: <image> may appear only at the start (one page per prompt)")
        return Prompt("custom", f"{IMAGE_TOKEN}\n{body}")
    raise UsageError(f"unknown --prompt {spec!r} (choose from {', '.join(PROMPT_CHOICES)})")


def prompt_ids(prompt: Prompt, tokenizer: PreTrainedTokenizerBase, ids: TokenIds, num_image_tokens: int) -> list[int]:
    """[BOS] + tokens before ``<image>`` + image positions + tokens after it, as the official code tokenizes."""
    before, _, after = prompt.text.strip().partition(IMAGE_TOKEN)

    def encode(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False) if text else []

    return [ids.bos, *encode(before), *([ids.image] * num_image_tokens), *encode(after)]
