"""Linear layers at decode sizes on the CPU: ``W @ x^T`` at 2-32 rows and oneDNN's product at one row, instead of
``nn.Linear``'s MKL ``x @ W^T``.

For a few rows against a weight matrix, MKL's transposed-weight product (what ``nn.Linear`` runs) reads the
weights at a fraction of the bandwidth the other orientation reaches on AMD CPUs: over the decoder's
projection shapes on the machine in BENCHMARKS.md, 1.4-2.9x slower at 2-32 rows (``benchmarks/cpu_linear.py``).
At one row oneDNN's matrix product (``torch.ops.mkldnn._linear_pointwise``, the kernel inductor's CPU backend
calls) reads the weights faster than either MKL form, the output head most; at 2-4 rows it was slower than
``W @ x^T`` and at 8-16 rows no faster over whole decode steps (BENCHMARKS.md).
The output head (``V1Runner.output_head``) runs through the same rule.

Rules: a plain ``nn.Linear`` (quantized layers are other classes and keep their own forward) on float32 CPU
tensors, not inside ``torch.compile``:

- with ``MIN_ROWS`` to ``MAX_ROWS`` rows (all leading dimensions together) computes ``(W @ x^T)^T + b``;
- with one row and autograd off (inference; the oneDNN op has no backward) computes oneDNN's product, where this
  torch build has it (``onednn_linear``);
- anything else is ``F.linear``.

Each form differs from ``F.linear`` in the last bits (as two kernels do); prompts (hundreds of rows) and the
vision encoder (thousands) are unchanged. ``use_transposed_linears`` gives a model's plain linears this forward;
``models.loading.ready`` does it for float32 models on the CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MethodType

import torch
from torch import nn
from torch.nn import functional as F

MIN_ROWS = 2
"""Fewest rows for ``W @ x^T`` (at one row both MKL orientations are the same product; oneDNN's is faster)."""
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


def onednn_linear() -> Callable[..., torch.Tensor] | None:
    """oneDNN's linear product ``(x, W, b, "none", [], "")`` in this torch build, or None (no mkldnn)."""
    if not torch.backends.mkldnn.is_available():
        return None
    return getattr(torch.ops.mkldnn, "_linear_pointwise", None)


_ONEDNN = onednn_linear()
ONEDNN_ROWS: frozenset[int] = frozenset({1})
"""Row counts that take oneDNN's product (checked before ``W @ x^T``'s range): one row, where it measured faster."""


def takes_onednn(weight: torch.Tensor, inputs: torch.Tensor) -> bool:
    """Whether a linear layer with ``weight`` computes ``inputs`` with oneDNN's product (the rules above)."""
    return (
        _ONEDNN is not None
        and inputs.device.type == "cpu"
        and inputs.dtype == torch.float32
        and weight.dtype == torch.float32
        and inputs.numel() // max(1, inputs.shape[-1]) in ONEDNN_ROWS
        and not torch.is_grad_enabled()
        and not torch.compiler.is_compiling()
    )


def linear_forward(self: nn.Linear, inputs: torch.Tensor) -> torch.Tensor:
    """``nn.Linear.forward``, as ``W @ x^T`` or oneDNN's product where ``takes_transposed``/``takes_onednn`` say so."""
    if takes_onednn(self.weight, inputs):
        out = _ONEDNN(inputs.reshape(-1, inputs.shape[-1]), self.weight, self.bias, "none", [], "")
        return out.view(*inputs.shape[:-1], self.out_features)
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
