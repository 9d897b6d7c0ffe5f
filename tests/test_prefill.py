"""Batched prefill: several admitted pages' prompts of different lengths in one forward give what one forward per
page gives — the first-token logits and the keys/values each row leaves (to float32 rounding), and through the
engine the same tokens for mixed sizes and modes (CPU, float32, both families)."""

from __future__ import annotations

import torch

from dsocr_cli.engine import batched
from dsocr_cli.engine.backend import ConvertOptions, PageRequest
from dsocr_cli.engine.batched import BatchedEngine
from dsocr_cli.engine.local import LocalBackend
from dsocr_cli.models.family import FamilyRunner
from dsocr_cli.results import Page
from dsocr_cli.testing.images import make_page_image
from tests.conftest import Family

PAGES = {  # (width, height, mode): prompts of different lengths in one batch
    "v1": [(600, 500, "tiny"), (1300, 650, "gundam"), (800, 600, "small"), (1190, 1684, "gundam")],
    "v2": [(600, 500, "gundam"), (1300, 650, "gundam"), (800, 1200, "base"), (1190, 1684, "gundam")],
}


def pages(family: Family) -> list[tuple[Page, str]]:
    return [
        (Page("mixed.pdf", i + 1, make_page_image(w, h, seed=i + 1)), mode)
        for i, (w, h, mode) in enumerate(PAGES[family.name])
    ]


def test_one_forward_over_padded_prompts_gives_each_pages_logits_and_keys(
    family: Family, family_runner: FamilyRunner
) -> None:
    runner = family_runner
    prompt = runner.resolve_prompt(ConvertOptions().prompt)
    requests = [runner.request(runner.prepare_image(p.image, mode), prompt) for p, mode in pages(family)]
    assert len({len(r.input_ids) for r in requests}) > 2, "the prompts should differ in length"
    features = runner.encode_images(requests, budget=1 << 40)
    together = runner.prefill_batch(requests, features)
    for request, page_features, batch in zip(requests, features, together, strict=True):
        alone = runner.prefill(request, page_features)
        assert batch.logits.shape == alone.logits.shape
        assert torch.allclose(batch.logits, alone.logits, atol=1e-4, rtol=1e-4)
        assert batch.logits.argmax() == alone.logits.argmax()
        for (key, value), (key_alone, value_alone) in zip(batch.layer_kv, alone.layer_kv, strict=True):
            assert key.shape == key_alone.shape == (1, key.shape[1], len(request.input_ids), key.shape[3])
            assert torch.allclose(key, key_alone, atol=1e-4) and torch.allclose(value, value_alone, atol=1e-4)


def test_the_engine_with_batched_prefill_gives_the_one_page_tokens(
    family: Family, family_runner: FamilyRunner, monkeypatch
) -> None:
    monkeypatch.setattr(batched, "PREFILL_TOKENS", 2500)  # the four prompts are cut into two forwards or more
    items = pages(family)
    limits = [6, 9, 7, 8]
    options = [ConvertOptions(mode=mode, max_new_tokens=n, ngram_size=0) for (_, mode), n in zip(items, limits)]
    single = [LocalBackend(family_runner).convert(p, o) for (p, _), o in zip(items, options, strict=True)]
    requests = [PageRequest(p.source, p.number, load=lambda p=p: p, options=o) for (p, _), o in zip(items, options)]
    together: list[int] = []
    prefill_batch = family_runner.prefill_batch

    def counted(requests, features):
        together.append(len(requests))
        return prefill_batch(requests, features)

    monkeypatch.setattr(family_runner, "prefill_batch", counted)
    engine = BatchedEngine(family_runner, batch_size=4, batched_prefill=True)
    outcomes = list(engine.run(requests))
    assert [o.result.token_ids for o in outcomes] == [r.token_ids for r in single]
    assert together and max(together) >= 2  # some prompts did share a forward
