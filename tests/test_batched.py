"""The batched engine gives every page exactly what converting it alone gives (float32, CPU, tiny models).

Pages of different sizes and modes share batches, finished rows are refilled, outcomes come back in
request order, and a page that cannot be rendered or preprocessed fails alone. Only a page that loops is
retried; NaN/inf logits stop the run as a model error. The engine is the same for every model family, so
the tests that run a model run for DeepSeek-OCR v1 and DeepSeek-OCR-2 alike (``family``, ids ``[v1]`` and
``[v2]``), each family in its cheapest mode (``Family.fast_mode``) unless a test names modes.
"""

from __future__ import annotations

import io
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest
import torch
from PIL import Image
from tokenizers import Tokenizer

from dsocr_cli.cli.app import main
from dsocr_cli.convert import ConvertJob, OutputTarget, run
from dsocr_cli.engine.backend import ConvertOptions, PageRequest
from dsocr_cli.engine.batched import auto_batch_size, page_kv_bytes
from dsocr_cli.engine.local import LocalBackend
from dsocr_cli.errors import ExitCode, InputError, ModelError
from dsocr_cli.generation.kvcache import RowCache
from dsocr_cli.inputs.discover import discover
from dsocr_cli.models.family import FamilyRunner
from dsocr_cli.models.registry import load_runner
from dsocr_cli.progress import Reporter
from dsocr_cli.results import Page
from dsocr_cli.testing.images import make_page_image
from tests.checkpoints import always_emit, rewritten_checkpoint
from tests.cli_support import make_image
from tests.conftest import Family

MIXED = {  # per family and guard: (width, height, mode, max_new_tokens, vision tokens) per page
    "v1": {
        "guard-off": [  # tiled and untiled pages; the gundam and base global views share one encoder call
            (600, 500, "tiny", 6, 73),
            (1300, 650, "gundam", 10, 273 + 210),
            (800, 600, "small", 8, 111),
            (700, 900, "base", 7, 273),
        ],
        "guard-on": [
            (600, 500, "tiny", 12, 73),
            (800, 600, "small", 14, 111),
            (900, 700, "tiny", 9, 73),
            (640, 900, "small", 11, 111),
        ],
    },
    "v2": {  # v2 has base and gundam only: gundam pages of 0, 2 and 6 crops (257 + 144 per crop) and a base one
        guard: [
            (600, 500, "gundam", 6, 257),
            (1300, 650, "gundam", 9, 257 + 144 * 2),
            (800, 1200, "base", 7, 257),
            (1190, 1684, "gundam", 8, 257 + 144 * 6),
        ]
        for guard in ("guard-off", "guard-on")
    },
}


def page(number: int, width: int, height: int) -> Page:
    return Page("mixed.pdf", number, make_page_image(width, height, seed=number))


def request(p: Page, options: ConvertOptions) -> PageRequest:
    return PageRequest(p.source, p.number, load=lambda: p, options=options)


def one_by_one_and_batched(runner: FamilyRunner, pages: list[Page], options: list[ConvertOptions], batch_size: int):
    single = [LocalBackend(runner).convert(p, o) for p, o in zip(pages, options)]
    outcomes = list(LocalBackend(runner, batch_size=batch_size).convert_many(map(request, pages, options)))
    return single, outcomes


@pytest.mark.parametrize("guard", ["guard-off", "guard-on"])
def test_mixed_sizes_and_modes_in_one_batch_give_the_one_page_tokens(
    family: Family, family_runner: FamilyRunner, guard: str
) -> None:
    table = MIXED[family.name][guard]
    pages = [page(i + 1, w, h) for i, (w, h, _, _, _) in enumerate(table)]
    options = [
        ConvertOptions(mode=mode, max_new_tokens=limit, ngram_size=3 if guard == "guard-on" else 0, ngram_window=12)
        for _, _, mode, limit, _ in table
    ]
    single, outcomes = one_by_one_and_batched(family_runner, pages, options, batch_size=3)
    assert [o.request.number for o in outcomes] == [p.number for p in pages]
    assert [(alone.mode, alone.vision_tokens) for alone in single] == [
        (mode, tokens) for _, _, mode, _, tokens in table
    ]
    for alone, outcome in zip(single, outcomes):
        assert outcome.error is None and outcome.result is not None
        assert outcome.result.token_ids == alone.token_ids
        assert outcome.result.finished == alone.finished
        assert outcome.result.text == alone.text
        assert (outcome.result.mode, outcome.result.vision_tokens) == (alone.mode, alone.vision_tokens)


