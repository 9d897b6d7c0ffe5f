"""Time the official decoder's linear shapes at decode sizes on the CPU: ``nn.Linear`` (``x @ W^T``) against
``W @ x^T`` (``dsocr_cli.models.cpu_linear``).

Shapes (out x in): attention projection 1280 x 1280, shared experts' gate/up 3584 x 1280 and down 1280 x 1792,
the dense first layer's gate/up 13696 x 1280 and down 1280 x 6848; float32, random weights; the two forms
alternate over rounds, best of each; reported per row count: ms for all shapes, the ratio, bit-identity.

    python benchmarks/cpu_linear.py --json benchmarks/results/cpu_linear.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from cpu_experts import write_results  # this script's folder is on sys.path
from torch.nn import functional as F

SHAPES = [(1280, 1280), (3584, 1280), (1280, 1792), (13696, 1280), (1280, 6848)]


def best(call, rounds: int) -> float:
    call()
    fastest = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        fastest = min(fastest, time.perf_counter() - started)
    return fastest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    weights = [torch.randn(out, inp, generator=generator) * 0.02 for out, inp in SHAPES]
    read = sum(w.numel() * 4 for w in weights)
    results = []
    with torch.inference_mode():
        for rows in args.rows:
            inputs = [torch.randn(rows, w.shape[1], generator=generator) for w in weights]
            pairs = list(zip(inputs, weights, strict=True))
            linear = best(lambda pairs=pairs: [F.linear(x, w) for x, w in pairs], args.rounds)
            transposed = best(lambda pairs=pairs: [torch.mm(w, x.T).T for x, w in pairs], args.rounds)
            identical = all(torch.equal(F.linear(x, w), torch.mm(w, x.T).T) for x, w in pairs)
            row = {"rows": rows, "linear_ms": round(linear * 1e3, 2), "transposed_ms": round(transposed * 1e3, 2),
                   "linear_gb_per_s": round(read / linear / 1e9, 1), "transposed_gb_per_s": round(read / transposed / 1e9, 1),
                   "speedup": round(linear / transposed, 2), "identical": identical}  # fmt: skip
            results.append(row)
            print(
                f"{rows:3d} rows: nn.Linear {row['linear_ms']:6.2f} ms ({row['linear_gb_per_s']:4.1f} GB/s), "
                f"W @ x^T {row['transposed_ms']:6.2f} ms ({row['transposed_gb_per_s']:4.1f} GB/s): "
                f"{row['speedup']:.2f}x, identical {identical}",
                flush=True,
            )
    write_results(args.json, shapes=SHAPES, results=results)


if __name__ == "__main__":
    main()
