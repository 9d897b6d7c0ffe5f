"""The decoder's routed experts, stored quantized with bitsandbytes behind the same module interface.

transformers' bitsandbytes integration swaps ``nn.Linear`` modules only, but DeepSeek-OCR keeps its 64
routed experts per layer as two fused 3-D parameters (``gate_up_proj`` (E, 2I, H) and ``down_proj``
(E, H, I)): about 2.4B of the 3.3B parameters. Left alone they stay bf16 and "nf4" saves little, so dsocr
replaces each experts module (v1's ``UnlimitedOcrTextExperts``, v2's ``DeepseekOcr2TextExperts``) with
``QuantizedExperts``: same ``forward(hidden_states,
top_k_index, top_k_weights)``, one quantized row per expert, and only the experts the router picked for
the current tokens are dequantized and multiplied.

Formats (each expert is one contiguous row, so selecting an expert is a slice):

- ``nf4``: ``bitsandbytes.functional.quantize_4bit`` of each expert matrix, blocksize 64, one float32
  absmax per block (4.5 bits per weight, 28% of bf16). Statistics are not double-quantized: per-expert
  slices of nested statistics would not line up with the 256-value nested blocks, and the 0.4 bit saved
  is small next to what quantizing the experts at all saves.
- ``int8``: bitsandbytes' row-wise ``int8_vectorwise_quant`` (int8 values, float32 absmax per output
  row, the ``SCB`` of ``Int8Params``). The matmul is weight-only: the int8 rows are cast to the compute
  dtype and the output is scaled by ``SCB / 127``. bitsandbytes' own LLM.int8() matmul also quantizes
  the activations, and on CPUs without AVX512 its int8 product is a float32 emulation; measured with
  ``benchmarks/experts_speed.py`` (one layer, official sizes, float32): weight-only 18 ms vs LLM.int8()
  36 ms per decode token, 569 vs 579 ms for 256 tokens, so weight-only is as fast or faster and keeps
  activations exact.

Computing: tokens are sorted by expert (as transformers' grouped implementation does) and each selected
expert is dequantized once per forward into the compute dtype, then used in plain ``F.linear`` calls.
Dequantizing dominates, so the walk order hardly matters: transformers' eager one-hot mask loop over the
same weights timed the same within noise (nf4: 52 vs 52 ms per decode token, 890 vs 841 ms for 256
tokens); the sorted walk avoids building the (experts x top-k x tokens) mask. On CPU bitsandbytes has
no fused 4-bit GEMM without AVX512-BF16 (``matmul_4bit`` dequantizes too).
"""

from __future__ import annotations

from collections.abc import Callable

import bitsandbytes.functional as bnbf
import torch
from torch import nn
from torch.nn import functional as F
from transformers.models.deepseek_ocr2.modeling_deepseek_ocr2 import DeepseekOcr2TextExperts
from transformers.models.unlimited_ocr.modeling_unlimited_ocr import UnlimitedOcrTextExperts

EXPERT_CLASSES = (UnlimitedOcrTextExperts, DeepseekOcr2TextExperts)
"""transformers' routed-experts modules of v1 and v2: the same decoder, the same fused (E, 2I, H) / (E, H, I) layout."""
EXPERT_KINDS = ("nf4", "int8")
BLOCKSIZE = 64
"""bitsandbytes' default 4-bit block: the granularity of the per-block scale."""
PROJECTIONS = ("gate_up_proj", "down_proj")