@pytest.fixture(scope="module")
def eos_runner(family: Family, family_checkpoint: Path, family_runner: FamilyRunner) -> FamilyRunner:
    """The family's tiny model with EOS in place of a token it emits often, so pages stop at different steps."""
    options = ConvertOptions(mode=family.fast_mode, max_new_tokens=16)
    probe = LocalBackend(family_runner).convert(page(1, 600, 500), options)
    frequent = max(set(probe.token_ids), key=probe.token_ids.count)
    runner = load_runner(family_checkpoint, torch.device("cpu"), torch.float32)
    with torch.no_grad():
        head = runner.model.lm_head.weight
        head[runner.eos_id] = head[frequent] * 1.01
    return runner


def test_pages_stopping_at_eos_mid_batch_match_one_page_results(family: Family, eos_runner: FamilyRunner) -> None:
    sizes = [(600, 500), (800, 1000), (700, 400), (900, 900)]
    pages = [page(i + 1, w, h) for i, (w, h) in enumerate(sizes)]
    options = [ConvertOptions(mode=family.fast_mode, max_new_tokens=16, ngram_size=0)] * len(pages)
    single, outcomes = one_by_one_and_batched(eos_runner, pages, options, batch_size=3)  # the fourth refills a row
    assert {r.finished for r in single} == {True, False}, "the fixture should make some pages end with EOS"
    assert [(o.result.token_ids, o.result.finished) for o in outcomes] == [(r.token_ids, r.finished) for r in single]


