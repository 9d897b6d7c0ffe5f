"""A key/value cache for a batch whose sequences start and stop independently (continuous batching).

transformers' ``DynamicCache`` gives every row of a batch the same length: new rows need left padding,
a finished row cannot be handed to a new page without shifting the others, and every decode step
re-allocates the whole cache with ``torch.cat``. Here each row keeps its own length instead: row ``r``
holds its sequence at positions ``0 .. length[r]-1`` (so rotary positions start at 0 without any
padding bookkeeping), a decode step writes one token per row in place, and the attention mask hides
each row's unused tail. Buffers grow in chunks, so memory follows the longest live sequence rather
than the worst case. New buffers are zeroed, not left uninitialised: a masked position still enters the
attention product with weight 0, and 0 times a NaN left in uninitialised memory is NaN.

The decoder layers see this object as their ``past_key_values``: they only call ``update``. Every
method that allocates or writes runs in inference mode, as the model does, so buffers made by either
can be written by both.
"""

from __future__ import annotations

import torch

GROWTH_CHUNK = 256
"""Capacity grows in steps of this many positions: one copy per 256 decode steps, not one per step."""


class RowCache:
    """Per-layer key/value buffers of shape (rows, heads, capacity, head_dim); rows ``0 .. active-1`` are live.

    Both the rows (up to ``max_rows``) and the capacity are allocated as they are first needed, so a
    large batch size costs nothing until that many pages are live at once.
    """

    @torch.inference_mode()
    def __init__(
        self, layers: int, max_rows: int, heads: int, head_dim: int, dtype: torch.dtype, device: torch.device
    ) -> None:
        self.max_rows = max_rows
        self.keys = [torch.empty(0, heads, 0, head_dim, dtype=dtype, device=device) for _ in range(layers)]
        self.values = [torch.empty_like(k) for k in self.keys]
        self.lengths: list[int] = []
        self.step_rows: torch.Tensor | None = None
        self.step_positions: torch.Tensor | None = None
        self.step_width = 0

    @property
    def active(self) -> int:
        return len(self.lengths)

    @property
    def capacity(self) -> int:
        return self.keys[0].shape[2]

    @torch.inference_mode()
    def reserve(self, rows: int, length: int) -> None:
        """Make room for ``rows`` rows of ``length`` positions, keeping what is stored."""
        allocated = self.keys[0].shape[0]
        if rows <= allocated and length <= self.capacity:
            return
        rows = min(self.max_rows, max(rows, 2 * allocated))
        capacity = max(self.capacity, -(-length // GROWTH_CHUNK) * GROWTH_CHUNK)
        used = max(self.lengths, default=0)
        for store in (self.keys, self.values):
            for i, old in enumerate(store):
                _, heads, _, head_dim = old.shape
                new = torch.zeros(rows, heads, capacity, head_dim, dtype=old.dtype, device=old.device)
                new[: self.active, :, :used] = old[: self.active, :, :used]
                store[i] = new

    @torch.inference_mode()
    def append(self, layer_kv: list[tuple[torch.Tensor, torch.Tensor]]) -> int:
        """Store one prefilled sequence (per layer: keys and values of shape (1, heads, length, head_dim)) in a new row."""
        if self.active == self.max_rows:
            raise RuntimeError("row cache is full")
        row = self.active
        length = layer_kv[0][0].shape[2]
        self.reserve(row + 1, length)
        for layer, (key, value) in enumerate(layer_kv):
            self.keys[layer][row, :, :length] = key[0]
            self.values[layer][row, :, :length] = value[0]
        self.lengths.append(length)
        return row

    @torch.inference_mode()
    def remove(self, row: int) -> None:
        """Free ``row`` by moving the last live row into it, so live rows stay contiguous (callers mirror the move)."""
        last = self.active - 1
        if row != last:
            length = self.lengths[last]
            for store in (self.keys, self.values):
                for buffer in store:
                    buffer[row, :, :length] = buffer[last, :, :length]
            self.lengths[row] = length
        self.lengths.pop()

    @torch.inference_mode()
    def begin_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Prepare one decode step: returns the attention mask (rows, 1, 1, width) and positions (rows, 1).

        Each live row receives one token at position ``length[r]``; it may attend to positions 0..length[r].
        """
        device = self.keys[0].device
        width = max(self.lengths) + 1
        self.reserve(self.active, width)
        positions = torch.tensor(self.lengths, device=device)
        self.step_rows = torch.arange(self.active, device=device)
        self.step_positions = positions
        self.step_width = width
        mask = torch.arange(width, device=device)[None, :] <= positions[:, None]
        return mask[:, None, None, :], positions[:, None]

    @torch.inference_mode()
    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write this step's token (rows, heads, 1, head_dim) per row; return the keys and values to attend to."""
        if self.step_positions is None:
            raise RuntimeError("RowCache.update outside a decode step")
        n, width = self.active, self.step_width
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        keys[self.step_rows, :, self.step_positions] = key_states[:, :, 0]
        values[self.step_rows, :, self.step_positions] = value_states[:, :, 0]
        return keys[:n, :, :width], values[:n, :, :width]

    def end_step(self) -> None:
        self.lengths = [length + 1 for length in self.lengths]
        self.step_rows = self.step_positions = None
