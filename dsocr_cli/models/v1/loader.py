"""Load an official DeepSeek-OCR v1 checkpoint directory into transformers' native twin of the network.

The directory is used exactly as the hub ships it (``config.json`` with ``model_type: deepseek_vl_v2``,
safetensors with the official tensor names, ``tokenizer.json``). Before any weight is read, the
safetensors headers are checked against the layout the config declares, so a broken checkpoint fails
with one line naming the tensor instead of a stack trace. Weights then go through transformers'
conversion mapping straight to the target device and dtype (memory-mapped, no float32 detour).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerFast, UnlimitedOcrForConditionalGeneration

from dsocr_cli.errors import ModelError
from dsocr_cli.models.files import (  # noqa: F401  (INDEX_NAME, SINGLE_NAME, weight_files: re-exported)
    INDEX_NAME,
    SINGLE_NAME,
    check_tensor_headers,
    read_json,
    weight_files,
)
from dsocr_cli.models.loading import load_checked
from dsocr_cli.models.v1.config import build_config
from dsocr_cli.models.v1.layout import spec_from_config, tensor_shapes
from dsocr_cli.models.v1.tokens import TokenIds

OPTIONAL_TENSORS = frozenset({"model.vision_model.embeddings.position_ids"})
"""A buffer some re-saved checkpoints carry; the official index does not."""
SPECIAL_TOKENS = {
    "bos": "<｜begin▁of▁sentence｜>",
    "eos": "<｜end▁of▁sentence｜>",
    "image": "<image>",
    "td_open": "<td>",
    "td_close": "</td>",
}


@dataclass
class LoadedV1:
    """A ready-to-run v1 model with its tokenizer and the token ids dsocr relies on."""

    model: UnlimitedOcrForConditionalGeneration
    tokenizer: PreTrainedTokenizerFast
    token_ids: TokenIds
    source: Path

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype


def load_tokenizer(directory: Path) -> tuple[PreTrainedTokenizerFast, TokenIds]:
    """The checkpoint's own ``tokenizer.json``, used as is (no class-specific rewriting of its pipeline)."""
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


def check_tensors(directory: Path, official: dict[str, Any]) -> None:
    """Compare every tensor's name and shape in the safetensors headers with the config's layout."""
    expected = {name: tuple(shape) for name, shape in tensor_shapes(spec_from_config(official))}
    check_tensor_headers(directory, expected, "DeepSeek-OCR v1", OPTIONAL_TENSORS)


def load_v1(
    directory: str | Path,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> LoadedV1:
    """Validate and load a v1 checkpoint directory; every failure is a one-line ``ModelError``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ModelError(f"{directory}: model directory not found")
    official = read_json(directory / "config.json")
    if official.get("quantization_config"):
        raise ModelError(
            f"{directory}: a pre-quantized checkpoint; load it with --quant auto (dsocr re-packs it into its "
            "quantized cache, dsocr_cli.quant.prepare_quantized)"
        )
    tokenizer, token_ids = load_tokenizer(directory)
    config = build_config(official, token_ids, str(directory / "config.json"))
    try:
        check_tensors(directory, official)
    except (KeyError, TypeError) as exc:
        raise ModelError(f"{directory / 'config.json'}: incomplete vision/language sizes ({exc})") from None
    device = torch.device(device)
    model = load_checked(UnlimitedOcrForConditionalGeneration, directory, config, dtype, device, oom_advice=" (try --quant nf4)")
    return ready(model, tokenizer, token_ids, directory)


def ready(
    model: UnlimitedOcrForConditionalGeneration, tokenizer: PreTrainedTokenizerFast, token_ids: TokenIds, source: Path
) -> LoadedV1:
    """Inference mode and the generation ids every v1 model needs, however its weights were loaded."""
    model.eval()
    model.generation_config.bos_token_id = token_ids.bos
    model.generation_config.eos_token_id = token_ids.eos
    model.generation_config.pad_token_id = token_ids.eos
    return LoadedV1(model=model, tokenizer=tokenizer, token_ids=token_ids, source=source)
