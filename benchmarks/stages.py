"""Where one page's time goes: each stage of ``dsocr convert`` timed on its own, one after the other, at batch 1.

Stages: ``render`` (the page embedded in a one-page PDF, rendered by dsocr's ``PdfReader`` at 144 dpi),
``preprocess`` (the family's ``prepare_image`` and prompt), ``vision`` (``encode_images``), ``prefill``,
``decode`` (the page's remaining tokens, one row, EOS suppressed), ``postprocess`` (grounding blocks to
Markdown) and ``write`` (the atomic file write ``dsocr convert -o`` does). On CUDA every stage ends with a
synchronisation, so the times are the device's work, not just its launch.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pymupdf
import torch
from PIL import Image

from dsocr_cli import defaults
from dsocr_cli.engine.backend import ConvertOptions
from dsocr_cli.inputs.discover import discover
from dsocr_cli.inputs.images import MAX_PIXELS
from dsocr_cli.inputs.pdf import PdfReader
from dsocr_cli.models.family import FamilyRunner
from dsocr_cli.postprocess.grounding import parse_blocks
from dsocr_cli.postprocess.markdown import page_markdown
from dsocr_cli.writers.atomic import atomic_write_text

DPI = defaults.DPI


def page_pdf(image: Image.Image, path: Path) -> Path:
    """A one-page PDF showing ``image`` at ``DPI`` (so rendering it back gives the same pixel size)."""
    document = pymupdf.open()
    width, height = image.size
    page = document.new_page(width=width * 72 / DPI, height=height * 72 / DPI)
    png = io.BytesIO()
    image.save(png, format="PNG")
    page.insert_image(page.rect, stream=png.getvalue())
    document.save(path)
    document.close()
    return path


def stage_breakdown(
    runner: FamilyRunner, image: Image.Image, options: ConvertOptions, workdir: Path, vision_budget: int
) -> dict[str, Any]:
    """Seconds per stage for one page (module docstring), plus what the page was."""
    device = runner.device
    seconds: dict[str, float] = {}

    @contextmanager
    def stage(name: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds[name] = time.perf_counter() - started

    pdf = page_pdf(image, workdir / "stage-page.pdf")
    with stage("render"):
        [source] = discover([str(pdf)])
        reader = PdfReader(source, dpi=DPI, max_pixels=MAX_PIXELS)
        rendered = reader.render(1)
        reader.close()
    with stage("preprocess"):
        request = runner.request(runner.prepare_image(rendered, options.mode), runner.resolve_prompt(options.prompt))
    with stage("vision"):
        [features] = runner.encode_images([request], vision_budget)
    with stage("prefill"):
        prefill = runner.prefill(request, features)
        token = choose(prefill.logits[None], runner.eos_id)
    tokens = [token]
    with stage("decode"):
        cache = runner.new_cache(1)
        cache.append(prefill.layer_kv)
        while len(tokens) < options.max_new_tokens:
            tokens.append(choose(runner.decode_step([tokens[-1]], cache), runner.eos_id))
    with stage("postprocess"):
        text = runner.decode(tokens)
        markdown = page_markdown(parse_blocks(text), rendered, 1, None).text
    with stage("write"):
        atomic_write_text(workdir / "stage-page.md", markdown)
    return {"mode": options.mode, "size": list(rendered.size), "tokens": len(tokens), "seconds": seconds}


def choose(logits: torch.Tensor, eos: int) -> int:
    """Greedy, EOS suppressed (every page generates its full token count, as in the throughput runs)."""
    logits = logits.clone()
    logits[:, eos] = -float("inf")
    return int(logits.argmax(dim=-1)[0])

