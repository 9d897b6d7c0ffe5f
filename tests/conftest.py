"""Shared fixtures: random-weight checkpoints in the official layout (one per session each: the random one,
which never finishes a page, and one that always does) and ``dsocr``, the CLI run in-process."""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from transformers.utils import logging as hf_logging

from dsocr_cli.testing.checkpoint import write_checkpoint
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