class QuantizedExperts(nn.Module):
    """Drop-in replacement for either family's experts module (``EXPERT_CLASSES``) with nf4 or int8 weights per expert."""

    def __init__(
        self,
        num_experts: int,
        hidden_dim: int,
        intermediate_dim: int,
        act_fn: Callable[[torch.Tensor], torch.Tensor],
        kind: str,
        device: torch.device | str = "meta",
    ) -> None:
        """Empty buffers with the layout of ``kind``; fill them with ``quantize`` or from a saved state."""
        super().__init__()
        if kind not in EXPERT_KINDS:
            raise ValueError(f"unknown expert quantization {kind!r}")
        self.num_experts = num_experts
        self.hidden_dim = hidden_dim
        self.intermediate_dim = intermediate_dim
        self.act_fn = act_fn
        self.kind = kind
        for name, (rows, cols) in self.matrix_shapes().items():
            if kind == "nf4":
                if (rows * cols) % BLOCKSIZE:
                    raise ValueError(f"{name}: {rows}x{cols} is not a whole number of {BLOCKSIZE}-value blocks")
                packed = torch.empty(num_experts, rows * cols // 2, dtype=torch.uint8, device=device)
                stats = torch.empty(num_experts, rows * cols // BLOCKSIZE, dtype=torch.float32, device=device)
                self.register_buffer(name, packed)
                self.register_buffer(self.stats_name(name), stats)
            else:
                self.register_buffer(name, torch.empty(num_experts, rows, cols, dtype=torch.int8, device=device))
                self.register_buffer(
                    self.stats_name(name), torch.empty(num_experts, rows, dtype=torch.float32, device=device)
                )

    def matrix_shapes(self) -> dict[str, tuple[int, int]]:
        """(out, in) of one expert's matrices, as ``F.linear`` takes them."""
        return {
            "gate_up_proj": (2 * self.intermediate_dim, self.hidden_dim),
            "down_proj": (self.hidden_dim, self.intermediate_dim),
        }

    @property
    def num_weights(self) -> int:
        """Weights these experts stand for (what bf16 would store)."""
        return self.num_experts * sum(rows * cols for rows, cols in self.matrix_shapes().values())

    @classmethod
    def quantize(cls, experts: nn.Module, kind: str, device: torch.device | str) -> QuantizedExperts:
        """Quantize a loaded experts module (``EXPERT_CLASSES``) on ``device``, one expert at a time."""
        device = torch.device(device)
        module = cls(
            experts.num_experts, experts.hidden_dim, experts.intermediate_dim, experts.act_fn, kind, device=device
        )
        with torch.no_grad():
            for name in PROJECTIONS:
                weights = getattr(experts, name)
                values, stats = getattr(module, name), getattr(module, module.stats_name(name))
                for index in range(module.num_experts):
                    matrix = weights[index].to(device)
                    if kind == "nf4":
                        packed, state = bnbf.quantize_4bit(
                            matrix.contiguous(), blocksize=BLOCKSIZE, quant_type="nf4", compress_statistics=False
                        )
                        values[index] = packed.view(-1)
                        stats[index] = state.absmax
                    else:
                        rows, row_absmax, _ = bnbf.int8_vectorwise_quant(matrix.to(torch.float16))
                        values[index] = rows
                        stats[index] = row_absmax
        return module

    def stats_name(self, name: str) -> str:
        """The buffer holding ``name``'s scales: nf4 block absmax or int8 row absmax (bitsandbytes' SCB)."""
        return f"{name}_absmax" if self.kind == "nf4" else f"{name}_scb"

    def dequantized(self, name: str, expert: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One expert's matrix in ``dtype``, plus the per-row output scale int8 leaves to apply after the matmul."""
        values = getattr(self, name)[expert]
        if self.kind == "nf4":
            state = bnbf.QuantState(
                absmax=getattr(self, self.stats_name(name))[expert],
                shape=torch.Size(self.matrix_shapes()[name]),
                blocksize=BLOCKSIZE,
                quant_type="nf4",
                dtype=dtype,
            )
            return bnbf.dequantize_4bit(values, state), None
        return values.to(dtype), (getattr(self, self.stats_name(name))[expert] / 127.0).to(dtype)

    def project(self, name: str, expert: int, inputs: torch.Tensor) -> torch.Tensor:
        """``inputs`` through one expert matrix; its dequantized copy lives for this call only."""
        weight, scale = self.dequantized(name, expert, inputs.dtype)
        out = F.linear(inputs, weight)
        return out if scale is None else out * scale

    def forward(
        self, hidden_states: torch.Tensor, top_k_index: torch.Tensor, top_k_weights: torch.Tensor
    ) -> torch.Tensor:
        """Route each (token, expert) pair through its expert and sum the weighted outputs per token."""
        num_tokens, top_k = top_k_index.shape
        expert_ids = top_k_index.reshape(-1)
        order = torch.argsort(expert_ids, stable=True)
        counts = torch.bincount(expert_ids, minlength=self.num_experts)[: self.num_experts].tolist()
        inputs = hidden_states[order // top_k]
        outputs = torch.zeros(order.numel(), self.hidden_dim, dtype=hidden_states.dtype, device=hidden_states.device)
        start = 0
        for expert, count in enumerate(counts):
            if count == 0:
                continue
            rows = slice(start, start + count)
            gate, up = self.project("gate_up_proj", expert, inputs[rows]).chunk(2, dim=-1)
            outputs[rows] = self.project("down_proj", expert, self.act_fn(gate) * up)
            start += count
        weighted = outputs * top_k_weights.reshape(-1)[order, None]
        unsorted = torch.empty_like(weighted)
        unsorted[order] = weighted
        return unsorted.view(num_tokens, top_k, self.hidden_dim).sum(dim=1).to(hidden_states.dtype)

    def extra_repr(self) -> str:
        sizes = f"hidden={self.hidden_dim}, intermediate={self.intermediate_dim}"
        return f"{self.kind}, experts={self.num_experts}, {sizes}"
