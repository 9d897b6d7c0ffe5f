"""Throughput of dsocr's batched engine against the one-page-at-a-time baseline, in one run.

    python benchmarks/throughput.py --device cpu|cuda --pages N --tokens T [--family v1|v2] [--mode M]
        [--full-size] [--batch-size B] [--quant none|nf4|int8] [--dtype auto|float32|bfloat16|float16]
        [--experts auto|dsocr_threaded|grouped_mm|batched_mm|eager] [--prefill auto|single|batched] [--compile]
        [--no-stages] --json OUT.json

The model is DeepSeek-OCR v1's (or with ``--family v2`` DeepSeek-OCR-2's) architecture with random
weights: a scaled-down configuration by default (``SCALED``/``SCALED_V2``, written as a checkpoint to a
temporary directory and loaded through dsocr's own loader), or the official sizes with ``--full-size``
(built in memory with transformers' random initialisation, nothing written to disk). The pages are
synthetic text pages at A4 and US-letter sizes (144 dpi), converted in ``--mode`` (default Gundam,
dsocr's default) with the family's loop guard for images. EOS is suppressed so every page generates
exactly T tokens and runs are comparable.

Both sides start from the same prepared inputs (page images in memory) and include preprocessing:

- baseline: the official Hugging Face ``infer()`` strategy, one ``model.generate`` call per page;
- engine: ``BatchedEngine`` (worker-thread preprocessing, batched vision encoder, continuous batching).

Reported per side: pages/s, generated tokens/s, time to first token (from the start of the side's run
to the first token of its first page), peak memory (RSS sampled every 10 ms; on CUDA also
``max_memory_allocated``), and whether the engine produced the baseline's tokens (pages identical, and
the share of token positions that agree).

Roofline (``roofline.py``): the machine's read bandwidth and matmul peak are measured at the start, every
engine decode step is timed and its bytes and FLOPs counted (the routed experts it actually used), and
the run reports achieved / bound for the engine's decode steps.

Stages (unless ``--no-stages``): one A4 page of the same kind, in a PDF, taken through every stage one
after the other at batch 1 — render (PyMuPDF at 144 dpi, as ``dsocr convert``), preprocess, vision
encoder, prefill, T decode steps, post-processing (Markdown), write (atomic file write) — so the next
bottleneck is visible.
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
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import psutil
import torch
import transformers
from rich.console import Console
from rich.table import Table
from transformers import DeepseekOcr2ForConditionalGeneration, UnlimitedOcrForConditionalGeneration
from transformers.generation.streamers import BaseStreamer
from transformers.utils import logging as hf_logging

from dsocr_cli import defaults
from dsocr_cli.devices import DTYPES, auto_dtype, resolve_device, resolve_dtype
from dsocr_cli.engine.backend import ConvertOptions, PageRequest
from dsocr_cli.engine.batched import VISION_SHARE, BatchedEngine, auto_batch_size, free_memory
from dsocr_cli.generation.compiled import BACKEND
from dsocr_cli.models.family import FamilyRunner
from dsocr_cli.models.loading import ready
from dsocr_cli.models.registry import load_runner
from dsocr_cli.models.tokenizer import load_tokenizer
from dsocr_cli.models.v1 import config as v1_config
from dsocr_cli.models.v1.layout import CheckpointSpec
from dsocr_cli.models.v1.runner import V1Runner
from dsocr_cli.models.v2 import config as v2_config
from dsocr_cli.models.v2.layout import V2Spec
from dsocr_cli.models.v2.runner import V2Runner
from dsocr_cli.quant import prepare_quantized
from dsocr_cli.results import Page
from dsocr_cli.testing import checkpoint as v1_checkpoint
from dsocr_cli.testing import checkpoint_v2
from dsocr_cli.testing.images import make_page_image
from dsocr_cli.testing.tokenizer import write_tokenizer

sys.path.insert(0, str(Path(__file__).parent))
from roofline import StepMeter, matmul_peak, read_bandwidth, summarise  # noqa: E402
from stages import stage_breakdown  # noqa: E402

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
SCALED_V2 = V2Spec(
    hidden_size=640,
    intermediate_size=3424,
    moe_intermediate_size=448,
    num_hidden_layers=6,
    num_attention_heads=10,
    sam_width=256,
    sam_layers=4,
    sam_heads=4,
    sam_global_attn_indexes=(1, 3),
    encoder_layers=4,
)
"""v2 scaled as ``SCALED``: the same decoder, SAM likewise reduced, the Qwen2 encoder at its official width
(896, fixed by the projector) with 4 of its 24 layers."""
PAGE_SIZES = ((1190, 1684), (1224, 1584))
"""A4 and US letter at 144 dpi, alternating."""
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


FAMILIES: dict[str, dict[str, Any]] = {
    "v1": {
        "scaled": SCALED,
        "official": CheckpointSpec.official(),
        "write": v1_checkpoint.write_checkpoint,
        "official_config": v1_checkpoint.official_config,
        "build_config": v1_config.build_config,
        "model_class": UnlimitedOcrForConditionalGeneration,
        "runner": V1Runner,
    },
    "v2": {
        "scaled": SCALED_V2,
        "official": V2Spec.official(),
        "write": checkpoint_v2.write_checkpoint_v2,
        "official_config": checkpoint_v2.official_config,
        "build_config": v2_config.build_config,
        "model_class": DeepseekOcr2ForConditionalGeneration,
        "runner": V2Runner,
    },
}


def build_runner(
    family: str, full_size: bool, device: torch.device, dtype: torch.dtype, quant: str, workdir: Path
) -> FamilyRunner:
    """The benchmark model: the family's scaled spec through dsocr's loader, or the official sizes built in memory.

    Quantized runs go through dsocr's own quantizer, which reads a checkpoint directory: the checkpoint
    is written to ``workdir`` (6.7 GB for the official sizes) and the quantized copy cached there too.
    """
    table = FAMILIES[family]
    spec = table["official"] if full_size else table["scaled"]
    if quant != "none":
        os.environ["DSOCR_CACHE"] = str(workdir / "cache")
        directory = table["write"](workdir / "model", spec)
        return load_runner(prepare_quantized(directory, quant, device), device, dtype)
    if not full_size:
        return load_runner(table["write"](workdir / "model", spec), device, dtype)
    write_tokenizer(workdir / "tokenizer.json")
    tokenizer, token_ids = load_tokenizer(workdir)
    config = table["build_config"](table["official_config"](spec), token_ids, "official sizes")
    with torch.device(device):
        model = table["model_class"]._from_config(config, dtype=dtype, attn_implementation="sdpa")
    return table["runner"](ready(model, tokenizer, token_ids, workdir))


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


def run_baseline(runner: FamilyRunner, pages: list[Page], options: ConvertOptions) -> tuple[dict, list[list[int]]]:
    """One ``generate`` per page, as the official ``infer()`` does, with dsocr's guard and EOS suppressed."""
    model, ids = runner.loaded.model, runner.loaded.token_ids
    options = options.with_guard(runner.guard_defaults("image"))  # the family's guard, as the engine applies it
    outputs: list[list[int]] = []
    first_token: float | None = None
    with peak_memory(runner.loaded.device) as memory:
        started = time.perf_counter()
        for page in pages:
            request = runner.request(runner.prepare_image(page.image, options.mode), runner.resolve_prompt(options.prompt))
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
    engine: BatchedEngine, pages: list[Page], options: ConvertOptions, meter: StepMeter | None = None
) -> tuple[dict, list[list[int]]]:
    runner = engine.runner
    requests = [PageRequest(p.source, p.number, load=loader(p), options=options) for p in pages]
    outputs: list[list[int]] = []
    first_token: float | None = None
    with peak_memory(runner.device) as memory, meter.measuring() if meter else nullcontext():
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


