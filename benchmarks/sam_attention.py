"""Time SAM's relative-position attention on the CPU: transformers' SDPA forward against dsocr's sliced bias
(``dsocr_cli.models.sam_attention``), per layer and, with ``--encoder``, over a full-size Gundam page.

Layers: SAM-B's attention (width 768, 12 heads, random weights, float32) on a 1,024 px global view (64 x 64
patches, global attention), six 640 px tiles (40 x 40, global attention) and the global view's windowed layers
(25 windows of 14 x 14, the form dsocr leaves to transformers). ``--encoder v1|v2`` builds the family's
official sizes in memory (random weights, ~13 GB) and encodes one A4 page in Gundam mode both ways, one call
each. The layer calls alternate over rounds, best of each; outputs are compared bit for bit. ``--memory``
also measures how much one global-attention call grows the peak RSS of a fresh process, each form alone.

    python benchmarks/sam_attention.py [--encoder v1|v2] [--memory] --json benchmarks/results/sam_attention.json
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import MethodType, SimpleNamespace

import torch
from cpu_experts import write_results  # this script's folder is on sys.path
from transformers.models.unlimited_ocr.modeling_unlimited_ocr import UnlimitedOcrSamVisionSdpaAttention

from dsocr_cli.models.sam_attention import sam_attention_forward

LAYERS = [("global view", 1, 64, 0), ("six tiles", 6, 40, 0), ("windows", 25, 14, 14)]
"""(name, images, patches per side, window size) of SAM-B's attention calls on a Gundam page."""


def layer(window: int) -> torch.nn.Module:
    config = SimpleNamespace(image_size=1024, patch_size=16, num_attention_heads=12, hidden_size=768,
                             attention_dropout=0.0, qkv_bias=True, use_rel_pos=True)  # fmt: skip
    module = UnlimitedOcrSamVisionSdpaAttention(config, window).eval()
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_(0, 0.05)
    return module


def timed(call) -> tuple[float, torch.Tensor]:
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def compare(name: str, plain, sliced, rounds: int) -> dict:
    """Time two calls alternately (best of ``rounds`` each, the first call of each untimed when ``rounds`` > 1)
    and compare their results."""
    plain_s = sliced_s = float("inf")
    for round_ in range(rounds + (rounds > 1)):
        (plain_t, expected), (sliced_t, got) = timed(plain), timed(sliced)
        if round_ or rounds == 1:
            plain_s, sliced_s = min(plain_s, plain_t), min(sliced_s, sliced_t)
    row = {"call": name, "transformers_ms": round(plain_s * 1e3, 1), "sliced_ms": round(sliced_s * 1e3, 1),
           "speedup": round(plain_s / sliced_s, 2), "identical": torch.equal(expected, got)}  # fmt: skip
    print(f"{name}: transformers {row['transformers_ms']:.1f} ms, sliced {row['sliced_ms']:.1f} ms: "
          f"{row['speedup']:.2f}x, identical {row['identical']}", flush=True)  # fmt: skip
    return row


def encoder_rows(family: str) -> dict:
    """One full-size Gundam A4 page through the family's whole vision encoder, both ways."""
    from throughput import build_runner, make_pages

    with tempfile.TemporaryDirectory() as workdir:
        runner = build_runner(family, True, torch.device("cpu"), torch.float32, "none", Path(workdir))
    request = runner.request(runner.prepare_image(make_pages(1)[0].image, "gundam"), runner.resolve_prompt("markdown"))
    sliced_layers = [
        m for m in runner.model.modules() if vars(m).get("forward") is not None and hasattr(m, "rel_pos_h")
    ]

    def encode(sliced: bool) -> torch.Tensor:
        for module in sliced_layers:
            if sliced:
                module.forward = MethodType(sam_attention_forward, module)
            else:
                del module.forward
        return runner.encode_images([request], 1 << 40)[0]

    row = compare(f"{family} encoder, Gundam A4 page", lambda: encode(False), lambda: encode(True), 1)
    return {**row, "sliced_layers": len(sliced_layers)}


def peak_growth(form: str, index: int) -> int:
    """Bytes the process's peak RSS grows by over one call of layer ``LAYERS[index]`` in ``form`` (run in a
    fresh process: ``--peak``)."""
    _, images, side, window = LAYERS[index]
    module, inputs = layer(window), torch.randn(images, side, side, 768)
    with torch.inference_mode():
        before = peak_rss()
        module(inputs) if form == "transformers" else sam_attention_forward(module, inputs)
        return peak_rss() - before


def peak_rss() -> int:
    """This process's peak resident bytes (Linux ``VmHWM``: unlike ``ru_maxrss``, not inherited from the parent
    across fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def memory_rows() -> list[dict]:
    """Peak-memory growth of each global-attention layer call, each form in its own process."""
    rows = []
    for index, (name, _, _, window) in enumerate(LAYERS):
        if window:
            continue
        growth = {}
        for form in ("transformers", "sliced"):
            command = [sys.executable, __file__, "--peak", form, str(index), "--json", os.devnull]
            growth[form] = int(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
        row = {"call": name, **{f"{form}_peak_growth_mb": round(b / 2**20) for form, b in growth.items()}}
        print(f"{name}: peak RSS grows {row['transformers_peak_growth_mb']} MB with transformers' forward, "
              f"{row['sliced_peak_growth_mb']} MB sliced", flush=True)  # fmt: skip
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--encoder", choices=["v1", "v2"], action="append", default=[])
    parser.add_argument("--memory", action="store_true", help="also each global-attention call's peak memory")
    parser.add_argument("--peak", nargs=2, metavar=("FORM", "INDEX"), help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.peak:
        print(peak_growth(args.peak[0], int(args.peak[1])))
        return
    results = []
    with torch.inference_mode():
        for name, images, side, window in LAYERS:
            module, inputs = layer(window), torch.randn(images, side, side, 768)
            results.append(
                compare(
                    name,
                    lambda m=module, x=inputs: m(x)[0],
                    lambda m=module, x=inputs: sam_attention_forward(m, x)[0],
                    args.rounds,
                )  # fmt: skip
            )
        for family in args.encoder:
            results.append(encoder_rows(family))
    write_results(args.json, results=results, memory=memory_rows() if args.memory else [])


if __name__ == "__main__":
    main()
