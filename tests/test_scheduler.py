"""The scheduler: requests from many callers share decode steps and each completes on its own.

``Scheduler.submit`` is what ``dsocr serve`` runs every client's page through: requests join the running
batch at the next step, each future completes as soon as its page is done (not in global order), a page
that fails fails alone and the scheduler keeps serving.
"""

from __future__ import annotations

import threading
import time

import pytest
import torch

from dsocr_cli.engine.backend import ConvertOptions, PageRequest
from dsocr_cli.engine.batched import BatchedEngine
from dsocr_cli.engine.local import LocalBackend
from dsocr_cli.engine.scheduler import Scheduler
from dsocr_cli.errors import InputError, ModelError
from dsocr_cli.results import Page
from dsocr_cli.testing.images import make_page_image

SIZES = [(600, 500), (800, 600), (640, 900), (900, 700), (500, 700), (700, 700), (1000, 600), (620, 820)]


def page(number: int, width: int, height: int) -> Page:
    return Page("scan.png", number, make_page_image(width, height, seed=number))


def request(p: Page, options: ConvertOptions) -> PageRequest:
    return PageRequest(p.source, p.number, load=lambda: p, options=options)


def test_simultaneous_requests_share_decode_steps_and_each_gets_its_own_answer(tiny_runner) -> None:
    pages = [page(i + 1, *size) for i, size in enumerate(SIZES)]
    options = [ConvertOptions(mode="tiny", max_new_tokens=6 + i % 3, ngram_size=0) for i in range(len(pages))]
    alone = [LocalBackend(tiny_runner).convert(p, o) for p, o in zip(pages, options)]

    with Scheduler(BatchedEngine(tiny_runner), rows=8) as scheduler:
        barrier = threading.Barrier(len(pages))
        futures: list = [None] * len(pages)

        def client(i: int) -> None:
            barrier.wait()
            futures[i] = scheduler.submit(request(pages[i], options[i]))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(len(pages))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        outcomes = [future.result(timeout=120) for future in futures]
        stats = scheduler.stats

    for outcome, expected in zip(outcomes, alone):
        assert outcome.error is None
        assert outcome.result.token_ids == expected.token_ids and outcome.result.text == expected.text
    assert stats.requests == stats.pages == len(pages) and stats.failed == 0
    assert stats.max_step_rows > 1 and stats.step_rows > stats.steps  # decode steps ran several pages at once
    assert stats.tokens == sum(o.result.generated_tokens for o in outcomes)


def test_a_short_request_sent_after_a_long_one_finishes_first(tiny_runner) -> None:
    long_page, short_page = page(1, 600, 500), page(2, 800, 600)
    with Scheduler(BatchedEngine(tiny_runner), rows=4) as scheduler:
        long = scheduler.submit(request(long_page, ConvertOptions(mode="tiny", max_new_tokens=60, ngram_size=0)))
        while scheduler.stats.steps == 0:  # the long page is decoding
            time.sleep(0.01)
        short = scheduler.submit(request(short_page, ConvertOptions(mode="tiny", max_new_tokens=3, ngram_size=0)))
        short_outcome = short.result(timeout=120)
        assert not long.done()  # the short page did not wait for the long one
        long_outcome = long.result(timeout=120)
    assert len(short_outcome.result.token_ids) == 3 and len(long_outcome.result.token_ids) == 60


def test_a_failing_request_fails_alone_and_the_scheduler_keeps_serving(tiny_runner) -> None:
    def broken() -> Page:
        raise InputError("broken.pdf: not a PDF")

    options = ConvertOptions(mode="tiny", max_new_tokens=4, ngram_size=0)
    with Scheduler(BatchedEngine(tiny_runner), rows=2) as scheduler:
        bad = scheduler.submit(PageRequest("broken.pdf", 1, load=broken, options=options))
        good = scheduler.submit(request(page(1, 600, 500), options))
        unknown_mode = scheduler.submit(request(page(2, 600, 500), ConvertOptions(mode="huge")))
        assert str(bad.result(timeout=60).error) == "broken.pdf: not a PDF"
        assert good.result(timeout=60).result is not None
        assert "huge" in str(unknown_mode.result(timeout=60).error)
        again = scheduler.submit(request(page(3, 640, 480), options)).result(timeout=60)
        assert again.error is None and len(again.result.token_ids) == 4
        assert (scheduler.stats.pages, scheduler.stats.failed) == (2, 2)


