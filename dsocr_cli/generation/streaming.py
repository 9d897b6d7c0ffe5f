"""Token streaming: hand decoded text to a callback as soon as it is stable."""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers import PreTrainedTokenizerBase
from transformers.generation.streamers import BaseStreamer


class TextCallbackStreamer(BaseStreamer):
    """Decode generated tokens incrementally and pass each new piece of text to ``on_text``.

    The first ``put`` carries the prompt and is skipped. Text ending in an incomplete UTF-8 sequence
    (a multi-byte character split across tokens) is held back until it completes. Stop tokens are not
    printed: the EOS is a marker, not text. Only the tokens since the last newline are re-decoded, so
    a long page costs linear, not quadratic, decoding time.
    """

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, on_text: Callable[[str], None], stop_ids: frozenset[int]
    ) -> None:
        self.tokenizer = tokenizer
        self.on_text = on_text
        self.stop_ids = stop_ids
        self.tokens: list[int] = []
        self.start = 0
        self.emitted = 0
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.tokens.extend(token for token in value.flatten().tolist() if token not in self.stop_ids)
        text = self.tokenizer.decode(self.tokens[self.start :], skip_special_tokens=False)
        if not text.endswith("\ufffd"):
            self.flush(text)

    def flush(self, text: str) -> None:
        if len(text) > self.emitted:
            self.on_text(text[self.emitted :])
        self.emitted = len(text)
        if text.endswith("\n"):
            self.start, self.emitted = len(self.tokens), 0

    def end(self) -> None:
        self.flush(self.tokenizer.decode(self.tokens[self.start :], skip_special_tokens=False))
