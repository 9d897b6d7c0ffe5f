"""Shared fixtures: random-weight checkpoints in the official layout (one per session each: the random one,
which never finishes a page, and one that always does), for DeepSeek-OCR v1 and DeepSeek-OCR-2, and
``dsocr``, the CLI run in-process.

Behaviour both families share (the engine, the writers through the CLI) is tested once, parametrised over
``family`` (test ids ``[v1]``/``[v2]``): ``family_checkpoint``, ``family_runner`` and
``family_eos_checkpoint`` are that family's session checkpoints and runner (the same objects as
``tiny_checkpoint``/``v2_checkpoint`` and so on, so each is made once per session).
"""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from transformers.utils import logging as hf_logging

from dsocr_cli.models.family import ModelFamily
from dsocr_cli.models.v1.family import FAMILY as V1
from dsocr_cli.models.v2.family import FAMILY as V2
from dsocr_cli.testing.checkpoint import write_checkpoint
from dsocr_cli.testing.checkpoint_v2 import write_checkpoint_v2, write_converted_checkpoint_v2
from tests.checkpoints import always_emit, rewritten_checkpoint
from tests.cli_support import Run, call_main, isolation

FIXTURES = Path(__file__).parent / "fixtures"

hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny v1 checkpoint (seed 0) the golden fixture was produced from."""
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_runner(tiny_checkpoint: Path):
    import torch

    from dsocr_cli.models.registry import load_runner

    return load_runner(tiny_checkpoint, torch.device("cpu"), torch.float32)


@pytest.fixture(scope="session")
def eos_checkpoint(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint rewired so greedy decoding emits EOS at the first step, whatever the page.

    Random weights never finish a page, so this is the only way to see a page end as a real one does
    (and a run exit 0); see ``tests.checkpoints.always_emit``.
    """
    from tokenizers import Tokenizer

    special = json.loads((tiny_checkpoint / "special_tokens_map.json").read_text())
    eos = Tokenizer.from_file(str(tiny_checkpoint / "tokenizer.json")).token_to_id(special["eos_token"]["content"])
    path = rewritten_checkpoint(tiny_checkpoint, tmp_path_factory.mktemp("ckpt") / "eos", always_emit(eos))
    return path


@pytest.fixture(scope="session")
def v2_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny DeepSeek-OCR-2 checkpoint (seed 0) in the official layout."""
    return write_checkpoint_v2(tmp_path_factory.mktemp("ckpt") / "v2-tiny", seed=0)


@pytest.fixture(scope="session")
def v2_runner(v2_checkpoint: Path):
    import torch

    from dsocr_cli.models.registry import load_runner
    from dsocr_cli.models.v2.runner import V2Runner

    runner = load_runner(v2_checkpoint, torch.device("cpu"), torch.float32)
    assert isinstance(runner, V2Runner)
    return runner


@pytest.fixture(scope="session")
def v2_eos_checkpoint(v2_checkpoint: Path, v2_runner, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny v2 checkpoint rewired to emit EOS at the first step (``tests.checkpoints.always_emit``)."""
    return rewritten_checkpoint(
        v2_checkpoint, tmp_path_factory.mktemp("ckpt") / "v2-eos", always_emit(v2_runner.eos_id)
    )


@pytest.fixture(scope="session")
def v2_converted_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same network in transformers' converted layout (``deepseek-community/DeepSeek-OCR-2``)."""
    return write_converted_checkpoint_v2(tmp_path_factory.mktemp("ckpt") / "v2-converted", seed=0)


# ---------------------------------------------------------------- both families, one suite


@dataclass(frozen=True)
class Family:
    """A model family as the shared tests run it: its ``ModelFamily``, its cheapest mode, and the names of
    its session fixtures."""

    name: str
    """``v1`` or ``v2``: the test id."""
    family: ModelFamily
    fast_mode: str
    """The cheapest mode both the engine and the CLI run it in: one view per page (v1 tiny 512 px, v2 base
    1024 px, which is v2's smallest)."""
    checkpoint: str
    runner: str
    eos_checkpoint: str

    @property
    def fast(self) -> tuple[str, ...]:
        """``--mode`` for ``fast_mode``."""
        return ("--mode", self.fast_mode)


FAMILIES = {
    "v1": Family("v1", V1, "tiny", "tiny_checkpoint", "tiny_runner", "eos_checkpoint"),
    "v2": Family("v2", V2, "base", "v2_checkpoint", "v2_runner", "v2_eos_checkpoint"),
}


@pytest.fixture(scope="session", params=list(FAMILIES))
def family(request: pytest.FixtureRequest) -> Family:
    """Each model family in turn (test ids ``v1`` and ``v2``)."""
    return FAMILIES[request.param]


@pytest.fixture(scope="session")
def family_checkpoint(family: Family, request: pytest.FixtureRequest) -> Path:
    """The family's random-weight checkpoint, which never finishes a page."""
    return request.getfixturevalue(family.checkpoint)


@pytest.fixture(scope="session")
def family_runner(family: Family, request: pytest.FixtureRequest):
    """The family's runner on ``family_checkpoint`` (CPU, float32)."""
    return request.getfixturevalue(family.runner)


@pytest.fixture(scope="session")
def family_eos_checkpoint(family: Family, request: pytest.FixtureRequest) -> Path:
    """The family's checkpoint rewired to emit EOS at the first step: every page ends at once (exit 0)."""
    return request.getfixturevalue(family.eos_checkpoint)


@pytest.fixture
def dsocr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> Callable[..., Run]:
    """``dsocr ARGS`` run in-process through the real entry point ``main``, its stdout and stderr captured
    at the file-descriptor level (so stray library output would show), in ``tmp_path`` as working directory,
    stdin empty, and isolated from the user's DSOCR_* settings, config file and network."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO()))  # as with </dev/null
    for key in [key for key in os.environ if key.startswith("DSOCR_")]:
        monkeypatch.delenv(key)
    for key, value in isolation(tmp_path).items():
        monkeypatch.setenv(key, value)

    def invoke(*args: str | Path) -> Run:
        capfd.readouterr()
        code = call_main([str(arg) for arg in args])
        out, err = capfd.readouterr()
        return Run(code, out, err)

    return invoke
