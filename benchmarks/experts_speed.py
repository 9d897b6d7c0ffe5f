"""Time one MoE layer's routed experts (official sizes: 64 experts, hidden 1280, intermediate 896, top-6).

Backs the choices documented in ``dsocr_cli.models.quantized_experts``: how the selected experts are
walked (tokens sorted by expert, as dsocr does, vs transformers' eager one-hot mask loop) and how int8 is
multiplied (weight-only: int8 rows cast to the compute dtype, vs bitsandbytes' LLM.int8() matmul, which
also quantizes the activations). Decode (1 token) and prefill-sized (256 tokens) batches, best of N.

    OMP_NUM_THREADS=1 python benchmarks/experts_speed.py --out benchmarks/experts_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import bitsandbytes.functional as bnbf
import torch
from torch.nn import functional as F
from transformers import UnlimitedOcrTextConfig
from transformers.models.unlimited_ocr.modeling_unlimited_ocr import (
    UnlimitedOcrTextExperts,
)

from dsocr_cli.models.quantized_experts import QuantizedExperts

HIDDEN, INTERMEDIATE, EXPERTS, TOP_K = 1280, 896, 64, 6


def eager_walk(experts: QuantizedExperts, hidden: torch.Tensor, index: torch.Tensor, weights: torch.Tensor):
    """transformers' eager loop (one-hot mask, ``torch.where`` per expert) over dsocr's quantized weights."""
    out = torch.zeros_like(hidden)
    mask = F.one_hot(index, num_classes=experts.num_experts).permute(2, 1, 0)
    for expert in torch.greater(mask.sum(dim=(-1, -2)), 0).nonzero()[:, 0].tolist():
        position, token = torch.where(mask[expert])
        gate, up = experts.project("gate_up_proj", expert, hidden[token]).chunk(2, dim=-1)
        result = experts.project("down_proj", expert, experts.act_fn(gate) * up) * weights[token, position, None]
        out.index_add_(0, token, result.to(out.dtype))
    return out


def llm_int8_linear(inputs: torch.Tensor, rows: torch.Tensor, row_absmax: torch.Tensor) -> torch.Tensor:
    """bitsandbytes' int8 matmul: activations quantized row-wise too, int32 product rescaled."""
    quantized, scale, _ = bnbf.int8_vectorwise_quant(inputs.to(torch.float16))
    product = bnbf.int8_linear_matmul(quantized, rows)
    return bnbf.int8_mm_dequant(product, scale, row_absmax).to(inputs.dtype)


def llm_int8_walk(experts: QuantizedExperts, hidden: torch.Tensor, index: torch.Tensor, weights: torch.Tensor):
    """dsocr's sorted walk with bitsandbytes' int8 matmul in place of the weight-only one."""
    original = experts.project

    def project(name: str, expert: int, inputs: torch.Tensor) -> torch.Tensor:
        return llm_int8_linear(inputs, getattr(experts, name)[expert], getattr(experts, f"{name}_scb")[expert])

    experts.project = project
    try:
        return experts(hidden, index, weights)
    finally:
        experts.project = original


def best_ms(call: Callable[[], object], repeats: int) -> float:
    call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return 1e3 * min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_suffix(".json"))
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    config = UnlimitedOcrTextConfig(
        hidden_size=HIDDEN,
        num_attention_heads=10,
        moe_intermediate_size=INTERMEDIATE,
        n_routed_experts=EXPERTS,
        hidden_act="silu",
    )
    config._experts_implementation = "grouped_mm"  # what a loaded model uses (transformers' default)
    reference = UnlimitedOcrTextExperts(config).requires_grad_(False)
    generator = torch.Generator().manual_seed(0)
    reference.gate_up_proj.copy_(torch.randn(reference.gate_up_proj.shape, generator=generator) / HIDDEN**0.5)
    reference.down_proj.copy_(torch.randn(reference.down_proj.shape, generator=generator) / INTERMEDIATE**0.5)
    reference = reference.to(torch.bfloat16)
    nf4 = QuantizedExperts.quantize(reference, "nf4", "cpu")
    int8 = QuantizedExperts.quantize(reference, "int8", "cpu")
    full = reference.to(dtype)
    results: dict = {"dtype": args.dtype, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "ms": {}}
    for tokens in (1, 256):
        hidden = torch.randn(tokens, HIDDEN, generator=generator).to(dtype)
        index = torch.stack([torch.randperm(EXPERTS, generator=generator)[:TOP_K] for _ in range(tokens)])
        weights = torch.softmax(torch.randn(tokens, TOP_K, generator=generator), dim=-1)
        cases = {
            "unquantized (transformers grouped_mm)": lambda: full(hidden, index, weights),
            "nf4 sorted walk (dsocr)": lambda: nf4(hidden, index, weights),
            "nf4 eager mask loop": lambda: eager_walk(nf4, hidden, index, weights),
            "int8 weight-only (dsocr)": lambda: int8(hidden, index, weights),
            "int8 bitsandbytes LLM.int8 matmul": lambda: llm_int8_walk(int8, hidden, index, weights),
        }
        with torch.inference_mode():
            timings = {name: round(best_ms(call, args.repeats), 2) for name, call in cases.items()}
        results["ms"][f"{tokens} tokens"] = timings
        for name, ms in timings.items():
            print(f"{tokens:>4} tokens  {name:<38} {ms:9.2f} ms", flush=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
