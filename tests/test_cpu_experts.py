"""The CPU's threaded experts form: transformers' grouped form's results, its products run on two threads.

At decode sizes (every expert with at most 4 rows) it gives the grouped form's output bit for bit; with more
rows per expert, equal within float32 rounding. Prefill sizes, one row, bfloat16 and compiled steps keep the
grouped form. Models loaded on the CPU use it, and batched decoding with it still gives one-page tokens
(``tests/test_scheduler.py``, ``tests/test_batched.py`` run 4-8 rows through it).
"""

from __future__ import annotations

import threading

import pytest
import torch
from transformers.integrations.moe import grouped_mm_experts_forward
from transformers.models.unlimited_ocr.configuration_unlimited_ocr import UnlimitedOcrTextConfig
from transformers.models.unlimited_ocr.modeling_unlimited_ocr import UnlimitedOcrTextExperts

from dsocr_cli.models import cpu_experts
from dsocr_cli.models.cpu_experts import threaded_experts_forward


def experts(hidden: int, intermediate: int, count: int = 64, dtype: torch.dtype = torch.float32):
    config = UnlimitedOcrTextConfig(
        hidden_size=hidden, moe_intermediate_size=intermediate, n_routed_experts=count, num_experts_per_tok=6,
        num_attention_heads=4, num_key_value_heads=4,
    )
    config._experts_implementation = "grouped_mm"
    module = UnlimitedOcrTextExperts(config).eval()
    generator = torch.Generator().manual_seed(hidden)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.02)
    return module.to(dtype)


def routing(tokens: int, hidden: int, count: int, seed: int, most_rows: int | None = None):
    """Tokens, their 6 distinct experts and weights; with ``most_rows``, no expert gets more rows than that."""
    generator = torch.Generator().manual_seed(seed)
    load = [0] * count
    chosen = []
    for _ in range(tokens):
        order = torch.randperm(count, generator=generator).tolist()
        picks = [e for e in order if most_rows is None or load[e] < most_rows][:6]
        for e in picks:
            load[e] += 1
        chosen.append(picks)
    return (
        torch.randn(tokens, hidden, generator=generator),
        torch.tensor(chosen),
        torch.rand(tokens, 6, generator=generator),
    )


@pytest.mark.parametrize(("hidden", "intermediate"), [(128, 96), (640, 448)])
@pytest.mark.parametrize("tokens", [4, 8, 16, 32])
def test_at_decode_sizes_it_is_the_grouped_form_bit_for_bit(hidden: int, intermediate: int, tokens: int) -> None:
    module = experts(hidden, intermediate)
    states, index, weights = routing(tokens, hidden, 64, seed=tokens, most_rows=4)
    with torch.inference_mode():
        threaded = threaded_experts_forward(module, states, index, weights)
        grouped = grouped_mm_experts_forward(module, states, index, weights)
    assert torch.equal(threaded, grouped)


@pytest.mark.parametrize("tokens", [16, 64])
def test_with_many_rows_per_expert_it_agrees_within_float32_rounding(tokens: int) -> None:
    module = experts(128, 96, count=8)  # 8 experts: 12-48 rows each
    states, index, weights = routing(tokens, 128, 8, seed=tokens)
    with torch.no_grad():  # also outside inference mode
        threaded = threaded_experts_forward(module, states, index, weights)
        grouped = grouped_mm_experts_forward(module, states, index, weights)
    torch.testing.assert_close(threaded, grouped, rtol=1e-5, atol=1e-6)


def test_the_products_run_on_the_worker_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    module = experts(128, 96)
    states, index, weights = routing(8, 128, 64, seed=1)
    real, threads = torch.nn.functional.linear, set()

    def linear(*args, **kwargs):
        threads.add(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "linear", linear)
    with torch.inference_mode():
        threaded_experts_forward(module, states, index, weights)
    assert len(threads) == cpu_experts.WORKERS and all(name.startswith("dsocr-experts") for name in threads)


@pytest.mark.parametrize(
    ("tokens", "dtype", "threaded"),
    [(1, torch.float32, False), (2, torch.float32, False), (4, torch.float32, True), (64, torch.float32, True),
     (65, torch.float32, False), (900, torch.float32, False), (8, torch.bfloat16, False)],
)  # fmt: skip
def test_only_float32_decode_sizes_take_it(tokens: int, dtype: torch.dtype, threaded: bool) -> None:
    module = experts(128, 96, dtype=dtype)
    assert cpu_experts.takes_threaded(module, torch.zeros(tokens, 128, dtype=dtype)) is threaded


def test_models_loaded_on_the_cpu_use_it(tiny_runner) -> None:
    text = tiny_runner.loaded.model.config.text_config
    assert text._experts_implementation == cpu_experts.NAME
