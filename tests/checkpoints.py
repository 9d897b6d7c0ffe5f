"""Rewired copies of the tiny checkpoint, for tests that need a model that behaves in one known way."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from dsocr_cli.testing.checkpoint import SHARD_NAME


def rewritten_checkpoint(source: Path, target: Path, rewrite: Callable[[dict[str, torch.Tensor]], None]) -> Path:
    """A copy of the checkpoint at ``source`` whose tensors ``rewrite`` has changed in place."""
    shutil.copytree(source, target)
    tensors = load_file(str(target / SHARD_NAME))
    rewrite(tensors)
    save_file(tensors, str(target / SHARD_NAME), metadata={"format": "pt"})
    return target


def always_emit(token: int) -> Callable[[dict[str, torch.Tensor]], None]:
    """A rewrite after which greedy decoding emits ``token`` at every step, whatever the page.

    Hidden dimension 0 carries a large constant from every token embedding; no layer writes to it (its rows
    of every output projection are zero), so after the final norm it is positive at the last position, and
    the LM head turns exactly that dimension into the logit of ``token``, all others 0.
    """

    def rewrite(tensors: dict[str, torch.Tensor]) -> None:
        tensors["model.embed_tokens.weight"][:, 0] = 1000.0
        for name, tensor in tensors.items():
            if name.startswith("model.layers.") and name.endswith(("o_proj.weight", "down_proj.weight")):
                tensor[0, :] = 0.0
        tensors["model.norm.weight"][0] = 1.0
        tensors["lm_head.weight"].zero_()
        tensors["lm_head.weight"][token, 0] = 1.0

    return rewrite


def generate_with_first_logits(runner, request, max_new_tokens: int):
    """Greedy tokens of ``request`` without a guard and the float32 logits of its first step (the prompt's last
    position), taken from the same forward instead of running the prompt through the model twice."""
    first: list[torch.Tensor] = []

    def keep(module, args, output) -> None:
        if not first:
            first.append(output[0, -1].float().clone())

    hook = runner.model.lm_head.register_forward_hook(keep)
    try:
        generation = runner.generate(request, max_new_tokens=max_new_tokens, ngram_size=0)
    finally:
        hook.remove()
    return generation, first[0]
