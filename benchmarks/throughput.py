"""Throughput of dsocr's batched engine against the one-page-at-a-time baseline, in one run.

    python benchmarks/throughput.py --device cpu|cuda --pages N --tokens T [--full-size]
        [--batch-size B] [--quant none|nf4|int8] [--dtype auto|float32|bfloat16|float16] --json OUT.json

The model is DeepSeek-OCR v1's architecture with random weights: a scaled-down configuration by
default (``SCALED``, written as a checkpoint to a temporary directory and loaded through dsocr's own
loader), or the official sizes with ``--full-size`` (built in memory with transformers' random
initialisation, nothing written to disk). The pages are synthetic text pages at A4 and US-letter sizes
(144 dpi), converted in Gundam mode (dsocr's default) with dsocr's default loop guard. EOS is suppressed
so every page generates exactly T tokens and runs are comparable.

Both sides start from the same prepared inputs (page images in memory) and include preprocessing:

- baseline: the official Hugging Face ``infer()`` strategy, one ``model.generate`` call per page;
- engine: ``BatchedEngine`` (worker-thread preprocessing, batched vision encoder, continuous batching).

Reported per side: pages/s, generated tokens/s, time to first token (from the start of the side's run
to the first token of its first page), peak memory (RSS sampled every 10 ms; on CUDA also
``max_memory_allocated``), and whether the engine produced the baseline's tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psutil
import torch
import transformers
from rich.console import Console
from rich.table import Table
from transformers import UnlimitedOcrForConditionalGeneration
from transformers.generation.streamers import BaseStreamer
from transformers.utils import logging as hf_logging

from dsocr_cli import defaults
from dsocr_cli.devices import DTYPES, auto_dtype, resolve_device, resolve_dtype
from dsocr_cli.engine.backend import ConvertOptions, PageRequest
from dsocr_cli.engine.batched import BatchedEngine, auto_batch_size
from dsocr_cli.models.loading import ready
from dsocr_cli.models.registry import load_runner
from dsocr_cli.models.tokenizer import load_tokenizer
from dsocr_cli.models.v1.config import build_config
from dsocr_cli.models.v1.layout import CheckpointSpec
from dsocr_cli.models.v1.preprocess import MODES
from dsocr_cli.models.v1.prompts import resolve_prompt
from dsocr_cli.models.v1.runner import V1Runner
from dsocr_cli.quant import prepare_quantized
from dsocr_cli.results import Page
from dsocr_cli.testing.checkpoint import official_config, write_checkpoint
from dsocr_cli.testing.images import make_page_image
from dsocr_cli.testing.tokenizer import write_tokenizer

SCALED = CheckpointSpec(
    hidden_size=640,
    intermediate_size=3424,
    moe_intermediate_size=448,
    num_hidden_layers=6,
    num_attention_heads=10,
    sam_width=256,
    sam_layers=4,
    sam_heads=4,
    sam_global_attn_indexes=(1, 3),
    clip_layers=4,
)
"""About a quarter of the official decoder (half its width and depth; all 64 experts, top 6, and the full
129,280-token vocabulary kept) and a lighter vision encoder (SAM at a third of its width and depth, CLIP
at a sixth of its depth; CLIP's 1,024 width is fixed by the projector). On this CPU it keeps roughly the
official model's split between vision and decoding time (a Gundam page's encoder time is worth about 100
to 200 decode steps), so the batch-1 baseline is not dominated by either."""
PAGE_SIZES = ((1190, 1684), (1224, 1584))
"""A4 and US letter at 144 dpi, alternating."""
MODE = defaults.MODE
RSS_SAMPLE_SECONDS = 0.01


def machine(device: torch.device) -> dict[str, Any]:
    """What the figures were measured on."""
    flags: set[str] = set()
    model_name = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model_name = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    info: dict[str, Any] = {
        "cpu_model": model_name,
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_bf16": sorted(flags & {"avx512_bf16", "amx_bf16", "amx_tile"}) or "none",
        "avx512f": "avx512f" in flags,
        "ram_bytes": psutil.virtual_memory().total,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["gpu_memory_bytes"] = torch.cuda.get_device_properties(device).total_memory
    return info


def build_runner(full_size: bool, device: torch.device, dtype: torch.dtype, quant: str, workdir: Path) -> V1Runner:
    """The benchmark model: ``SCALED`` through dsocr's loader, or the official sizes built in memory.

    Quantized runs go through dsocr's own quantizer, which reads a checkpoint directory: the checkpoint
    is written to ``workdir`` (6.7 GB for the official sizes) and the quantized copy cached there too.
    """
    spec = CheckpointSpec.official() if full_size else SCALED
    if quant != "none":
        os.environ["DSOCR_CACHE"] = str(workdir / "cache")
        directory = write_checkpoint(workdir / "model", spec)
        return load_runner(prepare_quantized(directory, quant, device), device, dtype)
    if not full_size:
        return load_runner(write_checkpoint(workdir / "model", spec), device, dtype)
    write_tokenizer(workdir / "tokenizer.json")
    tokenizer, token_ids = load_tokenizer(workdir)
    config = build_config(official_config(spec), token_ids, "official sizes")
    with torch.device(device):
        model = UnlimitedOcrForConditionalGeneration._from_config(config, dtype=dtype, attn_implementation="sdpa")
    return V1Runner(ready(model, tokenizer, token_ids, workdir))


def make_pages(count: int) -> list[Page]:
    return [Page("synthetic", i + 1, make_page_image(*PAGE_SIZES[i % len(PAGE_SIZES)], seed=i)) for i in range(count)]


class FirstToken(BaseStreamer):
    """Notes when ``generate`` emits its first new token (the first ``put`` is the prompt)."""

    def __init__(self) -> None:
        self.puts = 0
        self.at: float | None = None

    def put(self, value: torch.Tensor) -> None:
        self.puts += 1
        if self.puts == 2:
            self.at = time.perf_counter()

    def end(self) -> None:
        pass


@contextmanager
def peak_memory(device: torch.device) -> Iterator[dict[str, int]]:
    """Peak RSS (sampled) and, on CUDA, peak allocated bytes while the block runs."""
    process = psutil.Process()
    peak = {"rss": process.memory_info().rss}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(RSS_SAMPLE_SECONDS):
            peak["rss"] = max(peak["rss"], process.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    sampler.start()
    try:
        yield peak
    finally:
        stop.set()
        sampler.join()
        peak["rss"] = max(peak["rss"], process.memory_info().rss)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            peak["cuda"] = torch.cuda.max_memory_allocated(device)


def summary(seconds: float, pages: int, tokens: int, first_token: float | None, memory: dict[str, int]) -> dict:
    return {
        "seconds": seconds,
        "pages": pages,
        "generated_tokens": tokens,
        "pages_per_s": pages / seconds,
        "tokens_per_s": tokens / seconds,
        "ttft_s": first_token,
        "peak_mem_bytes": memory.get("cuda", memory["rss"]),
        "peak_rss_bytes": memory["rss"],
    }


def run_baseline(runner: V1Runner, pages: list[Page], options: ConvertOptions) -> tuple[dict, list[list[int]]]:
    """One ``generate`` per page, as the official ``infer()`` does, with dsocr's guard and EOS suppressed."""
    model, ids = runner.loaded.model, runner.loaded.token_ids
    options = options.with_guard(runner.guard_defaults("image"))  # the family's guard, as the engine applies it
    outputs: list[list[int]] = []
    first_token: float | None = None
    with peak_memory(runner.loaded.device) as memory:
        started = time.perf_counter()
        for page in pages:
            request = runner.prepare(page.image, MODES[options.mode], resolve_prompt(options.prompt))
            probe = FirstToken()
            with torch.inference_mode():
                output = model.generate(
                    **runner.model_inputs(request),
                    max_new_tokens=options.max_new_tokens,
                    do_sample=False,
                    logits_processor=[runner.guard(options.ngram_size, options.ngram_window, len(request.input_ids))],
                    suppress_tokens=[ids.eos],
                    eos_token_id=ids.eos,
                    pad_token_id=ids.eos,
                    streamer=probe,
                )
            outputs.append(output[0, len(request.input_ids) :].tolist())
            if first_token is None and probe.at is not None:
                first_token = probe.at - started
        seconds = time.perf_counter() - started
    return summary(seconds, len(pages), sum(map(len, outputs)), first_token, memory), outputs


