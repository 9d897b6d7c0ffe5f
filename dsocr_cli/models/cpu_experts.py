"""Routed experts on the CPU at decode sizes: transformers' grouped form, its per-expert products split over threads.

At a decode step nearly every routed expert gets one to four rows, so the experts are a chain of small
matrix products, each reading one expert's weights. MKL runs such a product at about half the memory
bandwidth two cores reach together (12-14 GB/s of ~26 on the machine in BENCHMARKS.md), and
parallelises one small product poorly; two products at once, one per thread, reach 18-20 GB/s.

Rules:

- ``threaded_experts_forward`` is transformers' ``grouped_mm_experts_forward`` (same sort by expert, gate,
  routing weights, restored order and per-token sum) with the grouped products replaced by one
  ``F.linear`` per hit expert (up, gate, down), the hit experts dealt alternately to ``WORKERS`` threads.
  For experts with up to 4 rows those are the products the grouped kernel runs, bit for bit (measured on
  both model sizes; above that the grouped kernel switches to other code and results differ in the last
  bits, as between any two kernels).
- It applies to float32 on the CPU with ``MIN_ROWS`` to ``MAX_ROWS`` tokens, outside ``torch.compile``;
  everything else (prefill, one row, bfloat16 — at the memory bound with the grouped form on AMX CPUs —,
  other devices, compiled steps) runs the grouped form unchanged.
- ``NAME`` is registered in transformers' experts interface on import; ``models.loading.EXPERTS_IMPLEMENTATION``
  chooses it for the CPU.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from transformers.integrations.moe import ALL_EXPERTS_FUNCTIONS, grouped_mm_experts_forward

NAME = "dsocr_threaded"
"""The experts implementation's name in transformers' ``ALL_EXPERTS_FUNCTIONS``."""
WORKERS = 2
"""Threads the hit experts are dealt to (measured on 2 cores: 1.4-1.9x the grouped form at 4-16 rows)."""
MIN_ROWS = 4
"""Fewest tokens for the threaded form: at 1-2 rows (6-12 experts) it measured no faster."""
MAX_ROWS = 64
"""Most tokens for it: decode steps; a prompt's prefill (hundreds of tokens) keeps the grouped form."""

_pool: tuple[int, ThreadPoolExecutor] | None = None
"""The worker threads and the process they were started in (a forked child has none of its parent's threads)."""
_pool_lock = threading.Lock()


def _workers() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid():
            _pool = (os.getpid(), ThreadPoolExecutor(WORKERS, thread_name_prefix="dsocr-experts"))
        return _pool[1]


def takes_threaded(module: Any, hidden_states: torch.Tensor) -> bool:
    """Whether a call on ``hidden_states`` takes the threaded form (the rules above)."""
    return (
        hidden_states.device.type == "cpu"
        and hidden_states.dtype == torch.float32
        and MIN_ROWS <= hidden_states.shape[0] <= MAX_ROWS
        and module.has_gate
        and not module.has_bias
        and not module.is_transposed
        and not module.has_post_expert_norm
        and not module._is_expert_parallel
        and not torch.compiler.is_compiling()
    )


def threaded_experts_forward(
    self: Any, hidden_states: torch.Tensor, top_k_index: torch.Tensor, top_k_weights: torch.Tensor
) -> torch.Tensor:
    """An experts module's forward (transformers' signature): tokens (T, hidden) with their top-k experts and
    weights in, (T, hidden) out."""
    if not takes_threaded(self, hidden_states):
        return grouped_mm_experts_forward(self, hidden_states, top_k_index, top_k_weights)
    num_tokens, num_top_k = top_k_index.shape
    expert_ids = top_k_index.reshape(-1)
    expert_ids_g, perm = torch.sort(expert_ids)  # the grouped form's order, so each expert sees the same rows
    rows = hidden_states[perm // num_top_k]
    weights = top_k_weights.reshape(-1)[perm]
    counts = torch.bincount(expert_ids_g, minlength=self.num_experts).tolist()
    spans, start = [], 0
    for expert, count in enumerate(counts):
        if count:
            spans.append((expert, start, start + count))
        start += count
    out = torch.empty_like(rows)
    inference = torch.is_inference_mode_enabled()

    def run(share: list[tuple[int, int, int]]) -> None:
        with torch.inference_mode(inference), torch.no_grad():
            for expert, begin, end in share:
                up = torch.nn.functional.linear(rows[begin:end], self.gate_up_proj[expert])
                out[begin:end] = torch.nn.functional.linear(self._apply_gate(up), self.down_proj[expert])

    for done in [_workers().submit(run, spans[i::WORKERS]) for i in range(WORKERS)]:
        done.result()
    weighted = out * weights.unsqueeze(-1)
    inv_perm = torch.empty_like(perm)
    inv_perm[perm] = torch.arange(perm.size(0), device=perm.device)
    return weighted[inv_perm].view(num_tokens, num_top_k, -1).sum(dim=1).to(hidden_states.dtype)


ALL_EXPERTS_FUNCTIONS.register(NAME, threaded_experts_forward)
