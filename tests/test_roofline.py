"""The throughput benchmark's roofline arithmetic (benchmarks/roofline.py): what a decode step reads is every
decoder weight once — the routed experts only as far as the step used them — plus the rows' key/value cache,
counted on a real model, and the routes are the ones the model's routers chose."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from dsocr_cli.models.family import FamilyRunner

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
from roofline import DecoderWeights, StepMeter, step_cost, summarise  # noqa: E402


def test_the_weights_a_step_can_read_are_the_whole_decoder_split_into_dense_experts_and_embedding(
    tiny_runner: FamilyRunner,
) -> None:
    model = tiny_runner.model
    language_model = model.model.language_model
    weights = DecoderWeights.of(language_model, model.lm_head)
    everything = sum(t.numel() * t.element_size() for t in [*language_model.parameters(), *language_model.buffers()])
    everything += sum(t.numel() * t.element_size() for t in model.lm_head.parameters())
    embedding = language_model.get_input_embeddings().weight
    assert weights.dense_bytes + sum(weights.expert_bytes) + embedding.numel() * embedding.element_size() == everything
    config = model.config.text_config
    assert len(weights.expert_bytes) == config.mlp_layer_types.count("sparse")
    assert weights.params_per_expert == 3 * config.hidden_size * config.moe_intermediate_size


def test_a_step_costs_its_dense_weights_its_routed_share_of_experts_and_its_rows_cache() -> None:
    weights = DecoderWeights(
        dense_bytes=1000, dense_params=250, expert_bytes=[6400, 6400], experts_per_layer=[64, 64],
        params_per_expert=25, embedding_row_bytes=8, layers=2, hidden=4,
    )
    cost = step_cost(weights, distinct=[32, 16], pairs=12, lengths=[9, 4], kv_bytes_per_token=10, seconds=0.5)
    assert cost.bytes == 1000 + 3200 + 1600 + 2 * 8 + (10 + 5) * 10
    assert cost.flops == 2 * 2 * 250 + 2 * 12 * 25 + 4 * 2 * 4 * 15
    summary = summarise([cost], bandwidth=cost.bytes / 0.25, peak=cost.flops / 0.1)
    assert summary["of_memory_bound"] == 0.5 and summary["of_roofline"] == 0.5  # memory-bound: 0.25 s of 0.5 s


def test_the_meter_records_each_engine_step_with_the_experts_the_routers_chose(tiny_runner: FamilyRunner) -> None:
    cache = tiny_runner.new_cache(2)
    text = tiny_runner.model.config.text_config
    heads, head_dim = text.num_key_value_heads, text.hidden_size // text.num_attention_heads
    for length in (7, 3):
        cache.append([(torch.zeros(1, heads, length, head_dim), torch.zeros(1, heads, length, head_dim))] * text.num_hidden_layers)
    meter = StepMeter(tiny_runner)
    chosen: list[torch.Tensor] = []
    with meter.measuring():
        gate = tiny_runner.model.model.language_model.layers[-1].mlp.gate
        handle = gate.register_forward_hook(lambda module, args, output: chosen.append(output[-1]))
        try:
            tiny_runner.decode_step([5, 6], cache)
        finally:
            handle.remove()
    [step] = meter.steps
    moe_layers = text.mlp_layer_types.count("sparse")
    assert step.rows == 2
    assert step.flops > 0 and step.bytes > meter.weights.dense_bytes
    assert len(meter.counter.distinct) == moe_layers
    assert meter.counter.distinct[-1] == torch.unique(chosen[0]).numel()
    assert "decode_step" not in vars(tiny_runner)  # the runner's own decode_step again