def run_engine(
    runner: V1Runner, pages: list[Page], options: ConvertOptions, batch_size: int
) -> tuple[dict, list[list[int]]]:
    engine = BatchedEngine(runner, batch_size=batch_size, suppress_eos=True)
    requests = [PageRequest(p.source, p.number, load=loader(p), options=options) for p in pages]
    outputs: list[list[int]] = []
    first_token: float | None = None
    with peak_memory(runner.loaded.device) as memory:
        started = time.perf_counter()
        for outcome in engine.run(requests):
            if outcome.error is not None:
                raise outcome.error
            assert outcome.result is not None
            outputs.append(outcome.result.token_ids)
            if outcome.first_token_at is not None:
                at = outcome.first_token_at - started
                first_token = at if first_token is None else min(first_token, at)
        seconds = time.perf_counter() - started
    return summary(seconds, len(pages), sum(map(len, outputs)), first_token, memory), outputs


def loader(page: Page) -> Callable[[], Page]:
    return lambda: page


def report(result: dict, console: Console) -> None:
    table = Table(title=f"dsocr throughput ({result['config']['model']})")
    for column in ("", "pages/s", "tokens/s", "TTFT s", "peak mem GB", "wall s"):
        table.add_column(column, justify="right")
    for side in ("baseline", "engine"):
        figures = result[side]
        table.add_row(
            side,
            f"{figures['pages_per_s']:.3f}",
            f"{figures['tokens_per_s']:.2f}",
            f"{figures['ttft_s']:.2f}",
            f"{figures['peak_mem_bytes'] / 1e9:.2f}",
            f"{figures['seconds']:.1f}",
        )
    console.print(table)
    config, info = result["config"], result["machine"]
    console.print(
        f"engine/baseline tokens/s: {result['ratio']:.2f}x at batch {config['batch_size']}; "
        f"{config['pages']} pages x {config['tokens']} tokens, {config['mode']} mode, {config['dtype']}, "
        f"quant {config['quant']}; engine tokens identical to baseline on "
        f"{result['identical_pages']}/{config['pages']} pages"
    )
    console.print(
        f"machine: {info['cpu_model']}, {info['cpu_cores']} cores, torch {info['torch']}, bf16 {info['cpu_bf16']}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--pages", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--full-size", action="store_true", help="official sizes (default: the scaled-down model)")
    parser.add_argument("--batch-size", default="auto", help="engine batch size, or auto")
    parser.add_argument("--quant", choices=("none", "nf4", "int8"), default="none")
    parser.add_argument(
        "--dtype", choices=("auto", *DTYPES), default="auto", help="as dsocr's --dtype (default: what auto picks)"
    )
    parser.add_argument("--json", type=Path, required=True, help="write the results here")
    args = parser.parse_args(argv)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    console = Console(stderr=True)
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    options = ConvertOptions(mode=MODE, max_new_tokens=args.tokens)
    with tempfile.TemporaryDirectory(prefix="dsocr-bench-") as workdir:
        started = time.perf_counter()
        runner = build_runner(args.full_size, device, dtype, args.quant, Path(workdir))
        build_seconds = time.perf_counter() - started
        batch_size = auto_batch_size(runner, options) if args.batch_size == "auto" else int(args.batch_size)
        pages = make_pages(args.pages)
        console.print(
            f"model: {'official sizes' if args.full_size else 'scaled-down'} v1, random weights, {dtype}, "
            f"built in {build_seconds:.1f} s; warming up"
        )
        run_baseline(runner, pages[:1], ConvertOptions(mode=MODE, max_new_tokens=2))
        console.print("baseline: one generate call per page")
        baseline, baseline_tokens = run_baseline(runner, pages, options)
        console.print(f"engine: batch size {batch_size}")
        engine, engine_tokens = run_engine(runner, pages, options, batch_size)
    text = runner.loaded.model.config.text_config
    result = {
        "baseline": baseline,
        "engine": engine,
        "ratio": engine["tokens_per_s"] / baseline["tokens_per_s"],
        "identical_pages": sum(a == b for a, b in zip(baseline_tokens, engine_tokens)),
        "config": {
            "model": "official sizes" if args.full_size else "scaled-down",
            "spec": asdict(CheckpointSpec.official() if args.full_size else SCALED),
            "decoder_parameters": sum(p.numel() for p in runner.loaded.model.model.language_model.parameters()),
            "parameters": sum(p.numel() for p in runner.loaded.model.parameters()),
            "layers": text.num_hidden_layers,
            "device": str(device),
            "dtype": str(dtype).removeprefix("torch."),
            "dtype_requested": args.dtype,
            "dtype_auto": auto_dtype(device)[1],
            "quant": args.quant,
            "mode": MODE,
            "page_sizes": [list(size) for size in PAGE_SIZES],
            "pages": args.pages,
            "tokens": args.tokens,
            "batch_size": batch_size,
            "guard": {"ngram_size": options.ngram_size, "ngram_window": options.ngram_window},
            "eos": "suppressed",
            "experts_implementation": runner.loaded.model.config.text_config._experts_implementation,
        },
        "machine": machine(device),
    }
    args.json.write_text(json.dumps(result, indent=2))
    report(result, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
