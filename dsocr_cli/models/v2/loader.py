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

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import DeepseekOcr2ForConditionalGeneration, PreTrainedTokenizerFast

from dsocr_cli.errors import ModelError
from dsocr_cli.models.files import check_tensor_headers, read_json
from dsocr_cli.models.loading import load_checked
from dsocr_cli.models.v1.loader import load_tokenizer
from dsocr_cli.models.v1.tokens import TokenIds
from dsocr_cli.models.v2.config import build_config, converted_config, is_converted
from dsocr_cli.models.v2.layout import spec_from_config, tensor_shapes


@dataclass
class LoadedV2:
    """A ready-to-run v2 model with its tokenizer and the token ids dsocr relies on."""

    model: DeepseekOcr2ForConditionalGeneration
    tokenizer: PreTrainedTokenizerFast
    token_ids: TokenIds
    source: Path

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype


def check_tensors(directory: Path, official: dict[str, Any]) -> None:
    """Compare every tensor's name and shape in the safetensors headers with the config's v2 layout."""
    expected = {name: tuple(shape) for name, shape in tensor_shapes(spec_from_config(official))}
    check_tensor_headers(directory, expected, "DeepSeek-OCR-2")


def load_v2(
    directory: str | Path,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> LoadedV2:
    """Validate and load a v2 checkpoint directory; every failure is a one-line ``ModelError``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ModelError(f"{directory}: model directory not found")
    official = read_json(directory / "config.json")
    if official.get("quantization_config"):
        raise ModelError(f"{directory}: a pre-quantized DeepSeek-OCR-2 checkpoint (not supported yet)")
    tokenizer, token_ids = load_tokenizer(directory)
    source = str(directory / "config.json")
    if is_converted(official):
        # transformers' own layout: its names are the native model's, checked by the loading info below
        config = converted_config(official, token_ids, source)
    else:
        config = build_config(official, token_ids, source)
        try:
            check_tensors(directory, official)
        except (KeyError, TypeError, IndexError) as exc:
            raise ModelError(f"{source}: incomplete vision/language sizes ({exc})") from None
    device = torch.device(device)
    model = load_checked(DeepseekOcr2ForConditionalGeneration, directory, config, dtype, device)
    model.eval()
    model.generation_config.bos_token_id = token_ids.bos
    model.generation_config.eos_token_id = token_ids.eos
    model.generation_config.pad_token_id = token_ids.eos
    return LoadedV2(model=model, tokenizer=tokenizer, token_ids=token_ids, source=directory)
