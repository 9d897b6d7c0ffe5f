"""Pre-quantized bitsandbytes checkpoints in the official layout, as the hub's community uploads are made.

Those uploads come from the official remote code loaded with a ``BitsAndBytesConfig`` and saved with
``save_pretrained``: every ``nn.Linear`` of that code except ``lm_head`` (so each routed expert's own
``gate_proj``/``up_proj``/``down_proj`` too) is stored in bitsandbytes' serialization, and config.json gains
a ``quantization_config``. This writes the same thing from an unquantized checkpoint by running each
weight through bitsandbytes' own ``Linear4bit``/``Linear8bitLt`` and keeping their ``state_dict``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import bitsandbytes as bnb
import torch
from safetensors.torch import load_file, save_file
from transformers import BitsAndBytesConfig

from dsocr_cli.testing.checkpoint import INDEX_NAME, SHARD_NAME

NOT_LINEAR = ("embed_tokens", "position_embedding", "lm_head", "mlp.gate.weight")
"""2-D ``.weight`` tensors that are not ``nn.Linear`` weights in the remote code (or are kept, lm_head)."""


def is_quantized_linear(name: str, tensor: torch.Tensor) -> bool:
    return tensor.ndim == 2 and name.endswith(".weight") and not any(part in name for part in NOT_LINEAR)


def serialized(weight: torch.Tensor, quant: str) -> dict[str, torch.Tensor]:
    """bitsandbytes' saved form of one linear weight (QLoRA-style nf4 with double quantization, or LLM.int8())."""
    out_features, in_features = weight.shape
    if quant == "nf4":
        layer = bnb.nn.Linear4bit(in_features, out_features, bias=False, quant_type="nf4", compress_statistics=True)
        layer.weight = bnb.nn.Params4bit(weight, requires_grad=False, quant_type="nf4", compress_statistics=True)
    else:
        layer = bnb.nn.Linear8bitLt(in_features, out_features, bias=False, has_fp16_weights=False)
        layer.weight = bnb.nn.Int8Params(weight.to(torch.float16), requires_grad=False, has_fp16_weights=False)
    return dict(layer.to("cpu").state_dict())


def write_prequantized(source: Path, destination: Path, quant: str) -> Path:
    """Copy checkpoint ``source`` to ``destination`` with its linears quantized (``nf4`` or ``int8``)."""
    destination.mkdir(parents=True)
    tensors: dict[str, torch.Tensor] = {}
    for name, tensor in load_file(str(source / SHARD_NAME)).items():
        if is_quantized_linear(name, tensor):
            prefix = name.removesuffix("weight")
            tensors.update({prefix + key: value.contiguous() for key, value in serialized(tensor, quant).items()})
        else:
            tensors[name] = tensor
    save_file(tensors, str(destination / SHARD_NAME), metadata={"format": "pt"})
    index = {"metadata": {"total_size": (destination / SHARD_NAME).stat().st_size}, "weight_map": {}}
    index["weight_map"] = dict.fromkeys(tensors, SHARD_NAME)
    (destination / INDEX_NAME).write_text(json.dumps(index, indent=1))
    for file in source.iterdir():
        if file.suffix == ".json" and file.name not in (INDEX_NAME, "config.json"):
            shutil.copyfile(file, destination / file.name)
    config = json.loads((source / "config.json").read_text())
    settings = {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True}
    config["quantization_config"] = BitsAndBytesConfig(
        **(settings if quant == "nf4" else {"load_in_8bit": True})
    ).to_dict()
    (destination / "config.json").write_text(json.dumps(config, indent=1))
    return destination
