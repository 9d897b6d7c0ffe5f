"""Load an official DeepSeek-OCR v1 checkpoint directory into transformers' native twin of the network.

The directory is used exactly as the hub ships it (``config.json`` with ``model_type: deepseek_vl_v2``,
safetensors with the official tensor names, ``tokenizer.json``). Before any weight is read, the
safetensors headers are checked against the layout the config declares, so a broken checkpoint fails
with one line naming the tensor instead of a stack trace. Weights then go through transformers'
conversion mapping straight to the target device and dtype (memory-mapped, no float32 detour).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import UnlimitedOcrForConditionalGeneration

from dsocr_cli.models.files import check_tensor_headers
from dsocr_cli.models.loading import Loaded, empty_model, load_directory
from dsocr_cli.models.tokenizer import TokenIds
from dsocr_cli.models.v1.config import build_config
from dsocr_cli.models.v1.layout import spec_from_config, tensor_shapes

OPTIONAL_TENSORS = frozenset({"model.vision_model.embeddings.position_ids"})
"""A buffer some re-saved checkpoints carry; the official index does not."""


def check_tensors(directory: Path, official: dict[str, Any]) -> None:
    """Compare every tensor's name and shape in the safetensors headers with the config's layout."""
    expected = {name: tuple(shape) for name, shape in tensor_shapes(spec_from_config(official))}
    check_tensor_headers(directory, expected, "DeepSeek-OCR v1", OPTIONAL_TENSORS)


def model_config(directory: Path, official: dict[str, Any], token_ids: TokenIds) -> Any:
    """dsocr's config for an official v1 config.json (``config.build_config``)."""
    return build_config(official, token_ids, str(directory / "config.json"))


def load_v1(
    directory: str | Path,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Loaded:
    """Validate and load a v1 checkpoint directory (``loading.load_directory``); failures are one-line ``ModelError``s."""
    return load_directory(directory, device, dtype, UnlimitedOcrForConditionalGeneration, model_config, check_tensors)


def empty_v1(directory: Path) -> tuple[UnlimitedOcrForConditionalGeneration, Any, TokenIds]:
    """The v1 network on the meta device, with its tokenizer and token ids (``loading.empty_model``)."""
    return empty_model(directory, UnlimitedOcrForConditionalGeneration, model_config)
