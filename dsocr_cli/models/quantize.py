"""Quantize a loaded model (either family: the decoder is the same network) to nf4 or int8, save it, and load
it back without any bf16 copy of its weights.

What is quantized: every ``nn.Linear`` except ``lm_head`` (quantizing the output head costs accuracy on
every token for a small saving; bitsandbytes' transformers integration keeps it too), plus the routed
experts (``QuantizedExperts``: the fused 3-D expert weights hold most of the parameters and no stock
integration touches them; both families' expert classes, ``EXPERT_CLASSES``). int8 also keeps
``model.vision_tower`` (v1: SAM + CLIP, v2: SAM + the Qwen2 encoder): bitsandbytes' int8 matmul takes 2-D/3-D
activations only and SAM runs its linears on (B, H, W, C) maps. Embeddings, norms, convolutions and the
router stay in the model dtype.

Saved form (one safetensors file in dsocr's quantized cache, see ``dsocr_cli.quant``): linears in
bitsandbytes' own serialization (``Linear4bit``: packed ``weight`` plus ``weight.absmax``,
``weight.quant_map`` and ``weight.quant_state.bitsandbytes__nf4``; ``Linear8bitLt``: int8 ``weight`` plus
``SCB``), the experts' buffers, and every other parameter and buffer, non-persistent ones included so
nothing is recomputed. Loading builds the network on the meta device, swaps in empty quantized modules and
assigns the saved tensors.

Pre-quantized bitsandbytes checkpoints in the official layout (``config.json`` with a
``quantization_config``, made with the official remote code, where every expert is its own ``nn.Linear``)
cannot go through transformers' loader: its conversions fuse the per-expert linears into 3-D tensors
and split CLIP's qkv, which would mean cutting and joining packed 4-bit blobs (transformers 5.23 reports
the statistics as unexpected keys and the packed experts as mismatched shapes). ``write_dequantized``
turns such a checkpoint back into bf16 shards, which take the normal path once and are cached quantized.
Requantizing reproduces the hub's 4-bit and int8 codes; only the block/row scales are rounded once to
bf16 (<= 0.4%, against nf4's ~9% weight error).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections import defaultdict
from collections.abc import Callable
from itertools import chain
from pathlib import Path
from typing import Any

import bitsandbytes as bnb
import bitsandbytes.functional as bnbf
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from dsocr_cli.errors import ModelError
from dsocr_cli.models.files import INDEX_NAME, read_json, weight_files
from dsocr_cli.models.loading import Loaded, ready
from dsocr_cli.models.quantized_experts import BLOCKSIZE, EXPERT_CLASSES, EXPERT_KINDS, QuantizedExperts

KEEP_FULL_PRECISION = ("lm_head",)
INT8_ALSO_KEEPS = ("model.vision_tower",)
LLM_INT8_THRESHOLD = 6.0
"""Outlier threshold of LLM.int8() (transformers' ``llm_int8_threshold`` default)."""
COPIED_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
"""What a quantized (or dequantized) directory needs besides weights; the first two are required."""
STAGING_SHARD_BYTES = 2 * 2**30
"""Shard size when unpacking a pre-quantized checkpoint: bounds the bf16 tensors held in memory at once."""
MANIFEST_NAME = "dsocr-quantized.json"
"""Marks a directory as dsocr-quantized weights; written last, so its presence means the entry is complete."""
WEIGHTS_NAME = "model-quantized.safetensors"
FORMAT_VERSION = 1
"""Bump when the saved layout changes, so old cache entries are rebuilt rather than misread."""

# LLM.int8() quantizes activations from fp16 by design; bitsandbytes logs that on every matmul of a bf16 or
# float32 model, which would flood dsocr's stderr.
logging.getLogger("bitsandbytes.autograd._functions").addFilter(
    lambda record: not record.getMessage().startswith("MatMul8bitLt: inputs will be cast")
)


def keeps_full_precision(name: str, kind: str) -> bool:
    """Whether module ``name`` stays unquantized under ``kind``."""
    kept = KEEP_FULL_PRECISION + (INT8_ALSO_KEEPS if kind == "int8" else ())
    return any(name == prefix or name.startswith(prefix + ".") for prefix in kept)


def targets(model: nn.Module, kind: str) -> list[tuple[nn.Module, str, str, nn.Module]]:
    """(parent, attribute, qualified name, module) of every linear and experts block ``kind`` quantizes."""
    found = []
    for parent_name, parent in model.named_modules():
        for attribute, child in parent.named_children():
            name = f"{parent_name}.{attribute}" if parent_name else attribute
            if isinstance(child, EXPERT_CLASSES) or (type(child) is nn.Linear and not keeps_full_precision(name, kind)):
                found.append((parent, attribute, name, child))
    return found


def quantize_linear(weight: torch.Tensor, kind: str) -> dict[str, torch.Tensor]:
    """A linear weight in bitsandbytes' serialized form: the keys ``Linear4bit``/``Linear8bitLt`` save."""
    if kind == "nf4":
        packed, state = bnbf.quantize_4bit(
            weight.contiguous(), blocksize=BLOCKSIZE, quant_type="nf4", compress_statistics=False
        )
        return {"weight": packed, **{f"weight.{key}": value for key, value in state.as_dict(packed=True).items()}}
    rows, row_absmax, _ = bnbf.int8_vectorwise_quant(weight.to(torch.float16))
    return {"weight": rows, "SCB": row_absmax}


@torch.no_grad()
def quantized_state(model: nn.Module, kind: str, device: torch.device) -> dict[str, torch.Tensor]:
    """Everything the quantized cache stores, on the CPU; quantization itself runs on ``device``."""
    if kind not in EXPERT_KINDS:
        raise ValueError(f"unknown quantization {kind!r}")
    state: dict[str, torch.Tensor] = {}
    handled: set[str] = set()
    for _, _, name, module in targets(model, kind):
        if isinstance(module, EXPERT_CLASSES):
            tensors = dict(QuantizedExperts.quantize(module, kind, device).state_dict())
        else:
            tensors = quantize_linear(module.weight.to(device), kind)
            if module.bias is not None:
                tensors["bias"] = module.bias
        state.update({f"{name}.{key}": value.detach().cpu().contiguous() for key, value in tensors.items()})
        handled.update(f"{name}.{key}" for key, _ in module.named_parameters())
    for name, tensor in chain(model.named_parameters(), model.named_buffers()):
        if name not in handled:
            state[name] = tensor.detach().cpu().contiguous()
    return state


def empty_quantized(module: nn.Module, kind: str, dtype: torch.dtype) -> nn.Module:
    """The meta-device quantized stand-in for ``module``, to be filled from a saved state."""
    if isinstance(module, EXPERT_CLASSES):
        return QuantizedExperts(module.num_experts, module.hidden_dim, module.intermediate_dim, module.act_fn, kind)
    bias = module.bias is not None
    if kind == "nf4":
        return bnb.nn.Linear4bit(
            module.in_features,
            module.out_features,
            bias=bias,
            compute_dtype=dtype,
            compress_statistics=False,
            quant_type="nf4",
            device="meta",
        )
    return bnb.nn.Linear8bitLt(
        module.in_features,
        module.out_features,
        bias=bias,
        has_fp16_weights=False,
        threshold=LLM_INT8_THRESHOLD,
        device="meta",
    )


def assign(model: nn.Module, tensors: dict[str, torch.Tensor], device: torch.device, dtype: torch.dtype) -> None:
    """Put saved tensors into a meta-built model: bitsandbytes weights first, then plain parameters/buffers."""
    remaining = dict(tensors)
    stats: dict[str, list[str]] = defaultdict(list)
    for key in remaining:
        owner, sep, _ = key.partition(".weight.")
        if sep:
            stats[owner].append(key)
    for name, module in model.named_modules():
        if isinstance(module, bnb.nn.Linear4bit):
            data = remaining.pop(f"{name}.weight")
            state = {key.removeprefix(f"{name}.weight."): remaining.pop(key) for key in stats[name]}
            module.weight = bnb.nn.Params4bit.from_prequantized(data, state, device=device, module=module)
            module.weight.quant_state.dtype = dtype  # dequantize straight into the compute dtype
        elif isinstance(module, bnb.nn.Linear8bitLt):
            rows = remaining.pop(f"{name}.weight").to(device)
            scale = remaining.pop(f"{name}.SCB").to(device)
            module.weight = bnb.nn.Int8Params(rows, requires_grad=False, has_fp16_weights=False, CB=rows, SCB=scale)
    for name, tensor in remaining.items():
        owner_name, _, leaf = name.rpartition(".")
        owner = model.get_submodule(owner_name)
        if leaf in owner._parameters:
            value = tensor.to(device, dtype) if tensor.is_floating_point() else tensor.to(device)
            owner._parameters[leaf] = nn.Parameter(value, requires_grad=False)
        elif leaf in owner._buffers:
            owner._buffers[leaf] = tensor.to(device)
        else:
            raise KeyError(name)


def read_manifest(directory: Path) -> dict:
    """The manifest of a dsocr-quantized directory, checked against this dsocr's format."""
    manifest = read_json(directory / MANIFEST_NAME)
    if manifest.get("format") != FORMAT_VERSION or manifest.get("quant") not in EXPERT_KINDS:
        raise ModelError(
            f"{directory}: quantized with another dsocr version (format {manifest.get('format')}); delete it to rebuild"
        )
    return manifest


EmptyModel = Callable[[Path], tuple[nn.Module, Any, Any]]
"""A family's ``directory -> (network on the meta device, tokenizer, token ids)`` (``v1.loader.empty_v1``, ``v2.loader.empty_v2``)."""


def load_quantized(directory: Path, device: torch.device, dtype: torch.dtype, empty: EmptyModel) -> Loaded:
    """Load a directory written by ``dsocr_cli.quant.prepare_quantized`` into the network ``empty`` builds;
    failures are one-line ``ModelError``s."""
    kind = read_manifest(directory)["quant"]
    weights = directory / WEIGHTS_NAME
    model, tokenizer, token_ids = empty(directory)
    for parent, attribute, _, module in targets(model, kind):
        setattr(parent, attribute, empty_quantized(module, kind, dtype))
    try:
        tensors = load_file(str(weights), device=str(device))
    except torch.OutOfMemoryError:
        raise ModelError(f"{directory}: out of memory loading the {kind} weights on {device}") from None
    except Exception as exc:  # safetensors raises SafetensorError for truncated or corrupt files
        raise ModelError(f"{weights}: unreadable quantized weights ({exc}); delete {directory} to rebuild") from None
    try:
        assign(model, tensors, device, dtype)
    except KeyError as exc:
        raise ModelError(
            f"{weights}: tensor {exc.args[0]} missing or not part of the model; delete {directory} to rebuild"
        ) from None
    missing = [name for name, tensor in chain(model.named_parameters(), model.named_buffers()) if tensor.is_meta]
    if missing:
        raise ModelError(f"{weights}: missing tensor {missing[0]}; delete {directory} to rebuild")
    return ready(model, tokenizer, token_ids, directory)


def copy_model_files(source: Path, destination: Path) -> None:
    """config.json (without any ``quantization_config``) and the tokenizer files."""
    for name in COPIED_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, destination / name)
    config = read_json(destination / "config.json")
    if config.pop("quantization_config", None) is not None:
        (destination / "config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")


