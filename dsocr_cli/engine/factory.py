"""Build the local backend from user-facing settings: model reference, device, dtype, quantization."""

from __future__ import annotations

import time

from dsocr_cli.devices import resolve_device, resolve_dtype
from dsocr_cli.engine.local import LocalBackend
from dsocr_cli.hub import resolve_model
from dsocr_cli.models.registry import load_runner
from dsocr_cli.progress import Reporter
from dsocr_cli.quant import bnb_config


def local_backend(
    model: str, device: str, dtype: str, quant: str, offline: bool, reporter: Reporter
) -> LocalBackend:
    """Resolve (and if needed download) the model, then load it onto the chosen device."""
    directory = resolve_model(model, offline=offline)
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    started = time.perf_counter()
    runner = load_runner(
        directory, torch_device, torch_dtype, quantization_config=bnb_config(quant, torch_dtype)
    )
    reporter.info(
        f"model {model} loaded on {torch_device} ({str(torch_dtype).removeprefix('torch.')}, quant {quant}) "
        f"in {time.perf_counter() - started:.1f} s"
    )
    return LocalBackend(runner)
