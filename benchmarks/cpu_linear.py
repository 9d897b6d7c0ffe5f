"""Time the official decoder's linear shapes at decode sizes on the CPU: ``nn.Linear`` (``x @ W^T``) against
``W @ x^T`` and oneDNN's product (the forms ``dsocr_cli.models.cpu_linear`` chooses from).

Shapes (out x in): attention projection 1280 x 1280, shared experts' gate/up 3584 x 1280 and down 1280 x 1792,
the dense first layer's gate/up 13696 x 1280 and down 1280 x 6848; float32, random weights; the two forms
alternate over rounds, best of each; reported per row count: ms for all shapes, the ratios, bit-identity.

    python benchmarks/cpu_linear.py --json benchmarks/results/cpu_linear.json

Then the scaled and official output heads at one row, all three forms. ``--decode-step scaled|official`` also builds the throughput benchmark's v1 model (random weights) and times
its decode step at ``--step-rows`` rows (1,000-position caches) with oneDNN's product on and off at that row
count (``cpu_linear.ONEDNN_ROWS``), alternating.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from cpu_experts import write_results  # this script's folder is on sys.path
from torch.nn import functional as F

SHAPES = [(1280, 1280), (3584, 1280), (1280, 1792), (13696, 1280), (1280, 6848)]
ONEDNN = torch.ops.mkldnn._linear_pointwise
HEADS = {"scaled": (129280, 640), "official": (129280, 1280)}
"""The output head (vocabulary x hidden) of the throughput benchmark's scaled model and of the official one."""


def best(call, rounds: int) -> float:
    call()
    fastest = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        fastest = min(fastest, time.perf_counter() - started)
    return fastest


def decode_step(size: str, rounds: int, rows: int = 1) -> dict:
    """Best and median ms of the v1 model's decode step at ``rows`` rows with and without oneDNN at that size."""
    import statistics
    import tempfile

    from throughput import build_runner

    from dsocr_cli.models import cpu_linear

    with tempfile.TemporaryDirectory() as workdir:
        runner = build_runner("v1", size == "official", torch.device("cpu"), torch.float32, "none", Path(workdir))
    text = runner.model.config.text_config
    cache = runner.new_cache(rows)
    shape = (1, text.num_key_value_heads, 1000, cache.keys[0].shape[-1])
    for _ in range(rows):
        cache.append([(torch.randn(shape) * 0.1, torch.randn(shape) * 0.1) for _ in range(text.num_hidden_layers)])
    cache.reserve(rows, 1000 + 4 * rounds * 4)
    tokens, chosen, times = list(range(100, 100 + rows)), cpu_linear.ONEDNN_ROWS, {"onednn": [], "mkl": []}
    try:
        for _ in range(rounds):
            for form in times:
                cpu_linear.ONEDNN_ROWS = chosen | {rows} if form == "onednn" else chosen - {rows}
                runner.decode_step(tokens, cache)
                for _ in range(3):
                    started = time.perf_counter()
                    runner.decode_step(tokens, cache)
                    times[form].append(time.perf_counter() - started)
    finally:
        cpu_linear.ONEDNN_ROWS = chosen
    row = {"size": size, "rows": rows, **{f"{form}_best_ms": round(min(t) * 1e3, 1) for form, t in times.items()},
           **{f"{form}_median_ms": round(statistics.median(t) * 1e3, 1) for form, t in times.items()}}  # fmt: skip
    print(f"{size} {rows}-row decode step: MKL {row['mkl_best_ms']} ms best ({row['mkl_median_ms']} median), "
          f"oneDNN {row['onednn_best_ms']} ms ({row['onednn_median_ms']})", flush=True)  # fmt: skip
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--decode-step", choices=["scaled", "official"], action="append", default=[])
    parser.add_argument("--step-rows", type=int, nargs="+", default=[1])
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
            onednn = best(lambda pairs=pairs: [ONEDNN(x, w, None, "none", [], "") for x, w in pairs], args.rounds)
            identical = all(torch.equal(F.linear(x, w), torch.mm(w, x.T).T) for x, w in pairs)
            row = {"rows": rows, "linear_ms": round(linear * 1e3, 2), "transposed_ms": round(transposed * 1e3, 2),
                   "onednn_ms": round(onednn * 1e3, 2),
                   "linear_gb_per_s": round(read / linear / 1e9, 1), "transposed_gb_per_s": round(read / transposed / 1e9, 1),
                   "onednn_gb_per_s": round(read / onednn / 1e9, 1),
                   "speedup": round(linear / transposed, 2), "onednn_speedup": round(linear / onednn, 2),
                   "identical": identical}  # fmt: skip
            results.append(row)
            print(
                f"{rows:3d} rows: nn.Linear {row['linear_ms']:6.2f} ms ({row['linear_gb_per_s']:4.1f} GB/s), "
                f"W @ x^T {row['transposed_ms']:6.2f} ms ({row['transposed_gb_per_s']:4.1f} GB/s): "
                f"{row['speedup']:.2f}x, identical {identical}; oneDNN {row['onednn_ms']:6.2f} ms "
                f"({row['onednn_gb_per_s']:4.1f} GB/s): {row['onednn_speedup']:.2f}x",
                flush=True,
            )
    heads = []
    with torch.inference_mode():
        for size, shape in HEADS.items():
            weight, x = torch.randn(shape, generator=generator) * 0.02, torch.randn(1, shape[1], generator=generator)
            forms = {"linear": lambda w=weight, v=x: F.linear(v, w), "transposed": lambda w=weight, v=x: torch.mm(w, v.T).T,
                     "onednn": lambda w=weight, v=x: ONEDNN(v, w, None, "none", [], "")}  # fmt: skip
            row = {
                "head": size,
                **{f"{name}_ms": round(best(call, args.rounds) * 1e3, 2) for name, call in forms.items()},
            }
            row.update({f"{name}_gb_per_s": round(weight.numel() * 4 / row[f"{name}_ms"] / 1e6, 1) for name in forms})
            heads.append(row)
            print(f"{size} head at one row: " + ", ".join(f"{n} {row[n + '_ms']} ms ({row[n + '_gb_per_s']} GB/s)"
                                                         for n in forms), flush=True)  # fmt: skip
    steps = [decode_step(size, 4, rows) for size in args.decode_step for rows in args.step_rows]
    write_results(args.json, shapes=SHAPES, results=results, heads=heads, decode_steps=steps)


if __name__ == "__main__":
    main()
