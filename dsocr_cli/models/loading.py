"""Loading a family's weights into its transformers class, checked: one rule for every family.

``from_pretrained`` with dsocr's config, SDPA attention and the chosen device; running out of memory, an
unreadable shard, or any missing, unexpected or misshaped tensor after transformers' name conversion is a
one-line ``ModelError`` naming the directory (exit 4). Nothing half-loaded is returned.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dsocr_cli.errors import ModelError


def load_checked(
    model_class: Any, directory: Path, config: Any, dtype: torch.dtype, device: torch.device, oom_advice: str = ""
) -> Any:
    """``model_class.from_pretrained(directory, config=config, ...)`` with every failure as one line."""
    try:
        model, info = model_class.from_pretrained(
            directory,
            config=config,
            dtype=dtype,
            device_map=device,
            attn_implementation="sdpa",
            output_loading_info=True,
        )
    except torch.OutOfMemoryError:
        raise ModelError(f"{directory}: out of memory loading the weights on {device}{oom_advice}") from None
    except (OSError, RuntimeError, ValueError) as exc:
        raise ModelError(f"{directory}: cannot load weights ({str(exc).splitlines()[0]})") from None
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        names = sorted(info.get(kind) or [])
        if names:
            raise ModelError(f"{directory}: {kind.replace('_', ' ')} after conversion: {names[0]}")
    return model
