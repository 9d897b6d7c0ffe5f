"""Random-weight DeepSeek-OCR-2 checkpoints in the official hub layout (``deepseek-ai/DeepSeek-OCR-2``).

Like the v1 writer (``checkpoint.py``): the official ``config.json`` structure with the spec's sizes
written into the same fields, the official tensor names and shapes (at official sizes: the 2,707 names
of the hub's ``model.safetensors.index.json``, ``dsocr_cli.models.v2.layout``), one safetensors shard
with its index, the official tokenizer files (v2's ``tokenizer_config.json`` and
``special_tokens_map.json`` are byte-identical to v1's) and the same stand-in ``tokenizer.json``.

Values are v1's deterministic per-tensor draws (``checkpoint.random_tensor``): reproducible bit for bit
from the spec and seed.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import save_file

from dsocr_cli.models.v2.layout import ENCODER_KEY, SAM_KEY, V2Spec, tensor_shapes
from dsocr_cli.testing.checkpoint import INDEX_NAME, OFFICIAL_DIR, SHARD_NAME, random_tensor
from dsocr_cli.testing.tokenizer import write_tokenizer

OFFICIAL_V2_DIR = Path(__file__).parent / "official_v2"


def official_config(spec: V2Spec) -> dict:
    """The official v2 ``config.json`` with this spec's sizes in the same fields; encoder sizes other than the
    official ones go into extra ``width.qwen2-0-5b`` fields (see ``dsocr_cli.models.v2.layout``)."""
    config = json.loads((OFFICIAL_V2_DIR / "config.json").read_text())
    decoder = {
        "first_k_dense_replace": spec.first_k_dense_replace,
        "hidden_size": spec.hidden_size,
        "intermediate_size": spec.intermediate_size,
        "moe_intermediate_size": spec.moe_intermediate_size,
        "n_routed_experts": spec.n_routed_experts,
        "n_shared_experts": spec.n_shared_experts,
        "num_attention_heads": spec.num_attention_heads,
        "num_key_value_heads": spec.num_attention_heads,
        "num_experts_per_tok": spec.num_experts_per_tok,
        "num_hidden_layers": spec.num_hidden_layers,
        "vocab_size": spec.vocab_size,
    }
    config["language_config"].update(decoder)
    config.update(decoder)
    config["projector_config"]["input_dim"] = spec.encoder_hidden
    config["projector_config"]["n_embed"] = spec.hidden_size
    widths = config["vision_config"]["width"]
    sam = widths[SAM_KEY]
    sam.update(
        global_attn_indexes=list(spec.sam_global_attn_indexes),
        heads=spec.sam_heads,
        layers=spec.sam_layers,
        width=spec.sam_width,
    )
    sam["downsample_channels"][0] = spec.sam_mid_channels
    widths[ENCODER_KEY]["dim"] = spec.encoder_hidden
    official = V2Spec.official()
    extra = {
        "layers": (spec.encoder_layers, official.encoder_layers),
        "heads": (spec.encoder_heads, official.encoder_heads),
        "kv_heads": (spec.encoder_kv_heads, official.encoder_kv_heads),
        "intermediate_size": (spec.encoder_intermediate, official.encoder_intermediate),
    }
    widths[ENCODER_KEY].update({key: value for key, (value, default) in extra.items() if value != default})
    return config


def write_checkpoint_v2(
    path: str | Path,
    spec: V2Spec | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.bfloat16,
) -> Path:
    """Write a complete random-weight v2 checkpoint directory (official layout) and return its path."""
    spec = spec or V2Spec.tiny()
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {name: random_tensor(name, shape, seed).to(dtype) for name, shape in tensor_shapes(spec)}
    save_file(tensors, str(path / SHARD_NAME), metadata={"format": "pt"})
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": {name: SHARD_NAME for name in tensors}}
    (path / INDEX_NAME).write_text(json.dumps(index, indent=2))
    (path / "config.json").write_text(json.dumps(official_config(spec), indent=1))
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(OFFICIAL_DIR / name, path / name)
    write_tokenizer(path / "tokenizer.json")
    (path / "dsocr_test_spec.json").write_text(json.dumps({"seed": seed, "family": "v2", **asdict(spec)}, indent=1))
    return path


def write_converted_checkpoint_v2(
    path: str | Path,
    spec: V2Spec | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.bfloat16,
) -> Path:
    """The same random checkpoint in transformers' converted layout (``deepseek-community/DeepSeek-OCR-2``):
    transformers' own config.json (``model_type: deepseek_ocr2``) and the native model's tensor names
    (``model.vision_tower.*``, ``model.language_model.*``, fused ``mlp.experts.gate_up_proj``).

    Written by loading the official-layout checkpoint into the native model and saving its state dict, so
    both layouts hold the same network. At official sizes this holds the whole model in memory once.
    """
    import tempfile

    from dsocr_cli.models.v2.loader import load_v2

    spec = spec or V2Spec.tiny()
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
        official = write_checkpoint_v2(Path(scratch) / "official", spec, seed=seed, dtype=dtype)
        loaded = load_v2(official, dtype=dtype)
        tensors = {name: tensor.contiguous() for name, tensor in loaded.model.state_dict().items()}
        config = loaded.model.config.to_dict()
        del loaded
    config["architectures"] = ["DeepseekOcr2ForConditionalGeneration"]
    save_file(tensors, str(path / SHARD_NAME), metadata={"format": "pt"})
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": {name: SHARD_NAME for name in tensors}}
    (path / INDEX_NAME).write_text(json.dumps(index, indent=2))
    (path / "config.json").write_text(json.dumps(config, indent=1))
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(OFFICIAL_DIR / name, path / name)
    write_tokenizer(path / "tokenizer.json")
    (path / "dsocr_test_spec.json").write_text(
        json.dumps({"seed": seed, "family": "v2", "layout": "converted", **asdict(spec)}, indent=1)
    )
    return path