def dequantize_serialized(base: str, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    """One weight from its bitsandbytes serialization (``base`` = the weight's key) to bf16."""
    data = tensors[base]
    if data.dtype == torch.int8:
        scale = tensors[base.removesuffix("weight") + "SCB"].float()
        return (data.float() * (scale[:, None] / 127.0)).to(torch.bfloat16)
    stats = {key.removeprefix(base + "."): value for key, value in tensors.items() if key.startswith(base + ".")}
    state = bnbf.QuantState.from_dict(stats, device=data.device)
    return bnbf.dequantize_4bit(data, state).to(torch.bfloat16)


def serialized_groups(names: list[str]) -> dict[str, list[str]]:
    """Weight key -> its keys in a bitsandbytes-serialized state dict (plain tensors map to themselves)."""
    four_bit = {key.split(".quant_state.")[0] for key in names if ".quant_state.bitsandbytes__" in key}
    int8 = {key.removesuffix(".SCB") + ".weight" for key in names if key.endswith(".SCB")}

    def owner(key: str) -> str:
        parent = key.rpartition(".")[0]
        if ".quant_state.bitsandbytes__" in key:
            return key.split(".quant_state.")[0]
        if parent in four_bit:
            return parent
        if key.endswith((".SCB", ".weight_format")) and parent + ".weight" in int8:
            return parent + ".weight"
        return key

    groups: dict[str, list[str]] = defaultdict(list)
    for key in names:
        groups[owner(key)].append(key)
    return groups


def write_dequantized(source: Path, destination: Path) -> Path:
    """Write a pre-quantized official-layout checkpoint back as bf16 shards plus its config and tokenizer."""
    destination.mkdir(parents=True)
    handles = []
    for file in weight_files(source):
        try:
            handles.append(safe_open(str(file), framework="pt"))
        except Exception as exc:  # safetensors raises SafetensorError for corrupt headers
            raise ModelError(f"{file}: not a readable safetensors file ({exc})") from None
    where = {name: handle for handle in handles for name in handle.keys()}
    weight_map: dict[str, str] = {}
    shard: dict[str, torch.Tensor] = {}
    shard_bytes = 0

    def flush() -> None:
        nonlocal shard, shard_bytes
        name = f"model-{len(set(weight_map.values())) + 1:05d}.safetensors"
        save_file(shard, str(destination / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, name))
        shard, shard_bytes = {}, 0

    for base, keys in serialized_groups(sorted(where)).items():
        tensors = {key: where[key].get_tensor(key) for key in keys}
        if keys == [base]:
            tensor = tensors[base]
            value = tensor.to(torch.bfloat16) if tensor.is_floating_point() else tensor
        else:
            value = dequantize_serialized(base, tensors)
        shard[base] = value.contiguous()
        shard_bytes += value.numel() * value.element_size()
        if shard_bytes >= STAGING_SHARD_BYTES:
            flush()
    if shard:
        flush()
    total = sum((destination / name).stat().st_size for name in set(weight_map.values()))
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (destination / INDEX_NAME).write_text(json.dumps(index, indent=1), encoding="utf-8")
    copy_model_files(source, destination)
    return destination
