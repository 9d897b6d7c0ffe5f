"""How close decode steps come to the machine's limits: measured bandwidth and peak, bytes and FLOPs per step.

A decode step of a mixture-of-experts decoder reads every weight it uses once: the attention and dense
weights of every layer, the shared experts, the routers, the output head, the embedding rows of its
tokens, the key/value cache of every live row, and only the routed experts that at least one row of the
step chose (``RouteCounter`` records them per layer and step with forward pre-hooks on the experts
modules; compiled steps run no hooks, so there the uniform-routing expectation stands in, and the run says
so). So with ``distinct[l]`` experts of ``E`` hit in layer ``l``:

    bytes = dense_bytes + sum_l distinct[l] / E * expert_bytes[l] + rows * embedding_row_bytes
            + sum_rows (length + 1) * kv_bytes_per_token
    flops = 2 * rows * dense_params + 2 * pairs * params_per_expert
            + 4 * layers * hidden * sum_rows (length + 1)                (QK^T and PV)

where ``pairs`` is rows x top-k routed (token, expert) pairs. The step's bound is the roofline
``max(bytes / bandwidth, flops / peak)``; ``achieved = bound / measured`` (1.0 = at the limit).
``bandwidth`` is measured (``read_bandwidth``: best of several full reads of a buffer much larger than
the caches; on CUDA on the device) and ``peak`` too (``matmul_peak``: a large square matmul in the
compute dtype), so the bound is this machine's, not a datasheet's.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

READ_BYTES = {"cpu": 1 << 30, "cuda": 4 << 30}
"""Buffer read by ``read_bandwidth``: far beyond any cache (CPU L3: tens of MB; H100 L2: 50 MB)."""
MATMUL_SIDE = {"cpu": 2048, "cuda": 8192}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_seconds(run: Any, device: torch.device, repeats: int) -> float:
    run()
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        _sync(device)
        best = min(best, time.perf_counter() - started)
    return best


def read_bandwidth(device: torch.device, repeats: int = 5) -> float:
    """Bytes/s of reading a large buffer once (a sum: one read per element, no write traffic)."""
    buffer = torch.ones(READ_BYTES[device.type] // 4, device=device)
    seconds = best_seconds(lambda: buffer.sum(), device, repeats)
    return buffer.numel() * 4 / seconds


def matmul_peak(device: torch.device, dtype: torch.dtype, repeats: int = 3) -> float:
    """FLOP/s of a large square matmul in ``dtype`` (what dense compute can reach here)."""
    side = MATMUL_SIDE[device.type]
    a = torch.randn(side, side, device=device).to(dtype)
    b = torch.randn(side, side, device=device).to(dtype)
    seconds = best_seconds(lambda: a @ b, device, repeats)
    return 2 * side**3 / seconds


def tensor_bytes(module: torch.nn.Module) -> int:
    """Bytes of a module's parameters and buffers as stored (packed sizes for quantized weights)."""
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def is_experts(module: torch.nn.Module) -> bool:
    """The routed experts of a MoE layer (v1's and v2's classes and dsocr's quantized ones): they hold
    ``num_experts`` and take ``(hidden_states, top_k_index, top_k_weights)``."""
    return hasattr(module, "num_experts") and type(module).__name__.endswith("Experts")


@dataclass
class DecoderWeights:
    """What one decode step reads of the decoder's weights, split as the module docstring counts it."""

    dense_bytes: int
    dense_params: int
    expert_bytes: list[int]
    """Per MoE layer: all its routed experts' bytes."""
    experts_per_layer: list[int]
    params_per_expert: int
    embedding_row_bytes: int
    layers: int
    hidden: int
    top_k: int = 0
    """Experts each token is routed to."""

    @classmethod
    def of(cls, language_model: torch.nn.Module, lm_head: torch.nn.Module) -> DecoderWeights:
        experts = [m for m in language_model.modules() if is_experts(m)]
        embed = language_model.get_input_embeddings()
        skipped = {id(t) for m in [*experts, embed] for t in [*m.parameters(), *m.buffers()]}
        others = [t for t in [*language_model.parameters(), *language_model.buffers()] if id(t) not in skipped]
        config = language_model.config
        return cls(
            dense_bytes=sum(t.numel() * t.element_size() for t in others) + tensor_bytes(lm_head),
            dense_params=sum(logical_numel(t) for t in others if isinstance(t, torch.nn.Parameter))
            + sum(logical_numel(t) for t in lm_head.parameters()),
            expert_bytes=[tensor_bytes(m) for m in experts],
            experts_per_layer=[m.num_experts for m in experts],
            params_per_expert=3 * experts[0].hidden_dim * experts[0].intermediate_dim if experts else 0,
            embedding_row_bytes=embed.weight.shape[1] * embed.weight.element_size(),
            layers=config.num_hidden_layers,
            hidden=config.hidden_size,
            top_k=config.num_experts_per_tok,
        )

    def expected_routes(self, rows: int) -> tuple[list[int], int]:
        """Distinct experts per MoE layer and (token, expert) pairs of a step whose routes were not seen (a
        compiled step runs no Python hooks): their expectation for uniform routing, E * (1 - (1 - k/E)^rows)."""
        distinct = [round(e * (1 - (1 - self.top_k / e) ** rows)) for e in self.experts_per_layer]
        return distinct, rows * self.top_k * len(self.experts_per_layer)


