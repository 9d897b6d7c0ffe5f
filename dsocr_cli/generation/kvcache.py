"""A key/value cache for a batch whose sequences start and stop independently (continuous batching).

transformers' ``DynamicCache`` gives every row of a batch the same length: new rows need left padding,
a finished row cannot be handed to a new page without shifting the others, and every decode step
re-allocates the whole cache with ``torch.cat``. Here each row keeps its own length instead: row ``r``
holds its sequence at positions ``0 .. length[r]-1`` (so rotary positions start at 0 without any
padding bookkeeping), a decode step writes one token per row in place, and the attention mask hides
each row's unused tail. New buffers are zeroed, not left uninitialised: a masked position still enters the
attention product with weight 0, and 0 times a NaN left in uninitialised memory is NaN.

Growth: the engine reserves, when it admits pages, room for their whole token limit (``reserve`` with
prompt + ``max_new_tokens``), so buffers are not copied again while those pages decode; where that much
does not fit the memory budget the engine gives, capacity grows in ``GROWTH_CHUNK`` steps as the longest
live sequence needs it (one copy per 256 decode steps), so memory follows the live sequences.

Static steps (``static=True``, for compiled decode steps and CUDA graphs, ``generation.compiled``): every
step has the same shapes for a given number of live rows: the rows are padded up to a bucket (the next
power of two, at most ``max_rows``; a padded row feeds token ``pad`` at position 0 of a free row, which no
live row reads) and attention spans the whole capacity, the mask hiding what each row has not written.
All ``max_rows`` rows are allocated at the first reservation, so buffers keep their addresses.

The decoder layers see this object as their ``past_key_values``: they only call ``update``. Every
method that allocates or writes runs in inference mode, as the model does, so buffers made by either
can be written by both — except in a static cache, whose buffers and step inputs are ordinary tensors
made without autograd: ``torch.compile`` cannot trace through inference tensors.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import torch

from dsocr_cli.generation.compiled import mark_static

T = TypeVar("T")


def without_autograd(method: Callable[..., T]) -> Callable[..., T]:
    """Run a ``RowCache`` method in inference mode, or for a static cache with autograd off (module docstring)."""

    @functools.wraps(method)
    def wrapper(self: RowCache, *args: Any, **kwargs: Any) -> T:
        with torch.inference_mode(not self.static), torch.no_grad():
            return method(self, *args, **kwargs)

    return wrapper


GROWTH_CHUNK = 256
"""Capacity grows in steps of this many positions: one copy per 256 decode steps, not one per step."""


class RowCache:
    """Per-layer key/value buffers of shape (rows, heads, capacity, head_dim); rows ``0 .. active-1`` are live.

    Both the rows (up to ``max_rows``) and the capacity are allocated as they are first needed, so a
    large batch size costs nothing until that many pages are live at once.
    """

    def __init__(
        self,
        layers: int,
        max_rows: int,
        heads: int,
        head_dim: int,
        dtype: torch.dtype,
        device: torch.device,
        static: bool = False,
    ) -> None:
        self.max_rows = max_rows
        self.static = static
        self.keys = [torch.empty(0, heads, 0, head_dim, dtype=dtype, device=device) for _ in range(layers)]
        self.values = [torch.empty_like(k) for k in self.keys]
        self.lengths: list[int] = []
        self.step_rows: torch.Tensor | None = None
        self.step_positions: torch.Tensor | None = None
        self.step_width = 0
        self.step_count = 0
        """Rows this step computes: the live rows, or their bucket in static mode."""

    @property
    def active(self) -> int:
        return len(self.lengths)

    @property
    def capacity(self) -> int:
        return self.keys[0].shape[2]

    @property
    def allocated_bytes(self) -> int:
        """Bytes the buffers take now."""
        return self.keys[0].shape[0] * self.capacity * self.bytes_per_position

    @property
    def bytes_per_position(self) -> int:
        """Bytes one row's position takes over all layers, keys and values."""
        _, heads, _, head_dim = self.keys[0].shape
        return 2 * len(self.keys) * heads * head_dim * self.keys[0].element_size()

    @without_autograd
    def reserve(self, rows: int, length: int, budget: int | None = None) -> bool:
        """Make room for ``rows`` rows of ``length`` positions, keeping what is stored; with ``budget``, only
        if the buffers then take at most that many bytes (False: nothing was allocated)."""
        allocated = self.keys[0].shape[0]
        if rows <= allocated and length <= self.capacity:
            return True
        rows = self.max_rows if self.static else min(self.max_rows, max(rows, 2 * allocated))
        capacity = max(self.capacity, -(-length // GROWTH_CHUNK) * GROWTH_CHUNK)
        if budget is not None and rows * capacity * self.bytes_per_position > budget:
            return False
        used = max(self.lengths, default=0)
        for store in (self.keys, self.values):
            for i, old in enumerate(store):
                _, heads, _, head_dim = old.shape
                new = torch.zeros(rows, heads, capacity, head_dim, dtype=old.dtype, device=old.device)
                new[: self.active, :, :used] = old[: self.active, :, :used]
                store[i] = mark_static(new) if self.static else new
        return True

    @without_autograd
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

    @without_autograd
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

    @without_autograd
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
        self.step_count = self.active
        mask = torch.arange(width, device=device)[None, :] <= positions[:, None]
        return mask[:, None, None, :], positions[:, None]

    def bucket(self, rows: int) -> int:
        """Rows a static step computes for ``rows`` live ones: the next power of two, at most ``max_rows``."""
        return min(self.max_rows, 1 << max(0, rows - 1).bit_length())

    @without_autograd
    def begin_static_step(self, tokens: list[int], pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A decode step of fixed shapes (module docstring): input ids (bucket, 1), the mask (bucket, 1, 1,
        capacity) and positions (bucket, 1); the live rows come first."""
        if not self.static:
            raise RuntimeError("begin_static_step on a cache made without static=True")
        device = self.keys[0].device
        self.reserve(self.max_rows, max(self.lengths) + 1)
        count = self.bucket(self.active)
        padding = count - self.active
        positions = torch.tensor(self.lengths + [0] * padding, device=device)
        self.step_rows = torch.arange(count, device=device)
        self.step_positions = positions
        self.step_width = self.capacity
        self.step_count = count
        mask = torch.arange(self.capacity, device=device)[None, :] <= positions[:, None]
        ids = torch.tensor(tokens + [pad] * padding, device=device)[:, None]
        return ids, mask[:, None, None, :], positions[:, None]

    @without_autograd
    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write this step's token (rows, heads, 1, head_dim) per row; return the keys and values to attend to."""
        if self.step_positions is None:
            raise RuntimeError("RowCache.update outside a decode step")
        n, width = self.step_count, self.step_width
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        keys[self.step_rows, :, self.step_positions] = key_states[:, :, 0]
        values[self.step_rows, :, self.step_positions] = value_states[:, :, 0]
        return keys[:n, :, :width], values[:n, :, :width]

    def end_step(self) -> None:
        self.lengths = [length + 1 for length in self.lengths]
        self.step_rows = self.step_positions = None
        self.step_count = 0
