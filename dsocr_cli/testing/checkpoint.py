"""Random-weight DeepSeek-OCR v1 checkpoints in the exact official hub layout.

The real weights (6.7 GB) cannot be downloaded where dsocr is developed and tested, so tests and
benchmarks run on checkpoints written here: the official ``config.json`` structure, the official tensor
names and shapes (for the official sizes: the same 2,710 names as the hub's
``model.safetensors.index.json``), a single bf16 safetensors shard with its index, and the official
tokenizer files plus a stand-in ``tokenizer.json`` (see ``tokenizer.py``).

Values are random but deterministic: each tensor is drawn from its own generator seeded by
``(seed, tensor name)``, so a checkpoint is reproducible bit for bit from its spec and seed.
"""

from __future__ import annotations

import json
import shutil
import zlib
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import save_file

from dsocr_cli.models.v1.layout import CheckpointSpec, tensor_shapes
from dsocr_cli.testing.tokenizer import write_tokenizer

OFFICIAL_DIR = Path(__file__).parent / "official"
SHARD_NAME = "model-00001-of-000001.safetensors"
INDEX_NAME = "model.safetensors.index.json"


def random_tensor(name: str, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """A float32 tensor whose scale keeps activations O(1) and makes argmax decisions clear-cut.

    Clear margins matter: golden tests compare greedy tokens and expert routing between two
    implementations, and near-ties would flip on rounding noise rather than on real differences.
    """
    gen = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
    values = torch.randn(shape, generator=gen)
    leaf = name.rsplit(".", 1)[-1]
    if name.endswith(("norm1.weight", "norm2.weight", "layernorm.weight", "layrnorm.weight", "norm.weight")) or (
        ".neck.1." in name or ".neck.3." in name
    ) and leaf == "weight":
        return 1.0 + 0.1 * values
    if leaf == "bias" or name.endswith(("class_embedding", "image_newline", "view_seperator")):
        return 0.1 * values
    if name.endswith(("pos_embed", "position_embedding.weight", "rel_pos_h", "rel_pos_w")):
        return 0.5 * values
    if name.endswith("embed_tokens.weight"):
        return values
    fan_in = 1
    for d in shape[1:]:
        fan_in *= d
    gain = 4.0 if name.endswith(("lm_head.weight", "mlp.gate.weight")) else 1.0
    return values * (gain / fan_in**0.5)


def official_config(spec: CheckpointSpec) -> dict:
    """The official ``config.json`` with this spec's sizes written into the same fields."""
    config = json.loads((OFFICIAL_DIR / "config.json").read_text())
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
    config["projector_config"]["input_dim"] = spec.downsample_channels[1] + spec.clip_width
    config["projector_config"]["n_embed"] = spec.hidden_size
    widths = config["vision_config"]["width"]
    widths["sam_vit_b"].update(
        downsample_channels=list(spec.downsample_channels),
        global_attn_indexes=list(spec.sam_global_attn_indexes),
        heads=spec.sam_heads,
        layers=spec.sam_layers,
        width=spec.sam_width,
    )
    widths["clip-l-14-224"].update(heads=spec.clip_heads, layers=spec.clip_layers, width=spec.clip_width)
    return config


def write_checkpoint(
    path: str | Path,
    spec: CheckpointSpec | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.bfloat16,
) -> Path:
    """Write a complete random-weight checkpoint directory and return its path."""
    spec = spec or CheckpointSpec.tiny()
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
    (path / "dsocr_test_spec.json").write_text(json.dumps({"seed": seed, **asdict(spec)}, indent=1))
    return path