def logical_numel(tensor: torch.Tensor) -> int:
    """Weights a tensor stands for: bitsandbytes' packed 4-bit parameters keep their shape in ``quant_state``."""
    state = getattr(tensor, "quant_state", None)
    if state is not None and getattr(state, "shape", None) is not None:
        return int(torch.Size(state.shape).numel())
    return tensor.numel()


@dataclass
class StepCost:
    rows: int
    seconds: float
    bytes: int
    flops: int


@dataclass
class RouteCounter:
    """Records, per decode step, the distinct experts and the (token, expert) pairs of every MoE layer."""

    distinct: list[int] = field(default_factory=list)
    pairs: int = 0
    recording: bool = False

    def hook(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        if not self.recording:
            return
        top_k_index = args[1] if len(args) > 1 else kwargs["top_k_index"]
        self.distinct.append(int(torch.unique(top_k_index).numel()))
        self.pairs += int(top_k_index.numel())

    @contextmanager
    def attached(self, language_model: torch.nn.Module) -> Iterator[RouteCounter]:
        handles = [
            m.register_forward_pre_hook(self.hook, with_kwargs=True) for m in language_model.modules() if is_experts(m)
        ]
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()

    def start(self) -> None:
        self.distinct, self.pairs, self.recording = [], 0, True

    def stop(self) -> tuple[list[int], int]:
        self.recording = False
        return self.distinct, self.pairs


def step_cost(
    weights: DecoderWeights, distinct: list[int], pairs: int, lengths: list[int], kv_bytes_per_token: int,
    seconds: float,
) -> StepCost:
    """Bytes and FLOPs of one decode step over rows whose caches hold ``lengths`` positions (module docstring)."""
    rows = len(lengths)
    attended = sum(length + 1 for length in lengths)
    routed = sum(d / e * b for d, e, b in zip(distinct, weights.experts_per_layer, weights.expert_bytes, strict=True))
    data = weights.dense_bytes + int(routed) + rows * weights.embedding_row_bytes + attended * kv_bytes_per_token
    flops = 2 * rows * weights.dense_params + 2 * pairs * weights.params_per_expert
    flops += 4 * weights.layers * weights.hidden * attended
    return StepCost(rows=rows, seconds=seconds, bytes=data, flops=flops)


def summarise(steps: list[StepCost], bandwidth: float, peak: float) -> dict[str, Any]:
    """Totals over the measured steps: time, bytes, the memory and compute bounds and how close they came."""
    if not steps:
        return {}
    seconds = sum(s.seconds for s in steps)
    data = sum(s.bytes for s in steps)
    flops = sum(s.flops for s in steps)
    memory_bound = data / bandwidth
    roofline = sum(max(s.bytes / bandwidth, s.flops / peak) for s in steps)
    return {
        "steps": len(steps),
        "mean_rows": sum(s.rows for s in steps) / len(steps),
        "step_ms": 1000 * seconds / len(steps),
        "bytes_per_step": data / len(steps),
        "flops_per_step": flops / len(steps),
        "achieved_bytes_per_s": data / seconds,
        "achieved_flops_per_s": flops / seconds,
        "memory_bound_ms": 1000 * memory_bound / len(steps),
        "roofline_bound_ms": 1000 * roofline / len(steps),
        "of_memory_bound": memory_bound / seconds,
        "of_roofline": roofline / seconds,
    }


class StepMeter:
    """Wraps a runner's ``decode_step`` to time each step and count what it read (``step_cost``)."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner
        model = runner.loaded.model
        language_model = model.model.language_model
        self.weights = DecoderWeights.of(language_model, model.lm_head)
        self.counter = RouteCounter()
        self.language_model = language_model
        self.steps: list[StepCost] = []
        self.estimated = False
        """Routes were estimated (``DecoderWeights.expected_routes``), not recorded."""

    @contextmanager
    def measuring(self) -> Iterator[StepMeter]:
        original = self.runner.decode_step
        device = self.runner.device

        def measured(tokens: Any, cache: Any) -> torch.Tensor:
            lengths = list(cache.lengths)
            _sync(device)
            self.counter.start()
            started = time.perf_counter()
            logits = original(tokens, cache)
            _sync(device)
            seconds = time.perf_counter() - started
            distinct, pairs = self.counter.stop()
            if not distinct:  # compiled: the hooks did not run
                self.estimated = True
                distinct, pairs = self.weights.expected_routes(len(lengths))
            self.steps.append(
                step_cost(self.weights, distinct, pairs, lengths, self.runner.kv_bytes_per_token, seconds)
            )
            return logits

        with self.counter.attached(self.language_model):
            self.runner.decode_step = measured
            try:
                yield self
            finally:
                del self.runner.decode_step
