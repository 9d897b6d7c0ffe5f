"""Decode steps without copies and without Python per kernel: the preallocated cache, static steps, compiled steps.

- The engine reserves a page's whole token limit when it admits it, so the cache does not grow while
  pages decode (it grew, with a copy, every 256 steps); it only gains rows as pages arrive.
- Static steps (fixed shapes per power-of-two bucket of rows, attention over the whole capacity) and
  ``torch.compile``d steps over them give exactly the eager engine's tokens, which are the one-page tokens,
  while pages end at different steps, rows are freed and refilled and the bucket shrinks (float32, CPU).
  ``aot_eager`` runs dynamo's capture without code generation; inductor (what ``--compile`` uses)
  compiles one bucket.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from dsocr_cli.engine.backend import ConvertOptions, PageRequest
from dsocr_cli.engine.batched import BatchedEngine
from dsocr_cli.engine.local import LocalBackend
from dsocr_cli.generation.kvcache import GROWTH_CHUNK, RowCache
from dsocr_cli.models.family import FamilyRunner
from dsocr_cli.models.registry import load_runner
from dsocr_cli.results import Page
from dsocr_cli.testing.images import make_page_image
from tests.cli_support import FAST, make_image
from tests.conftest import FAMILIES, Family

SIZES = [(600, 500), (800, 1000), (700, 400), (900, 900), (640, 480)]


def pages(count: int) -> list[Page]:
    return [Page("doc.pdf", i + 1, make_page_image(*SIZES[i % len(SIZES)], seed=i + 1)) for i in range(count)]


def requests(items: list[Page], options: ConvertOptions) -> list[PageRequest]:
    return [PageRequest(p.source, p.number, load=lambda p=p: p, options=options) for p in items]


def eos_rewired(family: Family, checkpoint: Path) -> FamilyRunner:
    """A fresh runner whose EOS takes the place of a token the random model emits often, so pages end at
    different steps (rows are freed and refilled, the batch shrinks)."""
    runner = load_runner(checkpoint, torch.device("cpu"), torch.float32)
    probe = LocalBackend(runner).convert(pages(1)[0], ConvertOptions(mode=family.fast_mode, max_new_tokens=16))
    frequent = max(set(probe.token_ids), key=probe.token_ids.count)
    with torch.no_grad():
        head = runner.model.lm_head.weight
        head[runner.eos_id] = head[frequent] * 1.01
    return runner


def test_a_static_cache_pads_rows_to_a_bucket_keeps_its_buffers_and_isolates_the_padding() -> None:
    cpu = torch.device("cpu")
    static = RowCache(layers=1, max_rows=6, heads=1, head_dim=2, dtype=torch.float32, device=cpu, static=True)
    eager = RowCache(layers=1, max_rows=6, heads=1, head_dim=2, dtype=torch.float32, device=cpu)
    assert [static.bucket(n) for n in (1, 2, 3, 4, 5, 6)] == [1, 2, 4, 4, 6, 6]
    for length, first in ((5, 0.0), (3, 100.0), (7, 200.0)):
        keys = torch.arange(first, first + 2 * length).view(1, 1, length, 2)
        static.append([(keys, -keys)])
        eager.append([(keys, -keys)])
    address = static.keys[0].data_ptr()
    assert static.keys[0].shape[0] == 6 and not static.keys[0].is_inference()
    for step in range(3):
        ids, mask, positions = static.begin_static_step([7, 8, 9], pad=0)
        assert ids[:, 0].tolist() == [7, 8, 9, 0] and mask.shape == (4, 1, 1, static.capacity)
        assert positions[:, 0].tolist() == [5 + step, 3 + step, 7 + step, 0]
        token = torch.full((4, 1, 1, 2), 1000.0 + step)
        static_keys, _ = static.update(token, -token, 0)
        static.end_step()
        with torch.inference_mode():
            eager.begin_step()
            eager_keys, _ = eager.update(token[:3], -token[:3], 0)
            eager.end_step()
        for row, length in enumerate(eager.lengths):
            assert torch.equal(static_keys[row, :, :length], eager_keys[row, :, :length])
            assert mask[row, 0, 0].sum() == length  # each live row sees exactly its own positions
    assert static.keys[0].data_ptr() == address  # the buffers were never reallocated


def test_the_engine_reserves_a_pages_token_limit_once_instead_of_growing_every_256_steps(
    tiny_runner: FamilyRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps: list[tuple[int, int, int]] = []
    step = tiny_runner.decode_step

    def recording(tokens, cache: RowCache):
        steps.append((cache.keys[0].data_ptr(), cache.keys[0].shape[0], cache.capacity))
        return step(tokens, cache)

    monkeypatch.setattr(tiny_runner, "decode_step", recording)
    options = ConvertOptions(mode="tiny", max_new_tokens=GROWTH_CHUNK + 60, ngram_size=0)
    outcomes = list(BatchedEngine(tiny_runner, batch_size=2).run(requests(pages(2), options)))
    assert all(len(o.result.token_ids) == options.max_new_tokens for o in outcomes)
    prompt = outcomes[0].result.prompt_tokens  # tiny mode: every page has the same prompt
    assert len(steps) > GROWTH_CHUNK
    assert {capacity for _, _, capacity in steps} == {-(-(prompt + options.max_new_tokens) // GROWTH_CHUNK) * GROWTH_CHUNK}
    buffers = {(address, rows) for address, rows, _ in steps}
    assert len(buffers) == len({rows for _, rows in buffers})  # a new buffer only when rows were added


def test_compiled_static_steps_give_the_one_page_tokens_while_rows_end_and_refill(tiny_checkpoint: Path) -> None:
    """v1 only: the static cache and the compiled forward are the same for both families (v2's decode forward
    differs only in how it passes the mask, which every eager v2 test runs)."""
    family = FAMILIES["v1"]
    backend = "aot_eager"
    runner = eos_rewired(family, tiny_checkpoint)
    options = ConvertOptions(mode=family.fast_mode, max_new_tokens=12, ngram_size=0)
    items = pages(4)
    single = [LocalBackend(runner).convert(p, options) for p in items]  # transformers' generate, one page each
    assert {r.finished for r in single} == {True, False}, "some pages should end with EOS, others at the limit"
    compiled = BatchedEngine(runner, batch_size=2, compile=backend)  # buckets 2 and 1
    outcomes = list(compiled.run(requests(items, options)))
    assert [(o.result.token_ids, o.result.finished) for o in outcomes] == [(r.token_ids, r.finished) for r in single]


@pytest.mark.skipif(
    not any(shutil.which(name) for name in ("g++", "c++", "clang++")), reason="inductor needs a C++ compiler"
)
def test_inductor_compiled_steps_give_the_one_page_tokens(tiny_checkpoint: Path) -> None:
    runner = load_runner(tiny_checkpoint, torch.device("cpu"), torch.float32)
    options = ConvertOptions(mode="tiny", max_new_tokens=6, ngram_size=0)
    [page] = pages(1)
    alone = LocalBackend(runner).convert(page, options)
    [outcome] = BatchedEngine(runner, batch_size=1, compile="inductor").run(requests([page], options))
    assert outcome.result.token_ids == alone.token_ids and len(alone.token_ids) == 6


def test_convert_compile_writes_what_convert_without_it_writes(
    dsocr, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dsocr_cli.generation import compiled

    monkeypatch.setattr(compiled, "BACKEND", "aot_eager")  # the flag's path, without inductor's code generation
    compiling = compiled.compile_forward
    backends: list[str] = []

    def counted(forward, device, backend):
        backends.append(backend)
        return compiling(forward, device, backend)

    monkeypatch.setattr(compiled, "compile_forward", counted)
    make_image("scan.png")
    make_image("photo.png", seed=1)
    args = ("--model", str(tiny_checkpoint), *FAST, "--max-tokens", "5", "--format", "raw", "-o", "out", "--force")
    plain = dsocr("convert", "scan.png", "photo.png", *args, "--no-provenance")
    expected = {name: Path("out", name).read_text() for name in ("scan_det.mmd", "photo_det.mmd")}
    run = dsocr("convert", "scan.png", "photo.png", *args, "--compile", "--no-provenance")
    assert (plain.code, run.code) == (2, 2)  # the random model runs every page to the limit: truncated
    assert backends == ["aot_eager"]  # only the --compile run compiled its decode steps
    assert {name: Path("out", name).read_text() for name in expected} == expected
