"""Checkpoint files every family reads the same way: config.json and the safetensors shards.

Pure Python (json and paths only), so hub, quant and the registry can read a checkpoint's config
without importing torch or a family's model code. Failures are one-line ``ModelError``s.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dsocr_cli.errors import ModelError

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path.parent}: no {path.name} (not a model directory)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: unreadable ({exc})") from None


def weight_files(directory: Path) -> list[Path]:
    """The safetensors shards named by the index, or the single unsharded file."""
    index = directory / INDEX_NAME
    if index.is_file():
        shards = sorted(set(read_json(index).get("weight_map", {}).values()))
        missing = [name for name in shards if not (directory / name).is_file()]
        if missing:
            raise ModelError(f"{directory}: weight file {missing[0]} listed in {INDEX_NAME} is missing")
        return [directory / name for name in shards]
    if (directory / SINGLE_NAME).is_file():
        return [directory / SINGLE_NAME]
    found = sorted(directory.glob("*.safetensors"))
    if len(found) == 1:
        return found
    raise ModelError(f"{directory}: no safetensors weights (expected {INDEX_NAME} or {SINGLE_NAME})")
