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
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from dsocr_cli.testing.tokenizer import write_tokenizer

OFFICIAL_DIR = Path(__file__).parent / "official"
SHARD_NAME = "model-00001-of-000001.safetensors"
INDEX_NAME = "model.safetensors.index.json"


@dataclass(frozen=True)
class CheckpointSpec:
    """Sizes of a v1 checkpoint. ``official()`` is DeepSeek-OCR; ``tiny()`` is a fast test model.

    The SAM neck (256 channels), the 16x compressor (256 -> 512 -> 1024) and therefore the CLIP width
    (1024) are fixed by the official code, so only depths, SAM width and the decoder are scaled down.
    """

    hidden_size: int = 1280
    intermediate_size: int = 6848
    moe_intermediate_size: int = 896
    num_hidden_layers: int = 12
    num_attention_heads: int = 10
    n_routed_experts: int = 64
    num_experts_per_tok: int = 6
    n_shared_experts: int = 2
    first_k_dense_replace: int = 1
    vocab_size: int = 129280
    sam_width: int = 768
    sam_layers: int = 12
    sam_heads: int = 12
    sam_global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    clip_layers: int = 24
    clip_heads: int = 16
    clip_width: int = 1024
    downsample_channels: tuple[int, int] = (512, 1024)
    sam_neck_channels: int = 256
    sam_window_size: int = 14
    sam_pos_grid: int = 64
    clip_pos_grid: int = 16

    @classmethod
    def official(cls) -> CheckpointSpec:
        return cls()

    @classmethod
    def tiny(cls) -> CheckpointSpec:
        return cls(
            hidden_size=128,
            intermediate_size=256,
            moe_intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=2,
            n_routed_experts=8,
            num_experts_per_tok=3,
            sam_width=64,
            sam_layers=4,
            sam_heads=2,
            sam_global_attn_indexes=(1, 3),
            clip_layers=2,
        )


def tensor_shapes(spec: CheckpointSpec) -> Iterator[tuple[str, tuple[int, ...]]]:
    """Every tensor of the official checkpoint (the same names as the hub index) with its shape."""
    sam = "model.sam_model."
    w, head_dim = spec.sam_width, spec.sam_width // spec.sam_heads
    yield sam + "pos_embed", (1, spec.sam_pos_grid, spec.sam_pos_grid, w)
    yield sam + "patch_embed.proj.weight", (w, 3, 16, 16)
    yield sam + "patch_embed.proj.bias", (w,)
    for i in range(spec.sam_layers):
        b = f"{sam}blocks.{i}."
        rel = 2 * spec.sam_pos_grid - 1 if i in spec.sam_global_attn_indexes else 2 * spec.sam_window_size - 1
        yield b + "norm1.weight", (w,)
        yield b + "norm1.bias", (w,)
        yield b + "attn.rel_pos_h", (rel, head_dim)
        yield b + "attn.rel_pos_w", (rel, head_dim)
        yield b + "attn.qkv.weight", (3 * w, w)
        yield b + "attn.qkv.bias", (3 * w,)
        yield b + "attn.proj.weight", (w, w)
        yield b + "attn.proj.bias", (w,)
        yield b + "norm2.weight", (w,)
        yield b + "norm2.bias", (w,)
        yield b + "mlp.lin1.weight", (4 * w, w)
        yield b + "mlp.lin1.bias", (4 * w,)
        yield b + "mlp.lin2.weight", (w, 4 * w)
        yield b + "mlp.lin2.bias", (w,)
    neck = spec.sam_neck_channels
    yield sam + "neck.0.weight", (neck, w, 1, 1)
    yield sam + "neck.1.weight", (neck,)
    yield sam + "neck.1.bias", (neck,)
    yield sam + "neck.2.weight", (neck, neck, 3, 3)
    yield sam + "neck.3.weight", (neck,)
    yield sam + "neck.3.bias", (neck,)
    c2, c3 = spec.downsample_channels
    yield sam + "net_2.weight", (c2, neck, 3, 3)
    yield sam + "net_3.weight", (c3, c2, 3, 3)

    clip, cw = "model.vision_model.", spec.clip_width
    yield clip + "embeddings.class_embedding", (cw,)
    yield clip + "embeddings.patch_embedding.weight", (cw, 3, 14, 14)
    yield clip + "embeddings.position_embedding.weight", (spec.clip_pos_grid**2 + 1, cw)
    yield clip + "pre_layrnorm.weight", (cw,)
    yield clip + "pre_layrnorm.bias", (cw,)
    for i in range(spec.clip_layers):
        b = f"{clip}transformer.layers.{i}."
        yield b + "self_attn.qkv_proj.weight", (3 * cw, cw)
        yield b + "self_attn.qkv_proj.bias", (3 * cw,)
        yield b + "self_attn.out_proj.weight", (cw, cw)
        yield b + "self_attn.out_proj.bias", (cw,)
        yield b + "layer_norm1.weight", (cw,)
        yield b + "layer_norm1.bias", (cw,)
        yield b + "mlp.fc1.weight", (4 * cw, cw)
        yield b + "mlp.fc1.bias", (4 * cw,)
        yield b + "mlp.fc2.weight", (cw, 4 * cw)
        yield b + "mlp.fc2.bias", (cw,)
        yield b + "layer_norm2.weight", (cw,)
        yield b + "layer_norm2.bias", (cw,)

    h = spec.hidden_size
    yield "model.projector.layers.weight", (h, c3 + cw)
    yield "model.projector.layers.bias", (h,)
    yield "model.image_newline", (h,)
    yield "model.view_seperator", (h,)
    yield "model.embed_tokens.weight", (spec.vocab_size, h)
    for i in range(spec.num_hidden_layers):
        b = f"model.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            yield f"{b}self_attn.{proj}.weight", (h, h)
        if i < spec.first_k_dense_replace:
            yield b + "mlp.gate_proj.weight", (spec.intermediate_size, h)
            yield b + "mlp.up_proj.weight", (spec.intermediate_size, h)
            yield b + "mlp.down_proj.weight", (h, spec.intermediate_size)
        else:
            m = spec.moe_intermediate_size
            yield b + "mlp.gate.weight", (spec.n_routed_experts, h)
            for e in range(spec.n_routed_experts):
                yield f"{b}mlp.experts.{e}.gate_proj.weight", (m, h)
                yield f"{b}mlp.experts.{e}.up_proj.weight", (m, h)
                yield f"{b}mlp.experts.{e}.down_proj.weight", (h, m)
            s = m * spec.n_shared_experts
            yield b + "mlp.shared_experts.gate_proj.weight", (s, h)
            yield b + "mlp.shared_experts.up_proj.weight", (s, h)
            yield b + "mlp.shared_experts.down_proj.weight", (h, s)
        yield b + "input_layernorm.weight", (h,)
        yield b + "post_attention_layernorm.weight", (h,)
    yield "model.norm.weight", (h,)
    yield "lm_head.weight", (spec.vocab_size, h)


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
