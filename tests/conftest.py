"""Shared fixtures: one random-weight checkpoint in the official layout per test session."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers.utils import logging as hf_logging

from dsocr_cli.testing.checkpoint import write_checkpoint

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
