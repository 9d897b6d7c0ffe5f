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

from dsocr_cli.errors import ModelError
from dsocr_cli.models.files import check_tensor_headers, read_json
from dsocr_cli.models.loading import Loaded, load_checked, ready, refuse_prequantized
from dsocr_cli.models.tokenizer import TokenIds, load_tokenizer
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
    """Validate and load a v2 checkpoint directory; every failure is a one-line ``ModelError``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ModelError(f"{directory}: model directory not found")
    official = read_json(directory / "config.json")
    refuse_prequantized(directory, official)
    tokenizer, token_ids = load_tokenizer(directory)
    config = model_config(directory, official, token_ids)
    if not is_converted(official):  # transformers' own layout is checked by the loading info instead
        try:
            check_tensors(directory, official)
        except (KeyError, TypeError, IndexError) as exc:
            raise ModelError(f"{directory / 'config.json'}: incomplete vision/language sizes ({exc})") from None
    device = torch.device(device)
    model = load_checked(
        DeepseekOcr2ForConditionalGeneration, directory, config, dtype, device, oom_advice=" (try --quant nf4)"
    )
    return ready(model, tokenizer, token_ids, directory)


def empty_v2(directory: Path) -> tuple[DeepseekOcr2ForConditionalGeneration, Any, TokenIds]:
    """The network ``directory``'s config.json describes, on the meta device, with its tokenizer and token ids
    (what ``dsocr_cli.models.quantize.load_quantized`` fills from dsocr's quantized cache)."""
    tokenizer, token_ids = load_tokenizer(directory)
    config = model_config(directory, read_json(directory / "config.json"), token_ids)
    with torch.device("meta"):
        model = DeepseekOcr2ForConditionalGeneration(config)
    return model, tokenizer, token_ids
