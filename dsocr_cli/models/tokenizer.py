"""The tokenizer both families share (v2 keeps v1's decoder and vocabulary), and the token ids dsocr relies on.

The checkpoint's own ``tokenizer.json`` is used as is; the ids of the special tokens prompts and guards use
are read from it, never hard-coded. Importing this module is cheap (prompt tables use ``TokenIds`` at parse
time); transformers is imported when a tokenizer is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dsocr_cli.errors import ModelError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = {
    "bos": "<｜begin▁of▁sentence｜>",
    "eos": "<｜end▁of▁sentence｜>",
    "image": "<image>",
    "td_open": "<td>",
    "td_close": "</td>",
}


@dataclass(frozen=True)
class TokenIds:
    """Ids of the tokens prompts and guards rely on, read from the tokenizer."""

    bos: int
    eos: int
    image: int
    td_open: int
    td_close: int


def load_tokenizer(directory: Path) -> tuple[PreTrainedTokenizerFast, TokenIds]:
    """The checkpoint's own ``tokenizer.json``, used as is (no class-specific rewriting of its pipeline)."""
    from transformers import PreTrainedTokenizerFast

    tokenizer_file = directory / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise ModelError(f"{directory}: no tokenizer.json (the tokenizer is part of the model download)")
    try:
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_file=str(tokenizer_file),
            bos_token=SPECIAL_TOKENS["bos"],
            eos_token=SPECIAL_TOKENS["eos"],
            pad_token="<｜▁pad▁｜>",
            clean_up_tokenization_spaces=False,
        )
    except Exception as exc:  # tokenizers raises bare Exception subclasses for malformed files
        raise ModelError(f"{tokenizer_file}: cannot load tokenizer ({exc})") from None
    vocab = tokenizer.get_vocab()
    missing = [token for token in SPECIAL_TOKENS.values() if token not in vocab]
    if missing:
        raise ModelError(f"{tokenizer_file}: tokenizer lacks {', '.join(missing)} (not a DeepSeek-OCR tokenizer)")
    ids = TokenIds(**{key: vocab[token] for key, token in SPECIAL_TOKENS.items()})
    return tokenizer, ids
