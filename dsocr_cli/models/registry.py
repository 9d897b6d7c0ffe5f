"""Pick the model family from a checkpoint's config.json and load it behind one runner interface."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from dsocr_cli.errors import ModelError
from dsocr_cli.quant import MANIFEST_NAME, quantization

if TYPE_CHECKING:
    import torch

    from dsocr_cli.models.v1.runner import V1Runner

V1_ARCHITECTURES = frozenset({"DeepseekOCRForCausalLM"})


def load_runner(
    directory: str | Path, device: torch.device, dtype: torch.dtype, notify: Callable[[str], None] | None = None
) -> V1Runner:
    """The runner for the family ``directory`` holds; DeepSeek-OCR v1 is the one supported so far.

    A directory written by ``dsocr_cli.quant.prepare_quantized`` (it has a quantized manifest) loads its
    nf4/int8 weights directly; only then is bitsandbytes imported (its import notices go to ``notify``,
    never to stderr: ``dsocr_cli.quant.bitsandbytes_notices``).
    """
    from dsocr_cli.models.v1.loader import load_v1, read_json
    from dsocr_cli.models.v1.runner import V1Runner

    directory = Path(directory)
    config = read_json(directory / "config.json")
    architectures = set(config.get("architectures") or [])
    if config.get("model_type") == "deepseek_vl_v2" and (not architectures or architectures & V1_ARCHITECTURES):
        if (directory / MANIFEST_NAME).is_file():
            return V1Runner(quantization(notify).load_quantized_v1(directory, device=device, dtype=dtype))
        return V1Runner(load_v1(directory, device=device, dtype=dtype))
    raise ModelError(
        f"{directory}: unsupported model (model_type {config.get('model_type')!r}, "
        f"architectures {sorted(architectures)}); dsocr runs DeepSeek-OCR v1 (deepseek-ai/DeepSeek-OCR)"
    )
