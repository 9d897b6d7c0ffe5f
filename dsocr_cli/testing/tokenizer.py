"""A stand-in ``tokenizer.json`` for DeepSeek-OCR test checkpoints.

The official ``tokenizer.json`` is not obtainable here. The stand-in keeps what dsocr depends on: the
official vocabulary size (128,827 ids), every added/special token at its official id with its official
``special`` flag (taken from the official ``tokenizer_config.json``), byte-level BPE so any text
round-trips, and a few merges so ordinary words become multi-byte tokens as they do in the real one.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from tokenizers.pre_tokenizers import ByteLevel

OFFICIAL_TOKENIZER_CONFIG = Path(__file__).parent / "official" / "tokenizer_config.json"
BPE_VOCAB_END = 128000
WORDS = (
    "the document markdown convert image text table figure page title free parse describe detail locate "
    "grounding this in of and to a is for with on"
).split()


def _merges_for(words: list[str]) -> list[tuple[str, str]]:
    """Left-to-right merges that build each word (with and without its leading space) from bytes."""
    byte_char = {c: c for c in ByteLevel.alphabet()}
    merges: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for word in words:
        for form in (word, " " + word):
            encoded = "".join(byte_char.get(ch, ch) for ch in form.replace(" ", "Ġ"))
            built = encoded[0]
            for ch in encoded[1:]:
                pair = (built, ch)
                if pair not in seen:
                    seen.add(pair)
                    merges.append(pair)
                built += ch
    return merges


def build_tokenizer() -> Tokenizer:
    added = json.loads(OFFICIAL_TOKENIZER_CONFIG.read_text())["added_tokens_decoder"]
    vocab: dict[str, int] = {added[str(i)]["content"]: i for i in (0, 1, 2)}
    for ch in sorted(ByteLevel.alphabet()):
        vocab[ch] = len(vocab)
    merges = _merges_for(WORDS)
    for left, right in merges:
        vocab.setdefault(left + right, len(vocab))
    for filler in range(len(vocab), BPE_VOCAB_END):
        vocab[f"<|dsocr_unused_{filler}|>"] = filler
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    tokens = [
        AddedToken(
            entry["content"],
            single_word=entry["single_word"],
            lstrip=entry["lstrip"],
            rstrip=entry["rstrip"],
            normalized=entry["normalized"],
            special=entry["special"],
        )
        for _, entry in sorted(added.items(), key=lambda item: int(item[0]))
    ]
    tokenizer.add_tokens(tokens)
    for token_id, entry in added.items():
        actual = tokenizer.token_to_id(entry["content"])
        if actual != int(token_id):
            raise AssertionError(f"stand-in tokenizer put {entry['content']!r} at {actual}, not {token_id}")
    return tokenizer


def write_tokenizer(path: str | Path) -> Path:
    path = Path(path)
    build_tokenizer().save(str(path))
    return path
