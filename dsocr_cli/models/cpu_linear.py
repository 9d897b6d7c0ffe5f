"""Linear layers at decode sizes on the CPU: ``W @ x^T`` instead of ``nn.Linear``'s ``x @ W^T``.

For a few rows against a weight matrix, MKL's transposed-weight product (what ``nn.Linear`` runs) reads the
weights at a fraction of the bandwidth the other orientation reaches on AMD CPUs: over the decoder's
projection shapes on the machine in BENCHMARKS.md, 1.4-2.9x slower at 2-32 rows, equal at 1 row, where both
give the same bits (``benchmarks/cpu_linear.py``). The output head (``V1Runner.output_head``) runs through it too.

Rules: a plain ``nn.Linear`` (quantized layers are other classes and keep their own forward) on float32 CPU
tensors with ``MIN_ROWS`` to ``MAX_ROWS`` rows (all leading dimensions together) and not inside
``torch.compile`` computes ``(W @ x^T)^T + b``; anything else is ``F.linear``. The two orientations differ in
the last bits for 2 or more rows (as two kernels do); one row, prompts (hundreds of rows) and the vision
encoder (thousands) are unchanged. ``use_transposed_linears`` gives a model's plain linears this forward;
``models.loading.ready`` does it for float32 models on the CPU.
"""

from __future__ import annotations

from types import MethodType

import torch
from torch import nn
from torch.nn import functional as F

MIN_ROWS = 2
"""Fewest rows for ``W @ x^T`` (at one row both orientations are the same product)."""
MAX_ROWS = 32
"""Most rows for it: decode steps (measured 1.4-2.9x faster at 2-32 rows); prefill keeps ``nn.Linear``."""


def takes_transposed(weight: torch.Tensor, inputs: torch.Tensor) -> bool:
    """Whether a linear layer with ``weight`` computes ``inputs`` as ``W @ x^T`` (the rules above)."""
    return (
        inputs.device.type == "cpu"
        and inputs.dtype == torch.float32
        and weight.dtype == torch.float32
        and MIN_ROWS <= inputs.numel() // max(1, inputs.shape[-1]) <= MAX_ROWS
        and not torch.compiler.is_compiling()
    )


def linear_forward(self: nn.Linear, inputs: torch.Tensor) -> torch.Tensor:
    """``nn.Linear.forward``, as ``W @ x^T`` where ``takes_transposed`` says so."""
    if not takes_transposed(self.weight, inputs):
        return F.linear(inputs, self.weight, self.bias)
    rows = inputs.reshape(-1, inputs.shape[-1])
    out = torch.mm(self.weight, rows.T).T
    if self.bias is not None:
        out = out + self.bias
    return out.contiguous().view(*inputs.shape[:-1], self.out_features)


def use_transposed_linears(model: nn.Module) -> int:
    """Give every plain ``nn.Linear`` of ``model`` ``linear_forward``; returns how many."""
    count = 0
    for module in model.modules():
        if type(module) is nn.Linear:
            module.forward = MethodType(linear_forward, module)
            count += 1
    return count
