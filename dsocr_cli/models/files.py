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


def check_tensor_headers(
    directory: Path,
    expected: dict[str, tuple[int, ...]],
    model: str,
    optional: frozenset[str] = frozenset(),
) -> None:
    """Compare every tensor's name and shape in the safetensors headers of ``directory`` with ``expected``
    (a family's layout table); ``model`` names the family in the unexpected-tensor message. Imports
    safetensors only when called."""
    from safetensors import safe_open

    found: dict[str, tuple[tuple[int, ...], Path]] = {}
    for file in weight_files(directory):
        try:
            with safe_open(str(file), framework="pt") as handle:
                for name in handle.keys():  # noqa: SIM118  (a safe_open handle is not a dict)
                    found[name] = (tuple(handle.get_slice(name).get_shape()), file)
        except Exception as exc:  # noqa: BLE001  (safetensors raises SafetensorError for corrupt headers)
            raise ModelError(f"{file}: not a readable safetensors file ({exc})") from None
    missing = [name for name in expected if name not in found]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ModelError(f"{directory}: missing tensor {missing[0]}{more}")
    for name, (shape, file) in found.items():
        if name in optional:
            continue
        if name not in expected:
            raise ModelError(f"{file}: unexpected tensor {name} (not part of {model})")
        if shape != expected[name]:
            raise ModelError(
                f"{file}: tensor {name} has shape {list(shape)}, config.json expects {list(expected[name])}"
            )
