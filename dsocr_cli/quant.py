"""bitsandbytes quantization settings for loading a model in nf4 or int8."""

from __future__ import annotations

import torch
from transformers import BitsAndBytesConfig

from dsocr_cli.errors import UsageError

QUANT_CHOICES = ("none", "nf4", "int8")
KEEP_FULL_PRECISION = ["lm_head"]
"""Quantizing the output head costs accuracy on every token for a small saving; bitsandbytes keeps it by default too."""
INT8_ALSO_KEEPS = ["model.vision_tower"]
"""bitsandbytes' int8 matmul accepts 2-D/3-D activations only; SAM runs its linears on (B, H, W, C) maps."""


def bnb_config(quant: str, compute_dtype: torch.dtype) -> BitsAndBytesConfig | None:
    """The ``BitsAndBytesConfig`` for ``quant`` (None for ``none``)."""
    if quant == "none":
        return None
    if quant == "nf4":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=compute_dtype,
            llm_int8_skip_modules=KEEP_FULL_PRECISION,
        )
    if quant == "int8":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=KEEP_FULL_PRECISION + INT8_ALSO_KEEPS)
    raise UsageError(f"unknown --quant {quant!r} (choose from {', '.join(QUANT_CHOICES)})")
