"""Time the routed experts of a decode step on the CPU: transformers' grouped form against dsocr's threaded form.

Backs ``dsocr_cli.models.cpu_experts`` (and ``models.loading.EXPERTS_IMPLEMENTATION``). One call per MoE layer
of the model (11 at official sizes, 5 for the throughput benchmark's scaled model), float32, random
weights; each token routes to 6 distinct experts drawn uniformly, which is what trained, load-balanced
routers approach (random-weight routers, as in ``throughput.py``, concentrate tokens on fewer experts).
The two forms alternate over rounds (this machine is shared and noisy); reported: best ms per round of
all layers, read bandwidth over the hit experts' weights, the ratio, and whether the outputs are
bit-identical.

    python benchmarks/cpu_experts.py --json benchmarks/results/cpu_experts.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from transformers.integrations.moe import grouped_mm_experts_forward
from transformers.models.unlimited_ocr.configuration_unlimited_ocr import UnlimitedOcrTextConfig
from transformers.models.unlimited_ocr.modeling_unlimited_ocr import UnlimitedOcrTextExperts

from dsocr_cli.models.cpu_experts import threaded_experts_forward

SIZES = {"official": (1280, 896, 11), "scaled": (640, 448, 5)}
"""hidden, expert intermediate size, MoE layers."""
EXPERTS, TOP_K = 64, 6
FORMS = {"grouped_mm": grouped_mm_experts_forward, "dsocr_threaded": threaded_experts_forward}


def layers(size: str) -> list[torch.nn.Module]:
    hidden, intermediate, count = SIZES[size]
    config = UnlimitedOcrTextConfig(
        hidden_size=hidden, moe_intermediate_size=intermediate, n_routed_experts=EXPERTS,
        num_experts_per_tok=TOP_K, num_attention_heads=10, num_key_value_heads=10,
    )  # fmt: skip
    generator = torch.Generator().manual_seed(0)
    modules = []
    for _ in range(count):
        module = UnlimitedOcrTextExperts(config).eval()
        with torch.no_grad():
            for parameter in module.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.02)
        modules.append(module)
    return modules


def measure(size: str, tokens: int, rounds: int, repeats: int) -> dict:
    modules = layers(size)
    hidden, intermediate, _ = SIZES[size]
    generator = torch.Generator().manual_seed(tokens)
    states = torch.randn(tokens, hidden, generator=generator)
    index = torch.stack([torch.randperm(EXPERTS, generator=generator)[:TOP_K] for _ in range(tokens)])
    weights = torch.rand(tokens, TOP_K, generator=generator)
    best = dict.fromkeys(FORMS, float("inf"))
    outputs = {}
    with torch.inference_mode():
        for _ in range(rounds):
            for name, form in FORMS.items():
                outputs[name] = [form(module, states, index, weights) for module in modules]  # warm
                for _ in range(repeats):
                    started = time.perf_counter()
                    for module in modules:
                        form(module, states, index, weights)
                    best[name] = min(best[name], time.perf_counter() - started)
    hit = index.unique().numel()
    read = hit * 3 * hidden * intermediate * 4 * len(modules)
    identical = all(torch.equal(a, b) for a, b in zip(*outputs.values(), strict=True))
    return {
        "size": size, "tokens": tokens, "hit_experts_per_layer": hit,
        "most_rows_per_expert": int(torch.bincount(index.reshape(-1)).max()),
        "ms": {name: round(seconds * 1e3, 2) for name, seconds in best.items()},
        "gb_per_s": {name: round(read / seconds / 1e9, 1) for name, seconds in best.items()},
        "speedup": round(best["grouped_mm"] / best["dsocr_threaded"], 2), "identical": identical,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--sizes", nargs="+", choices=tuple(SIZES), default=list(SIZES))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    results = []
    for size in args.sizes:
        for tokens in args.tokens:
            row = measure(size, tokens, args.rounds, args.repeats)
            results.append(row)
            print(
                f"{size:8s} {tokens:3d} tokens ({row['hit_experts_per_layer']} experts/layer): grouped_mm "
                f"{row['ms']['grouped_mm']:7.1f} ms ({row['gb_per_s']['grouped_mm']:4.1f} GB/s), threaded "
                f"{row['ms']['dsocr_threaded']:7.1f} ms ({row['gb_per_s']['dsocr_threaded']:4.1f} GB/s): "
                f"{row['speedup']:.2f}x, identical {row['identical']}",
                flush=True,
            )
    write_results(args.json, results=results)


def write_results(path: Path, **payload: object) -> None:
    """``payload`` as JSON at ``path``, with the machine it was measured on."""
    machine = {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
               "torch": torch.__version__}  # fmt: skip
    path.write_text(json.dumps({"machine": machine, **payload}, indent=2) + "\n")


if __name__ == "__main__":
    main()