def test_outcomes_come_back_in_request_order_and_a_broken_page_fails_alone(
    family: Family, family_runner: FamilyRunner
) -> None:
    data = io.BytesIO()
    make_page_image(600, 500, seed=9).save(data, "PNG")
    truncated = Page("scan.png", 3, Image.open(io.BytesIO(data.getvalue()[: len(data.getvalue()) // 2])))

    def unreadable() -> Page:
        raise InputError("broken.pdf: page 2 cannot be rendered")

    good = [page(1, 600, 500), page(4, 800, 600), page(5, 700, 400)]
    limits = {1: 20, 4: 3, 5: 6}  # the first page is the longest: later ones finish before it
    options = {
        n: ConvertOptions(mode=family.fast_mode, max_new_tokens=limit, ngram_size=0) for n, limit in limits.items()
    }
    requests = [
        request(good[0], options[1]),
        PageRequest("broken.pdf", 2, load=unreadable, options=options[1]),
        request(truncated, options[1]),
        request(good[1], options[4]),
        request(good[2], options[5]),
    ]
    outcomes = list(LocalBackend(family_runner, batch_size=2).convert_many(requests))
    assert [o.request for o in outcomes] == requests
    assert isinstance(outcomes[1].error, InputError) and outcomes[1].result is None
    assert isinstance(outcomes[2].error, OSError) and outcomes[2].result is None
    for p, outcome in zip(good, [outcomes[0], outcomes[3], outcomes[4]]):
        alone = LocalBackend(family_runner).convert(p, options[p.number])
        assert outcome.result is not None and outcome.result.token_ids == alone.token_ids
        assert len(outcome.result.token_ids) == limits[p.number]  # the random model runs every page to its limit


def test_row_cache_keeps_every_rows_keys_through_growth_removal_and_refill() -> None:
    cache = RowCache(layers=1, max_rows=3, heads=1, head_dim=2, dtype=torch.float32, device=torch.device("cpu"))

    def prompt(length: int, first: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
        keys = torch.arange(first, first + 2 * length).view(1, 1, length, 2)
        return [(keys, -keys)]

    cache.append(prompt(250, 0.0))
    cache.append(prompt(10, 1000.0))
    for step in range(10):  # a decode step, in inference mode as the model runs it; row 0 outgrows 256 positions
        with torch.inference_mode():
            _, positions = cache.begin_step()
            token = torch.full((2, 1, 1, 2), 2000.0 + step)
            keys, _ = cache.update(token, -token, 0)
            cache.end_step()
    assert keys.shape == (2, 1, 260, 2) and positions[:, 0].tolist() == [259, 19]
    cache.remove(0)
    cache.append(prompt(5, 5000.0))
    assert cache.lengths == [20, 5]
    expected_row = torch.cat(
        [prompt(10, 1000.0)[0][0][0, 0], torch.arange(2000.0, 2010.0).repeat_interleave(2).view(10, 2)]
    )
    assert torch.equal(cache.keys[0][0, 0, :20], expected_row)
    assert torch.equal(cache.values[0][0, 0, :20], -expected_row)
    assert torch.equal(cache.keys[0][1, 0, :5], prompt(5, 5000.0)[0][0][0, 0])


def test_streamed_pages_are_converted_one_after_another(family: Family, family_runner: FamilyRunner) -> None:
    pieces: list[tuple[int, str]] = []
    pages = [page(i + 1, 600 + 50 * i, 500) for i in range(3)]
    options = ConvertOptions(mode=family.fast_mode, max_new_tokens=8, ngram_size=0)
    requests = [
        PageRequest(
            p.source, p.number, load=lambda p=p: p, options=options, on_text=lambda t, n=p.number: pieces.append((n, t))
        )
        for p in pages
    ]
    outcomes = list(LocalBackend(family_runner, batch_size=3).convert_many(requests))
    order = [n for n, _ in pieces]
    assert order == sorted(order) and set(order) == {1, 2, 3}
    for outcome in outcomes:
        assert outcome.result.text
        assert "".join(t for n, t in pieces if n == outcome.request.number) == outcome.result.text


def test_batched_run_writes_the_same_files_and_isolates_a_broken_input(
    family: Family, family_runner: FamilyRunner, tmp_path: Path
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i, (w, h) in enumerate([(600, 500), (800, 1000), (700, 400)]):
        make_page_image(w, h, seed=i).save(inputs / f"img{i}.png")
    (inputs / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    summaries = {}
    for batch_size in (1, 3):
        job = ConvertJob(
            sources=discover([str(inputs)], None),
            options=ConvertOptions(mode=family.fast_mode, max_new_tokens=6, ngram_size=2, ngram_window=4),
            output=OutputTarget(directory=tmp_path / f"out{batch_size}"),
        )
        summaries[batch_size] = run(
            job, partial(LocalBackend, family_runner, batch_size=batch_size), Reporter(quiet=True)
        )
    for batch_size, summary in summaries.items():
        assert summary.failed_inputs == [str(inputs / "broken.pdf")]
        assert (summary.converted, summary.pages) == (3, 3)
        assert summary.exit_code() == ExitCode.PARTIAL_FAILURE
    written = sorted(p.name for p in (tmp_path / "out1").glob("*.md"))
    assert written == ["img0.md", "img1.md", "img2.md"]
    for name in written:
        assert (tmp_path / "out3" / name).read_text() == (tmp_path / "out1" / name).read_text()


def test_auto_batch_size_follows_free_memory_up_to_the_cpu_cap(family_runner: FamilyRunner) -> None:
    options = ConvertOptions(mode="gundam", max_new_tokens=8192)
    per_page = page_kv_bytes(family_runner, options)
    assert auto_batch_size(family_runner, options, free=per_page) == 1
    assert auto_batch_size(family_runner, options, free=10 * per_page) == 6  # 80% usable, less 20% for vision
    assert auto_batch_size(family_runner, options, free=10**15) == 32


@pytest.mark.parametrize("value", ["0", "-2", "lots"])
def test_invalid_batch_size_is_a_usage_error(tmp_path: Path, value: str) -> None:
    image = tmp_path / "page.png"
    make_page_image(300, 200).save(image)
    assert main(["convert", str(image), "--batch-size", value, "--model", str(tmp_path / "no-model")]) == ExitCode.USAGE


def test_out_of_memory_halves_the_batch_and_still_gives_the_one_page_tokens(
    family: Family, family_runner: FamilyRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    pages = [page(n, 600, 500) for n in (1, 2)]
    options = [ConvertOptions(mode=family.fast_mode, max_new_tokens=5, ngram_size=0)] * 2
    single = [LocalBackend(family_runner).convert(p, o) for p, o in zip(pages, options)]
    real_step, calls = family_runner.decode_step, []

    def step_that_runs_out_of_memory_at_two_rows(tokens, cache):
        calls.append(len(tokens))
        if len(tokens) == 2:
            raise torch.OutOfMemoryError("simulated: CUDA out of memory")
        return real_step(tokens, cache)

    monkeypatch.setattr(family_runner, "decode_step", step_that_runs_out_of_memory_at_two_rows)
    outcomes = list(LocalBackend(family_runner, batch_size=2).convert_many(map(request, pages, options)))
    assert 2 in calls and max(calls[calls.index(2) + 1 :]) == 1
    assert [o.result.token_ids for o in outcomes] == [alone.token_ids for alone in single]
    assert all(len(alone.token_ids) == 5 for alone in single)


def test_out_of_memory_at_one_page_is_a_model_error_suggesting_nf4(
    family: Family, family_runner: FamilyRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_memory(tokens, cache):
        raise torch.OutOfMemoryError("simulated: CUDA out of memory")

    monkeypatch.setattr(family_runner, "decode_step", no_memory)
    requests = [request(page(1, 600, 500), ConvertOptions(mode=family.fast_mode))]
    with pytest.raises(ModelError, match=r"out of memory on cpu even one page at a time; try --quant nf4") as err:
        list(LocalBackend(family_runner, batch_size=1).convert_many(requests))
    assert err.value.exit_code == ExitCode.MODEL


# ---------------------------------------------------------------- loops, truncation, damaged weights


def nan_weights(tensors: dict[str, torch.Tensor]) -> None:
    """One NaN in the first decoder layer's MLP, as a damaged download has: it reaches every logit."""
    tensors["model.layers.0.mlp.down_proj.weight"][0, 0] = float("nan")


@pytest.fixture(scope="module")
def nan_checkpoint(family_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return rewritten_checkpoint(family_checkpoint, tmp_path_factory.mktemp("ckpt") / "nan", nan_weights)


@pytest.fixture(scope="module")
def loop_runner(family_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> FamilyRunner:
    """The family's tiny model rewired (as conftest's ``eos_checkpoint``) to emit the token ``table`` at every
    step: a page that loops from its first token. Under the default guard (20-grams in 50 tokens) a banned
    ``table`` gives way to id 0 (every other logit is 0), so a guarded page loops too, nudged every 20 tokens."""
    table = Tokenizer.from_file(str(family_checkpoint / "tokenizer.json")).token_to_id("table")

    path = rewritten_checkpoint(family_checkpoint, tmp_path_factory.mktemp("ckpt") / "loop", always_emit(table))
    return load_runner(path, torch.device("cpu"), torch.float32)


def test_a_looping_page_is_retried_once_with_the_retry_settings_and_reported_as_looped(
    family: Family, loop_runner: FamilyRunner
) -> None:
    p = page(1, 600, 500)
    options = ConvertOptions(mode=family.fast_mode, max_new_tokens=40, ngram_size=0)
    retry = replace(options, ngram_size=20, ngram_window=50)
    requests = [PageRequest(p.source, 1, lambda: p, options, retry)]

    [outcome] = LocalBackend(loop_runner, batch_size=2).convert_many(requests)

    result = outcome.result
    assert (result.finished, result.retried, result.looped) == (False, True, True)
    first_try = LocalBackend(loop_runner).convert(p, options)
    assert first_try.looped and len(set(first_try.token_ids)) == 1
    assert result.token_ids == LocalBackend(loop_runner).convert(p, retry).token_ids != first_try.token_ids


def test_a_page_cut_off_at_the_limit_without_repeating_is_truncated_not_retried(
    family: Family, family_runner: FamilyRunner
) -> None:
    """Until pages were told apart by their tail, every page that hit the limit was taken for a loop and
    retried; the random models' pages here do not repeat within 40 tokens, so none is retried now."""
    pages = [page(n, 560 + 40 * n, 500) for n in (1, 2)]
    options = ConvertOptions(mode=family.fast_mode, max_new_tokens=40, ngram_size=20, ngram_window=50)
    retry = replace(options, ngram_size=10, ngram_window=120)
    requests = [PageRequest(p.source, p.number, lambda p=p: p, options, retry) for p in pages]

    outcomes = list(LocalBackend(family_runner, batch_size=2).convert_many(requests))

    assert [o.request.number for o in outcomes] == [1, 2]
    for p, outcome in zip(pages, outcomes):
        result = outcome.result
        assert (result.finished, result.retried, result.looped, result.generated_tokens) == (False, False, False, 40)
        assert result.token_ids == LocalBackend(family_runner).convert(p, options).token_ids


def test_nan_weights_stop_the_batched_run_with_one_model_error_naming_the_page(
    family: Family, nan_checkpoint: Path
) -> None:
    runner = load_runner(nan_checkpoint, torch.device("cpu"), torch.float32)
    pages = [page(n, 600, 500) for n in (1, 2)]
    options = [ConvertOptions(mode=family.fast_mode, max_new_tokens=8)] * 2

    with pytest.raises(ModelError) as err:
        list(LocalBackend(runner, batch_size=2).convert_many(map(request, pages, options)))

    assert str(err.value) == "model produced NaN/inf logits on mixed.pdf page 1; the weights are damaged"
    assert err.value.exit_code == ExitCode.MODEL


def test_nan_logits_in_a_decode_step_name_that_rows_page(
    family: Family, family_runner: FamilyRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_step = family_runner.decode_step

    def second_row_overflows(tokens, cache):
        logits = real_step(tokens, cache).clone()
        if len(tokens) == 2:
            logits[1, 5] = float("inf")
        return logits

    monkeypatch.setattr(family_runner, "decode_step", second_row_overflows)
    pages = [page(n, 600, 500) for n in (1, 2)]
    options = [ConvertOptions(mode=family.fast_mode, max_new_tokens=4, ngram_size=0)] * 2
    with pytest.raises(ModelError, match=r"^model produced NaN/inf logits on mixed.pdf page 2; the weights") as err:
        list(LocalBackend(family_runner, batch_size=2).convert_many(map(request, pages, options)))
    assert err.value.exit_code == ExitCode.MODEL


def test_nan_logits_in_half_precision_suggest_float32(family: Family, nan_checkpoint: Path) -> None:
    runner = load_runner(nan_checkpoint, torch.device("cpu"), torch.bfloat16)
    requests = [request(page(1, 600, 500), ConvertOptions(mode=family.fast_mode, max_new_tokens=4))]

    with pytest.raises(ModelError) as err:
        list(LocalBackend(runner, batch_size=1).convert_many(requests))

    assert str(err.value) == (
        "model produced NaN/inf logits on mixed.pdf page 1; the weights are damaged or bfloat16 overflows "
        "(try --dtype float32)"
    )


def test_nan_weights_exit_4_with_one_line_from_the_cli(dsocr, family: Family, nan_checkpoint: Path) -> None:
    make_image("scan.png")

    run = dsocr("convert", "scan.png", "--model", nan_checkpoint, *family.fast, "--max-tokens", "4")

    assert (run.code, run.stdout) == (ExitCode.MODEL, "")
    assert run.stderr == "error: model produced NaN/inf logits on scan.png page 1; the weights are damaged\n"
