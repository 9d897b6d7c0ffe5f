"""Build the local backend from user-facing settings: model reference, device, dtype, quantization."""

from __future__ import annotations

import time

from dsocr_cli.devices import resolve_device, resolve_dtype
from dsocr_cli.engine.local import LocalBackend
from dsocr_cli.hub import resolve_model
from dsocr_cli.models.registry import load_runner
from dsocr_cli.progress import Reporter
from dsocr_cli.quant import prepare_quantized, resolve_quant


def local_backend(
    model: str, device: str, dtype: str, quant: str, offline: bool, reporter: Reporter, batch_size: int | None = None
) -> LocalBackend:
    """Resolve (and if needed download) the model, then load it onto the chosen device.

    ``batch_size`` None sizes batches from the memory left after loading (``engine.batched.auto_batch_size``).
    """
    with reporter.paused():
        directory = resolve_model(model, offline=offline, quiet=reporter.quiet)
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    quant = resolve_quant(quant, torch_device, directory)
    started = time.perf_counter()
    if quant != "none":
        directory = prepare_quantized(directory, quant, torch_device, notify=reporter.info)
    runner = load_runner(directory, torch_device, torch_dtype)
    reporter.info(
        f"model {model} loaded on {torch_device} ({str(torch_dtype).removeprefix('torch.')}, quant {quant}) "
        f"in {time.perf_counter() - started:.1f} s"
    )
    return LocalBackend(runner, batch_size=batch_size)