def token_agreement(baseline: list[list[int]], engine: list[list[int]]) -> float:
    """Share of token positions where the engine chose the baseline's token (pages compared position by position)."""
    total = sum(max(len(a), len(b)) for a, b in zip(baseline, engine, strict=True))
    same = sum(x == y for a, b in zip(baseline, engine, strict=True) for x, y in zip(a, b, strict=False))
    return same / total if total else 1.0


def report(result: dict, console: Console) -> None:
    table = Table(title=f"dsocr throughput ({result['config']['family']}, {result['config']['model']})")
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
        f"quant {config['quant']}, experts {config['experts_implementation']}, prefill "
        f"{'batched' if config['batched_prefill'] else 'single'}{', compiled' if config['compiled'] else ''}; "
        f"engine tokens identical to "
        f"baseline on {result['identical_pages']}/{config['pages']} pages "
        f"({100 * result['token_agreement']:.1f}% of positions)"
    )
    roof, limits = result["roofline"], result["limits"]
    if roof.get("steps"):
        console.print(
            f"roofline: engine decode {roof['step_ms']:.1f} ms/step at {roof['mean_rows']:.1f} rows, "
            f"{roof['bytes_per_step'] / 1e6:.0f} MB and {roof['flops_per_step'] / 1e9:.2f} GFLOP per step; "
            f"read {roof['achieved_bytes_per_s'] / 1e9:.1f} of {limits['read_bytes_per_s'] / 1e9:.1f} GB/s measured "
            f"= {roof['of_memory_bound']:.2f} of the memory bound ({roof['memory_bound_ms']:.1f} ms), "
            f"{roof['of_roofline']:.2f} of the roofline ({roof['roofline_bound_ms']:.1f} ms; matmul peak "
            f"{limits['matmul_flops_per_s'] / 1e9:.0f} GFLOP/s; routes {roof['routes']})"
        )
    stages = result.get("stages")
    if stages:
        total = sum(stages["seconds"].values())
        parts = ", ".join(f"{name} {seconds:.2f} s ({100 * seconds / total:.0f}%)" for name, seconds in stages["seconds"].items())
        console.print(f"one {stages['mode']} page ({stages['size'][0]}x{stages['size'][1]}), batch 1: {parts}")
    console.print(
        f"machine: {info['cpu_model']}, {info['cpu_cores']} cores, torch {info['torch']}, bf16 {info['cpu_bf16']}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--family", choices=tuple(FAMILIES), default="v1")
    parser.add_argument("--mode", default=defaults.MODE, help=f"resolution mode (default {defaults.MODE})")
    parser.add_argument("--pages", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--full-size", action="store_true", help="official sizes (default: the scaled-down model)")
    parser.add_argument("--batch-size", default="auto", help="engine batch size, or auto")
    parser.add_argument("--quant", choices=("none", "nf4", "int8"), default="none")
    parser.add_argument(
        "--dtype", choices=("auto", *DTYPES), default="auto", help="as dsocr's --dtype (default: what auto picks)"
    )
    parser.add_argument(
        "--experts", default="auto", help="experts implementation (default: what dsocr picks for the device)"
    )
    parser.add_argument(
        "--prefill", choices=("auto", "single", "batched"), default="auto", help="engine prefill (auto: the device's default)"
    )
    parser.add_argument("--compile", action="store_true", help="engine decode steps compiled (dsocr --compile)")
    parser.add_argument("--no-stages", action="store_true", help="skip the per-stage breakdown of one page")
    parser.add_argument("--json", type=Path, required=True, help="write the results here")
    args = parser.parse_args(argv)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    console = Console(stderr=True)
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    options = ConvertOptions(mode=args.mode, max_new_tokens=args.tokens)
    console.print("measuring the machine: read bandwidth and matmul peak")
    limits = {"read_bytes_per_s": read_bandwidth(device), "matmul_flops_per_s": matmul_peak(device, dtype)}
    with tempfile.TemporaryDirectory(prefix="dsocr-bench-") as workdir:
        started = time.perf_counter()
        runner = build_runner(args.family, args.full_size, device, dtype, args.quant, Path(workdir))
        if args.experts != "auto":
            runner.loaded.model.set_experts_implementation(args.experts)
        build_seconds = time.perf_counter() - started
        runner.mode(args.mode)  # a mode the family lacks fails here, before any timing
        batch_size = auto_batch_size(runner, options) if args.batch_size == "auto" else int(args.batch_size)
        pages = make_pages(args.pages)
        console.print(
            f"model: {'official sizes' if args.full_size else 'scaled-down'} {args.family}, random weights, {dtype}, "
            f"built in {build_seconds:.1f} s; warming up"
        )
        run_baseline(runner, pages[:1], ConvertOptions(mode=args.mode, max_new_tokens=2))
        console.print("baseline: one generate call per page")
        baseline, baseline_tokens = run_baseline(runner, pages, options)
        console.print(f"engine: batch size {batch_size}")
        meter = StepMeter(runner)
        batched = BatchedEngine(
            runner,
            batch_size=batch_size,
            suppress_eos=True,
            compile=BACKEND if args.compile else None,
            batched_prefill=None if args.prefill == "auto" else args.prefill == "batched",
        )
        compile_seconds = None
        if args.compile:  # every bucket compiles before timing: a one-time cost, reported apart
            console.print("engine: compiling decode steps (a warm-up run)")
            started = time.perf_counter()
            run_engine(batched, pages[:batch_size], replace(options, max_new_tokens=batch_size + 1))
            compile_seconds = time.perf_counter() - started
        engine, engine_tokens = run_engine(batched, pages, options, meter)
        stages = None
        if not args.no_stages:
            console.print("stages: one page through each stage")
            stages = stage_breakdown(
                runner, make_page_image(*PAGE_SIZES[0], seed=0), options, Path(workdir), int(VISION_SHARE * free_memory(device))
            )
    model = runner.loaded.model
    text = model.config.text_config
    result = {
        "baseline": baseline,
        "engine": engine,
        "ratio": engine["tokens_per_s"] / baseline["tokens_per_s"],
        "identical_pages": sum(a == b for a, b in zip(baseline_tokens, engine_tokens, strict=True)),
        "token_agreement": token_agreement(baseline_tokens, engine_tokens),
        "roofline": {
            **summarise(meter.steps, limits["read_bytes_per_s"], limits["matmul_flops_per_s"]),
            "routes": "estimated (uniform routing)" if meter.estimated else "recorded",
        },
        "limits": limits,
        "stages": stages,
        "config": {
            "family": args.family,
            "model": "official sizes" if args.full_size else "scaled-down",
            "spec": asdict(FAMILIES[args.family]["official" if args.full_size else "scaled"]),
            "decoder_parameters": sum(p.numel() for p in model.model.language_model.parameters()),
            "parameters": sum(p.numel() for p in model.parameters()),
            "layers": text.num_hidden_layers,
            "device": str(device),
            "dtype": str(dtype).removeprefix("torch."),
            "dtype_requested": args.dtype,
            "dtype_auto": auto_dtype(device)[1],
            "quant": args.quant,
            "mode": args.mode,
            "page_sizes": [list(size) for size in PAGE_SIZES],
            "pages": args.pages,
            "tokens": args.tokens,
            "batch_size": batch_size,
            "guard": asdict(runner.guard_defaults("image")),
            "eos": "suppressed",
            "experts_implementation": text._experts_implementation,
            "batched_prefill": batched.batched_prefill,
            "compiled": args.compile,
            "compile_seconds": compile_seconds,
        },
        "machine": machine(device),
    }
    args.json.write_text(json.dumps(result, indent=2))
    report(result, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
