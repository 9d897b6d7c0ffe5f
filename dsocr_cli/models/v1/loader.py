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

from dsocr_cli.errors import ModelError
from dsocr_cli.models.files import check_tensor_headers, read_json
from dsocr_cli.models.loading import Loaded, load_checked, ready, refuse_prequantized
from dsocr_cli.models.tokenizer import load_tokenizer
from dsocr_cli.models.v1.config import build_config
from dsocr_cli.models.v1.layout import spec_from_config, tensor_shapes

OPTIONAL_TENSORS = frozenset({"model.vision_model.embeddings.position_ids"})
"""A buffer some re-saved checkpoints carry; the official index does not."""


def check_tensors(directory: Path, official: dict[str, Any]) -> None:
    """Compare every tensor's name and shape in the safetensors headers with the config's layout."""
    expected = {name: tuple(shape) for name, shape in tensor_shapes(spec_from_config(official))}
    check_tensor_headers(directory, expected, "DeepSeek-OCR v1", OPTIONAL_TENSORS)


def load_v1(
    directory: str | Path,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Loaded:
    """Validate and load a v1 checkpoint directory; every failure is a one-line ``ModelError``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ModelError(f"{directory}: model directory not found")
    official = read_json(directory / "config.json")
    refuse_prequantized(directory, official)
    tokenizer, token_ids = load_tokenizer(directory)
    config = build_config(official, token_ids, str(directory / "config.json"))
    try:
        check_tensors(directory, official)
    except (KeyError, TypeError) as exc:
        raise ModelError(f"{directory / 'config.json'}: incomplete vision/language sizes ({exc})") from None
    device = torch.device(device)
    model = load_checked(
        UnlimitedOcrForConditionalGeneration, directory, config, dtype, device, oom_advice=" (try --quant nf4)"
    )
    return ready(model, tokenizer, token_ids, directory)


def empty_v1(directory: Path) -> tuple[UnlimitedOcrForConditionalGeneration, Any, Any]:
    """The network ``directory``'s config.json describes, on the meta device (no memory), with its tokenizer
    and token ids: what ``dsocr_cli.models.quantize.load_quantized`` fills from dsocr's quantized cache."""
    tokenizer, token_ids = load_tokenizer(directory)
    config = build_config(read_json(directory / "config.json"), token_ids, str(directory / "config.json"))
    with torch.device("meta"):
        model = UnlimitedOcrForConditionalGeneration(config)
    return model, tokenizer, token_ids
