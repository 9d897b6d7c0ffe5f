"""What both DeepSeek-OCR families build the same way from their pure-Python tables (``TableFamily``).

A family module subclasses ``TableFamily`` with its tables (modes, mode descriptions, architectures, vision
tower names, guard defaults, prompts) and three lazy hooks (its loaders and runner class, its official
layout); everything else a ``ModelFamily`` offers is derived here once: the ``ModeInfo`` of each mode, the
mode check, prompt resolution, recognition of the official config.json, reference sizes, and loading a plain
or dsocr-quantized directory. Importing this module is cheap (no torch).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from dsocr_cli.errors import UsageError
from dsocr_cli.models.family import GuardDefaults, ModeInfo, PromptLike, ReferenceSizes

if TYPE_CHECKING:
    import torch

    from dsocr_cli.models.family import FamilyRunner

OFFICIAL_MODEL_TYPE = "deepseek_vl_v2"
"""The official ``model_type`` of both families: never enough on its own to tell them apart."""
BF16_BYTES = 2
"""The official checkpoints ship bfloat16 weights."""


class TableFamily:
    """A ``ModelFamily`` (``dsocr_cli.models.family``) from tables; subclasses set the class attributes and hooks."""

    name: str
    description: str
    default_repo: str
    short_names: tuple[str, ...]
    default_mode: str
    guard_defaults: dict[str, GuardDefaults]
    prompts: ModuleType
    """The prompt table (``PROMPT_CHOICES``, ``resolve_prompt``)."""
    modes_module: ModuleType
    """The mode table (``MODES``, ``max_image_tokens(mode)``, ``image_tokens(mode, width, height)``)."""
    mode_descriptions: dict[str, str]
    architectures: frozenset[str]
    """``architectures`` of the official config.json."""
    vision_model_names: frozenset[str]
    """``vision_config.model_name`` of the official config.json."""
    unnamed_vision_is_ours = False
    """Whether an official-type config naming neither an architecture nor a vision tower is this family's."""
    context_tokens = 8192
    """The decoder's ``max_position_embeddings`` in the official config.json."""

    def __init__(self) -> None:
        self.prompt_choices: tuple[str, ...] = self.prompts.PROMPT_CHOICES
        self._modes = {
            name: ModeInfo(
                name=name,
                description=self.mode_descriptions[name],
                view_size=mode.view_size,
                max_image_tokens=self.modes_module.max_image_tokens(mode),
                image_tokens=partial(self.modes_module.image_tokens, mode),
            )
            for name, mode in self.modes_module.MODES.items()
        }

    def recognises_official(self, config: dict[str, Any]) -> bool:
        """The official layout: ``model_type: deepseek_vl_v2`` with this family's architecture or, without
        ``architectures``, its vision tower (``unnamed_vision_is_ours`` decides for a config naming neither)."""
        if config.get("model_type") != OFFICIAL_MODEL_TYPE:
            return False
        architectures = set(config.get("architectures") or [])
        if architectures:
            return bool(architectures & self.architectures)
        vision = config.get("vision_config")
        name = vision.get("model_name") if isinstance(vision, dict) else None
        return name in self.vision_model_names or (name is None and self.unnamed_vision_is_ours)

    def recognises(self, config: dict[str, Any]) -> bool:
        return self.recognises_official(config)

    @property
    def modes(self) -> dict[str, ModeInfo]:
        return self._modes

    def mode(self, name: str) -> ModeInfo:
        """The mode ``name``; a ``UsageError`` (exit 1) naming this family's modes otherwise."""
        if name not in self._modes:
            raise UsageError(
                f"--mode {name!r} is not supported by {self.description} (choose from {', '.join(self._modes)})"
            )
        return self._modes[name]

    def resolve_prompt(self, spec: str) -> PromptLike:
        return self.prompts.resolve_prompt(spec)

    def loaders(self) -> tuple[Callable[..., Any], Callable[[Path], Any], Callable[[Any], FamilyRunner]]:
        """(plain loader ``(directory, device=, dtype=) -> Loaded``, meta-device builder for the quantized cache
        (``dsocr_cli.models.quantize.EmptyModel``), runner class); imported when called (the model stack)."""
        raise NotImplementedError

    def official_layout(self) -> tuple[Any, Iterable[tuple[str, tuple[int, ...]]]]:
        """(the official checkpoint's size spec with ``num_hidden_layers`` and ``hidden_size``, its tensor shapes)."""
        raise NotImplementedError

    def load(
        self,
        directory: Path,
        device: torch.device,
        dtype: torch.dtype,
        notify: Callable[[str], None] | None = None,
    ) -> FamilyRunner:
        """A plain checkpoint through the family's loader; a dsocr-quantized directory (it has a manifest)
        through ``dsocr_cli.models.quantize.load_quantized``, importing bitsandbytes only then (its notices go
        to ``notify``)."""
        from dsocr_cli.quant import MANIFEST_NAME, quantization

        load_plain, empty, runner = self.loaders()
        directory = Path(directory)
        if (directory / MANIFEST_NAME).is_file():
            return runner(quantization(notify).load_quantized(directory, device, dtype, empty))
        return runner(load_plain(directory, device=device, dtype=dtype))

    def reference_sizes(self) -> ReferenceSizes:
        spec, shapes = self.official_layout()
        return ReferenceSizes(
            bf16_weight_bytes=sum(math.prod(shape) for _, shape in shapes) * BF16_BYTES,
            num_hidden_layers=spec.num_hidden_layers,
            hidden_size=spec.hidden_size,
            context_tokens=self.context_tokens,
        )