def test_out_of_memory_fails_only_a_page_that_streamed_text_and_restarts_the_others(tiny_runner, monkeypatch) -> None:
    options = ConvertOptions(mode="tiny", max_new_tokens=6, ngram_size=0)
    plain_page, streamed_page = page(1, 600, 500), page(2, 800, 600)
    alone = LocalBackend(tiny_runner).convert(plain_page, options)
    real_step, calls = tiny_runner.decode_step, []

    def step_that_runs_out_of_memory_once_both_rows_decode(tokens, cache):
        calls.append(len(tokens))
        if len(tokens) == 2 and calls.count(2) == 3:  # both pages have generated tokens, the streamed one sent text
            raise torch.OutOfMemoryError("simulated: CUDA out of memory")
        return real_step(tokens, cache)

    monkeypatch.setattr(tiny_runner, "decode_step", step_that_runs_out_of_memory_once_both_rows_decode)
    pieces: list[str] = []
    with Scheduler(BatchedEngine(tiny_runner), rows=2) as scheduler:
        plain = scheduler.submit(request(plain_page, options))
        streamed = scheduler.submit(
            PageRequest(streamed_page.source, 2, load=lambda: streamed_page, options=options, on_text=pieces.append)
        )
        with pytest.raises(ModelError, match=r"out of memory on cpu while streaming this page in a batch; its text"):
            streamed.result(timeout=120)
        outcome = plain.result(timeout=120)
        assert (scheduler.stats.rows, scheduler.stats.failed) == (1, 1)
    assert "".join(pieces)  # it had streamed text: restarting it would have sent that text twice
    assert outcome.error is None and outcome.result.token_ids == alone.token_ids  # restarted, same tokens
    assert max(calls[calls.index(2) + 3 :]) == 1  # the batch was halved


def test_a_closed_scheduler_refuses_new_requests_and_drains_running_ones(tiny_runner) -> None:
    scheduler = Scheduler(BatchedEngine(tiny_runner), rows=2)
    running = scheduler.submit(request(page(1, 600, 500), ConvertOptions(mode="tiny", max_new_tokens=8, ngram_size=0)))
    scheduler.close(drain=True)
    assert running.done() and running.result().result is not None
    with pytest.raises(RuntimeError, match="closed"):
        scheduler.submit(request(page(2, 600, 500), ConvertOptions(mode="tiny")))


def test_a_cancelled_request_is_dropped_and_the_scheduler_keeps_serving(tiny_runner) -> None:
    options = ConvertOptions(mode="tiny", max_new_tokens=6, ngram_size=0)
    with Scheduler(BatchedEngine(tiny_runner), rows=2) as scheduler:
        cancelled = scheduler.submit(request(page(1, 600, 500), options))
        assert cancelled.cancel()
        after = scheduler.submit(request(page(2, 640, 480), options)).result(timeout=60)
    assert after.error is None and len(after.result.token_ids) == 6


def test_cancelling_a_decoding_request_frees_its_row_at_the_next_step(tiny_runner) -> None:
    with Scheduler(BatchedEngine(tiny_runner), rows=2) as scheduler:
        long = scheduler.submit(request(page(1, 600, 500), ConvertOptions(mode="tiny", max_new_tokens=400, ngram_size=0)))
        while scheduler.stats.steps < 3:  # decoding
            time.sleep(0.01)
        assert long.cancel()
        deadline = time.monotonic() + 30
        while scheduler.stats.cancelled == 0:
            assert time.monotonic() < deadline, "the cancelled page kept its row"
            time.sleep(0.01)
        steps = scheduler.stats.steps
        assert steps < 400 and scheduler.stats.live == 0
        after = scheduler.submit(request(page(2, 640, 480), ConvertOptions(mode="tiny", max_new_tokens=5, ngram_size=0)))
        assert len(after.result(timeout=60).result.token_ids) == 5
        assert (scheduler.stats.pages, scheduler.stats.cancelled) == (1, 1)
