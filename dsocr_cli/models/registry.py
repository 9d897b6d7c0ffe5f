"""The model families dsocr runs, and which one a checkpoint belongs to (from its config.json).

Everything outside ``dsocr_cli.models`` reaches a family through here: the CLI (mode choices, prompt
validation), hub (which cached models dsocr runs), quant and doctor (sizes, quantization code) and the
engine's factory (``load_runner``). Importing this module is cheap: families' descriptions are pure
Python; only ``load_runner`` imports torch and the family's model code.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsocr_cli.errors import ModelError, UsageError
from dsocr_cli.models.family import FamilyRunner, ModelFamily, PromptLike
from dsocr_cli.models.files import read_json
from dsocr_cli.models.v1.family import FAMILY as V1
from dsocr_cli.models.v2.family import FAMILY as V2

if TYPE_CHECKING:
    import torch

FAMILIES: tuple[ModelFamily, ...] = (V1, V2)
"""Every family, the default first."""
DEFAULT_FAMILY: ModelFamily = V1


def expand_model(reference: str) -> str:
    """A family's short name (``v1``, ``ocr``, ``v2``, ``ocr2``; ``@revision`` kept) -> its hub repo; anything
    else unchanged. A local directory of that name wins: the caller checks for one first."""
    name, at, revision = reference.partition("@")
    for family in FAMILIES:
        if name.lower() in family.short_names:
            return family.default_repo + at + revision
    return reference


"""The family of ``defaults.DEFAULT_MODEL``."""


def family_for_config(config: Any) -> ModelFamily | None:
    """The family that recognises ``config`` (a parsed config.json), or None."""
    if not isinstance(config, dict):
        return None
    return next((family for family in FAMILIES if family.recognises(config)), None)


def family_for(source: str | Path | dict[str, Any]) -> ModelFamily:
    """The family of a checkpoint directory (its config.json) or of a parsed config.json.

    An unknown or unsupported checkpoint is a one-line ``ModelError`` (exit 4) naming what was found.
    """
    if isinstance(source, dict):
        config, where = source, "config.json"
    else:
        config, where = read_json(Path(source) / "config.json"), str(source)
    family = family_for_config(config)
    if family is not None:
        return family
    architectures = config.get("architectures") if isinstance(config, dict) else None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    found = sorted(str(a) for a in architectures) if isinstance(architectures, list) else architectures or []
    supported = ", ".join(f.description for f in FAMILIES)
    raise ModelError(
        f"{where}: unsupported model (model_type {model_type!r}, architectures {found}); dsocr runs {supported}"
    )


def load_runner(
    directory: str | Path, device: torch.device, dtype: torch.dtype, notify: Callable[[str], None] | None = None
) -> FamilyRunner:
    """The runner for the family ``directory`` holds (``ModelFamily.load``).

    A directory written by ``dsocr_cli.quant.prepare_quantized`` (it has a quantized manifest) loads its
    nf4/int8 weights directly; only then is bitsandbytes imported (its import notices go to ``notify``,
    never to stderr: ``dsocr_cli.quant.bitsandbytes_notices``).
    """
    directory = Path(directory)
    return family_for(directory).load(directory, device, dtype, notify)


def mode_names() -> tuple[str, ...]:
    """Every mode of every family, in the order the families list them (``--mode`` choices)."""
    names: dict[str, None] = {}
    for family in FAMILIES:
        names.update(dict.fromkeys(family.modes))
    return tuple(names)


def mode_help() -> str:
    """``--mode``'s help: the default family's modes and their token budgets, then what the others support."""
    others = "; ".join(f"{f.short_names[0]} supports {', '.join(f.modes)}" for f in FAMILIES if f is not DEFAULT_FAMILY)
    return f"Resolution: {', '.join(mode.description for mode in DEFAULT_FAMILY.modes.values())}" + (
        f" ({others})." if others else "."
    )


def guard_help(part: str) -> str:
    """The families' official guard ``part`` (``ngram_size`` or ``window``) per input kind, for ``--help``:
    e.g. ``v1: 30 for images, 20 for PDFs; v2: 20``."""
    texts = []
    for family in FAMILIES:
        values = {kind: getattr(guard, part) for kind, guard in family.guard_defaults.items()}
        if len(set(values.values())) == 1:
            said = str(next(iter(values.values())))
        else:
            said = ", ".join(f"{value} for {kind if kind == 'pdf' else kind + 's'}" for kind, value in values.items())
        texts.append(f"{family.short_names[0]}: {said.replace('pdf', 'PDFs')}")
    return "; ".join(texts)


def prompt_choices() -> tuple[str, ...]:
    return DEFAULT_FAMILY.prompt_choices


def check_mode(name: str, family: ModelFamily = DEFAULT_FAMILY) -> None:
    """``UsageError`` (exit 1) naming ``family``'s modes when ``name`` is not one of them."""
    if name not in family.modes:
        raise UsageError(f"unknown --mode {name!r} (choose from {', '.join(family.modes)})")


def resolve_prompt(spec: str, family: ModelFamily = DEFAULT_FAMILY) -> PromptLike:
    """``--prompt`` checked before any model loads (the default family's prompts)."""
    return family.resolve_prompt(spec)
