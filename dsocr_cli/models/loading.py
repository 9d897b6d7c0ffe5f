"""Loading a family's weights into its transformers class, checked: one rule for every family.

``from_pretrained`` with dsocr's config, SDPA attention and the chosen device; running out of memory, an
unreadable shard, or any missing, unexpected or misshaped tensor after transformers' name conversion is a
one-line ``ModelError`` naming the directory (exit 4). Nothing half-loaded is returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dsocr_cli.errors import ModelError
from dsocr_cli.models.tokenizer import TokenIds


def load_checked(
    model_class: Any, directory: Path, config: Any, dtype: torch.dtype, device: torch.device, oom_advice: str = ""
) -> Any:
    """``model_class.from_pretrained(directory, config=config, ...)`` with every failure as one line."""
    try:
        model, info = model_class.from_pretrained(
            directory,
            config=config,
            dtype=dtype,
            device_map=device,
            attn_implementation="sdpa",
            output_loading_info=True,
        )
    except torch.OutOfMemoryError:
        raise ModelError(f"{directory}: out of memory loading the weights on {device}{oom_advice}") from None
    except (OSError, RuntimeError, ValueError) as exc:
        raise ModelError(f"{directory}: cannot load weights ({str(exc).splitlines()[0]})") from None
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        names = sorted(info.get(kind) or [])
        if names:
            raise ModelError(f"{directory}: {kind.replace('_', ' ')} after conversion: {names[0]}")
    return model


@dataclass
class Loaded:
    """A ready-to-run model of any family with its tokenizer and the token ids dsocr relies on."""

    model: Any
    """The family's transformers model (``UnlimitedOcrForConditionalGeneration``, ``DeepseekOcr2ForConditionalGeneration``)."""
    tokenizer: Any
    token_ids: TokenIds
    source: Path

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype


def ready(model: Any, tokenizer: Any, token_ids: TokenIds, source: Path) -> Loaded:
    """Inference mode and the generation ids every model needs, however its weights were loaded
    (``from_pretrained``, the quantized cache, a benchmark's random init)."""
    model.eval()
    model.generation_config.bos_token_id = token_ids.bos
    model.generation_config.eos_token_id = token_ids.eos
    model.generation_config.pad_token_id = token_ids.eos
    return Loaded(model=model, tokenizer=tokenizer, token_ids=token_ids, source=source)


def refuse_prequantized(directory: Path, official: dict[str, Any]) -> None:
    """A pre-quantized checkpoint (``quantization_config`` in config.json) takes the quantized path, never this one."""
    if official.get("quantization_config"):
        raise ModelError(
            f"{directory}: a pre-quantized checkpoint; load it with --quant auto (dsocr re-packs it into its "
            "quantized cache, dsocr_cli.quant.prepare_quantized)"
        )
