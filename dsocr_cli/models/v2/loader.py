"""Load an official DeepSeek-OCR-2 checkpoint directory into transformers' native ``DeepseekOcr2ForConditionalGeneration``.

Both hub layouts load: the official one (``deepseek-ai/DeepSeek-OCR-2``) and transformers' converted one
(``deepseek-community/DeepSeek-OCR-2``: ``model_type: deepseek_ocr2``'s own config.json and the native
tensor names, ``config.converted_config``). The official directory is used as the hub ships it (``config.json`` with ``model_type: deepseek_vl_v2`` and
``architectures: [DeepseekOCR2ForCausalLM]``, safetensors with the official names, ``tokenizer.json``).
The config is built by dsocr (``config.build_config``; never ``from_pretrained`` on the config). Before
any weight is read the safetensors headers are checked against the layout the config declares, so a
broken checkpoint fails with one line naming the tensor; weights then go through transformers'
conversion mapping (``deepseek_ocr2``) to the target device and dtype, and any missing, unexpected or
mismatched key after conversion is a one-line ``ModelError``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import DeepseekOcr2ForConditionalGeneration

from dsocr_cli.models.files import check_tensor_headers
from dsocr_cli.models.loading import Loaded, empty_model, load_directory
from dsocr_cli.models.tokenizer import TokenIds
from dsocr_cli.models.v2.config import build_config, converted_config, is_converted
from dsocr_cli.models.v2.layout import spec_from_config, tensor_shapes


def check_tensors(directory: Path, official: dict[str, Any]) -> None:
    """Compare every tensor's name and shape in the safetensors headers with the config's v2 layout."""
    expected = {name: tuple(shape) for name, shape in tensor_shapes(spec_from_config(official))}
    check_tensor_headers(directory, expected, "DeepSeek-OCR-2")


def model_config(directory: Path, official: dict[str, Any], token_ids: TokenIds) -> Any:
    """The native config for ``directory``: built by dsocr from the official config.json, or read from
    transformers' converted one (``config.converted_config``)."""
    source = str(directory / "config.json")
    if is_converted(official):
        return converted_config(official, token_ids, source)
    return build_config(official, token_ids, source)


def load_v2(
    directory: str | Path,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Loaded:
    """Validate and load a v2 checkpoint directory of either layout (``loading.load_directory``); failures are
    one-line ``ModelError``s."""
    return load_directory(directory, device, dtype, DeepseekOcr2ForConditionalGeneration, model_config, check_layout)


def check_layout(directory: Path, official: dict[str, Any]) -> None:
    """The official layout's headers against its config; transformers' converted layout is checked by the
    loading info instead (its names are the native model's)."""
    if not is_converted(official):
        check_tensors(directory, official)


def empty_v2(directory: Path) -> tuple[DeepseekOcr2ForConditionalGeneration, Any, TokenIds]:
    """The v2 network on the meta device, with its tokenizer and token ids (``loading.empty_model``)."""
    return empty_model(directory, DeepseekOcr2ForConditionalGeneration, model_config)
