"""Loading a family's weights into its transformers class, checked: one rule for every family.

``from_pretrained`` with dsocr's config, SDPA attention and the chosen device; running out of memory, an
unreadable shard, or any missing, unexpected or misshaped tensor after transformers' name conversion is a
one-line ``ModelError`` naming the directory (exit 4). Nothing half-loaded is returned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dsocr_cli.errors import ModelError
from dsocr_cli.models import cpu_experts, cpu_linear, sam_attention
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


EXPERTS_IMPLEMENTATION = {"cpu": cpu_experts.NAME, "cuda": "grouped_mm"}
"""The routed-experts implementation per device kind (transformers' ``grouped_mm``, ``batched_mm``, ``eager``,
or dsocr's ``cpu_experts.NAME``). CPU: dsocr's threaded form, which is grouped_mm except at float32 decode
sizes, where it measured 1.4-1.9x faster at 4-16 rows (of the others, grouped_mm is the fastest at every
batch size: eager ~15% slower at 8 rows, batched_mm 3-4x slower; BENCHMARKS.md, ``benchmarks/throughput.py
--experts``). CUDA: grouped_mm, transformers' own choice there (one grouped GEMM per projection), not yet
measured by dsocr. Quantized experts (``dsocr_cli.models.quantized_experts``) have their own forward."""


def ready(model: Any, tokenizer: Any, token_ids: TokenIds, source: Path) -> Loaded:
    """Inference mode, the device's experts implementation (``EXPERTS_IMPLEMENTATION``), decode-sized linear
    layers as ``W @ x^T`` on float32 CPUs (``cpu_linear``), SAM's global attention a slice at a time on CPUs
    (``sam_attention``) and the generation ids every model needs, however its weights were loaded
    (``from_pretrained``, the quantized cache, a benchmark's random init)."""
    model.eval()
    implementation = EXPERTS_IMPLEMENTATION.get(model.device.type)
    if implementation is not None and model.config.text_config._experts_implementation != implementation:
        model.set_experts_implementation(implementation)
    if model.device.type == "cpu" and model.dtype == torch.float32:
        cpu_linear.use_transposed_linears(model)
    if model.device.type == "cpu":
        sam_attention.use_sliced_sam_attention(model)
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


ConfigBuilder = Callable[[Path, dict[str, Any], TokenIds], Any]
"""A family's ``(directory, parsed config.json, token ids) -> transformers config``."""


def load_directory(
    directory: str | Path,
    device: torch.device | str,
    dtype: torch.dtype,
    model_class: Any,
    make_config: ConfigBuilder,
    check: Callable[[Path, dict[str, Any]], None],
) -> Loaded:
    """The one loading rule of every family: the directory exists, is not pre-quantized, has its tokenizer;
    the config is built by dsocr (``make_config``); ``check`` compares the safetensors headers with it (a
    ``KeyError``/``TypeError``/``IndexError`` there means the config lacks sizes); then ``load_checked``. Every
    failure is a one-line ``ModelError``."""
    from dsocr_cli.models.files import read_json
    from dsocr_cli.models.tokenizer import load_tokenizer

    directory = Path(directory)
    if not directory.is_dir():
        raise ModelError(f"{directory}: model directory not found")
    official = read_json(directory / "config.json")
    refuse_prequantized(directory, official)
    tokenizer, token_ids = load_tokenizer(directory)
    config = make_config(directory, official, token_ids)
    try:
        check(directory, official)
    except (KeyError, TypeError, IndexError) as exc:
        raise ModelError(f"{directory / 'config.json'}: incomplete vision/language sizes ({exc})") from None
    model = load_checked(model_class, directory, config, dtype, torch.device(device), oom_advice=" (try --quant nf4)")
    return ready(model, tokenizer, token_ids, directory)


def empty_model(directory: Path, model_class: Any, make_config: ConfigBuilder) -> tuple[Any, Any, TokenIds]:
    """The network ``directory``'s config.json describes, on the meta device (no memory), with its tokenizer and
    token ids: what ``dsocr_cli.models.quantize.load_quantized`` fills from dsocr's quantized cache."""
    from dsocr_cli.models.files import read_json
    from dsocr_cli.models.tokenizer import load_tokenizer

    tokenizer, token_ids = load_tokenizer(directory)
    config = make_config(directory, read_json(directory / "config.json"), token_ids)
    with torch.device("meta"):
        model = model_class(config)
    return model, tokenizer, token_ids
