"""SAM's relative-position attention on the CPU without the whole bias tensor: the same products, a slice at a time.

Both families' vision encoders start with SAM-B, whose attention adds a decomposed relative-position bias,
``bias[i, j] = rel_h[i, row(j)] + rel_w[i, col(j)]``, to the attention scores. transformers (as the official
code) materialises that bias for every image and head at once, (images x heads, N, N) for N patches: 805 MB
in float32 for a 1,024 px global view, 737 MB for six 640 px tiles. It builds it from two einsum outputs
whose memory is laid out (width, batch, ...), so the broadcast add writes a permuted tensor and the reshape
that follows copies all of it again with a cache-hostile stride. On a CPU those two passes cost more than the
attention itself (BENCHMARKS.md, "SAM's global attention").

Rules (``sam_attention_forward``):

- Only the bias is computed differently: ``qkv``, ``rel_h`` and ``rel_w`` are transformers' own (its
  ``get_rel_pos`` and einsums); the bias is written by one broadcast add into a contiguous buffer of at most
  ``SLICE_BYTES`` (one image-head at least), and each slice of image-heads goes through the same
  ``scaled_dot_product_attention`` call on its rows of query, key, value and bias. The bias values are the
  same additions of the same numbers, and attention never mixes image-heads, so the output is bit for bit
  transformers' (``tests/test_sam_attention.py`` checks both families at SAM-B's width and smaller ones in float32;
  bfloat16, identical on the CPUs measured, is checked within rounding since its kernels differ by CPU kind).
- It applies to SAM's global-attention layers (window size 0) in both families' SDPA attention on the CPU
  (``use_sliced_sam_attention``, called by ``models.loading.ready`` for CPU models). The windowed layers (14 x 14
  patches, 0.15 MB of bias per image-head) gained nothing beyond noise (``benchmarks/sam_attention.py``) and keep
  transformers' forward, as do layers without relative positions, calls asking for attention weights and other
  devices (not measured on a GPU).
"""

from __future__ import annotations

from types import MethodType
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

SLICE_BYTES = 64 * 2**20
"""Most bytes of bias one slice holds (one image-head of a 1,024 px view: 64 MiB in float32)."""


def _sdpa_classes() -> tuple[type, ...]:
    from transformers.models.deepseek_ocr2.modeling_deepseek_ocr2 import DeepseekOcr2SamVisionSdpaAttention
    from transformers.models.unlimited_ocr.modeling_unlimited_ocr import UnlimitedOcrSamVisionSdpaAttention

    return UnlimitedOcrSamVisionSdpaAttention, DeepseekOcr2SamVisionSdpaAttention


def sam_attention_forward(
    self: Any, hidden_states: torch.Tensor, output_attentions: bool = False
) -> tuple[torch.Tensor, None]:
    """The SDPA SAM attention's forward (transformers' signature and result), the bias built a slice at a time."""
    if output_attentions or not self.use_rel_pos:
        return type(self).forward(self, hidden_states, output_attentions)
    batch_size, height, width, _ = hidden_states.shape
    heads, patches = self.num_attention_heads, height * width
    qkv = self.qkv(hidden_states).reshape(batch_size, patches, 3, heads, -1).permute(2, 0, 3, 1, 4)
    query, key, value = qkv.reshape(3, batch_size * heads, patches, -1).unbind(0)
    grid = query.reshape(-1, height, width, query.shape[-1])
    rel_h = torch.einsum("bhwc,hkc->bhwk", grid, self.get_rel_pos(height, height, self.rel_pos_h))
    rel_w = torch.einsum("bhwc,wkc->bhwk", grid, self.get_rel_pos(width, width, self.rel_pos_w))
    rows = batch_size * heads
    per_slice = max(1, min(rows, SLICE_BYTES // (patches * patches * rel_h.element_size())))
    bias = torch.empty(per_slice, height, width, height, width, dtype=rel_h.dtype, device=rel_h.device)
    output = torch.empty(batch_size, heads, patches, value.shape[-1], dtype=value.dtype, device=value.device)
    flat = output.view(rows, patches, -1)
    for start in range(0, rows, per_slice):
        end = min(rows, start + per_slice)
        chunk = torch.add(rel_h[start:end, :, :, :, None], rel_w[start:end, :, :, None, :], out=bias[: end - start])
        flat[start:end] = F.scaled_dot_product_attention(
            query[None, start:end],
            key[None, start:end],
            value[None, start:end],
            attn_mask=chunk.view(1, end - start, patches, patches),
        )[0]
    output = (
        output.view(batch_size, heads, height, width, -1).permute(0, 2, 3, 1, 4).reshape(batch_size, height, width, -1)
    )
    return self.proj(output), None


def use_sliced_sam_attention(model: nn.Module) -> int:
    """Give the SDPA attention of every global-attention SAM layer of ``model`` ``sam_attention_forward``;
    returns how many."""
    classes = _sdpa_classes()
    count = 0
    for layer in model.modules():
        attention = getattr(layer, "attn", None)
        if type(attention) in classes and getattr(layer, "window_size", None) == 0:
            attention.forward = MethodType(sam_attention_forward, attention)
            count += 1
    return count
