"""Compiled decode steps: ``torch.compile`` over a family's decode forward, on fixed shapes.

A decode step is a few hundred small kernels (per layer: norms, projections, rotary, attention, router,
experts); on a GPU, launching them from Python costs more than running them. Compiling the step's
decoder forward fuses the small ones and, on CUDA (``mode="reduce-overhead"``), records it as CUDA
graphs replayed without Python. Graphs need fixed shapes and addresses, so a compiled forward runs on a
static ``RowCache`` (``generation.kvcache``): rows padded to power-of-two buckets, attention over the
whole preallocated capacity, buffers allocated once (and marked as static addresses on CUDA). Each
bucket (1, 2, 4, ... rows) and each capacity compiles once.

Opt-in (``--compile``): the compiled path is tested to give the eager path's tokens on the CPU
(tests/test_compiled.py), but it has not been measured on a GPU, where it is meant to pay off, and
compiling costs time up front (tens of seconds per bucket on a CPU) that only long runs win back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

CUDA_MODE = "reduce-overhead"
"""On CUDA: inductor with CUDA graphs."""
CPU_MODE = "default"


BACKEND = "inductor"
"""What ``--compile`` compiles with; tests also use ``aot_eager`` (the same capture, no code generation)."""


def compile_forward(forward: Callable[..., Any], device: torch.device, backend: str = BACKEND) -> Callable[..., Any]:
    """``forward`` compiled for ``device`` with fixed shapes by ``backend`` (inductor: with ``CUDA_MODE`` on CUDA)."""
    if backend != "inductor":
        return torch.compile(forward, backend=backend, dynamic=False)
    return torch.compile(forward, mode=CUDA_MODE if device.type == "cuda" else CPU_MODE, dynamic=False)


def mark_static(tensor: torch.Tensor) -> torch.Tensor:
    """Tell CUDA graphs that ``tensor`` keeps its address across steps (a static cache buffer), so steps that
    write into it are still recorded; a no-op off CUDA."""
    if tensor.device.type == "cuda":
        torch._dynamo.mark_static_address(tensor)
    return tensor
