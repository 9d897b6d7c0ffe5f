"""What a generation call hands back, shared by every family and the engine: generated ids, prefill
results, and the NaN/inf-logits check."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dsocr_cli.generation.loops import tail_repeats


@dataclass
class Generation:
    """Generated token ids (EOS excluded) and whether generation ended with EOS."""

    token_ids: list[int]
    finished: bool

    @property
    def looped(self) -> bool:
        """Stopped at the token limit with a tail that repeats (``generation.loops.tail_repeats``): a model loop,
        as opposed to a page that was merely longer than the limit."""
        return not self.finished and tail_repeats(self.token_ids)


class NonFiniteLogits(Exception):
    """The model produced NaN or infinite logits (damaged weights or a dtype overflow); callers name the page."""

    def __init__(self, row: int) -> None:
        super().__init__(f"NaN/inf logits in row {row}")
        self.row = row


def check_finite(logits: torch.Tensor) -> None:
    """Raise ``NonFiniteLogits`` for the first row of (rows, vocab) ``logits`` holding a NaN or an infinity.

    One reduction and one device sync per call (a decode step already syncs to read its tokens).
    """
    finite = torch.isfinite(logits).all(dim=-1)
    if not bool(finite.all()):
        raise NonFiniteLogits(int((~finite).nonzero()[0, 0]))


@dataclass
class Prefill:
    """A prompt run through the decoder: next-token logits and the per-layer keys/values it left."""

    logits: torch.Tensor
    """(vocab,) float32 logits for the first generated token."""
    layer_kv: list[tuple[torch.Tensor, torch.Tensor]]
    """Per layer: keys and values of shape (1, heads, prompt length, head dim)."""
