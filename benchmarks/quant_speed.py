"""Measure load time, prefill time and decode tokens/s of each ``--quant``/dtype option on this machine.

The numbers decide what ``--quant auto`` picks on CPU (see ``dsocr_cli.quant``). Two random-weight
checkpoints in the official layout are measured: ``tiny`` (the test model) and ``medium`` (the official
decoder width, 64 experts of 896, the official vocabulary, 3 decoder layers, a shallower vision tower),
whose per-token cost has the official model's shape. Every option is loaded and measured once per round,
rounds interleave the options, and the best time per option is kept, so a busy machine biases nothing.

    python benchmarks/quant_speed.py --out benchmarks/quant_speed.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from dsocr_cli.models.registry import load_runner
from dsocr_cli.models.v1.layout import CheckpointSpec
from dsocr_cli.models.v1.preprocess import MODES
from dsocr_cli.models.v1.prompts import resolve_prompt
from dsocr_cli.quant import prepare_quantized, weight_memory
from dsocr_cli.testing.checkpoint import write_checkpoint
from dsocr_cli.testing.images import make_page_image

SPECS = {
    "tiny": CheckpointSpec.tiny(),
    "medium": CheckpointSpec(num_hidden_layers=3, sam_layers=4, sam_global_attn_indexes=(1, 3), clip_layers=6),
}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
DEFAULT_OPTIONS = ("none:float32", "none:bfloat16", "nf4:float32", "int8:float32")


class StepClock(LogitsProcessor):
    """Timestamps each generation step: the first is the end of prefill, the rest are decode steps."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.times.append(time.perf_counter())
        return scores


@torch.inference_mode()
def timed_generation(runner, request, new_tokens: int) -> tuple[float, float]:
    """(prefill seconds, decode tokens/s) of one greedy run of exactly ``new_tokens`` tokens."""
    clock = StepClock()
    started = time.perf_counter()
    runner.loaded.model.generate(
        **runner.model_inputs(request),
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
        logits_processor=LogitsProcessorList([clock]),
        pad_token_id=runner.loaded.token_ids.eos,
    )
    return clock.times[0] - started, (len(clock.times) - 1) / (clock.times[-1] - clock.times[0])


def measure(directory: Path, quant: str, dtype: torch.dtype, new_tokens: int, repeats: int) -> dict:
    """Load one option and time greedy generation (best of ``repeats``)."""
    source = directory if quant == "none" else prepare_quantized(directory, quant, torch.device("cpu"))
    started = time.perf_counter()
    runner = load_runner(source, torch.device("cpu"), dtype)
    load_s = time.perf_counter() - started
    request = runner.prepare(make_page_image(900, 700, seed=1), MODES["tiny"], resolve_prompt("free"))
    timed_generation(runner, request, 2)  # warm-up: allocator, kernels
    runs = [timed_generation(runner, request, new_tokens) for _ in range(repeats)]
    memory = weight_memory(runner.loaded.model)
    return {
        "load_s": load_s,
        "prefill_s": min(prefill for prefill, _ in runs),
        "decode_tokens_per_s": max(rate for _, rate in runs),
        "stored_weight_bytes": {name: c.stored_bytes for name, c in memory.categories.items()},
        "bf16_weight_bytes": {name: c.bf16_bytes for name, c in memory.categories.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="tiny,medium", help="comma-separated: tiny, medium")
    parser.add_argument("--options", default=",".join(DEFAULT_OPTIONS), help="comma-separated quant:dtype pairs")
    parser.add_argument("--tokens", type=int, default=16, help="tokens per timed decode run")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per option per round")
    parser.add_argument("--rounds", type=int, default=2, help="passes over all options (best kept)")
    parser.add_argument("--work", type=Path, help="where checkpoints and the quantized cache go (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_suffix(".json"))
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="dsocr-quant-speed-"))
    os.environ["DSOCR_CACHE"] = str(work / "cache")
    options = [tuple(option.split(":")) for option in args.options.split(",")]
    report: dict = {
        "machine": {
            "processor": platform.processor() or platform.machine(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch_threads": torch.get_num_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "torch": torch.__version__,
        },
        "tokens": args.tokens,
        "results": {},
    }
    for config in args.configs.split(","):
        directory = work / config
        if not (directory / "config.json").is_file():
            write_checkpoint(directory, SPECS[config], seed=0)
        best: dict[str, dict] = {}
        for _ in range(args.rounds):
            for quant, dtype in options:
                name = f"{quant}:{dtype}"
                result = measure(directory, quant, DTYPES[dtype], args.tokens, args.repeats)
                gc.collect()
                kept = best.setdefault(name, result)
                for key in ("load_s", "prefill_s"):
                    kept[key] = min(kept[key], result[key])
                kept["decode_tokens_per_s"] = max(kept["decode_tokens_per_s"], result["decode_tokens_per_s"])
                print(f"{config:<7} {name:<15} decode {result['decode_tokens_per_s']:7.2f} tok/s  "
                      f"prefill {result['prefill_s']:6.2f} s  load {result['load_s']:6.2f} s", flush=True)
        report["results"][config] = best
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
