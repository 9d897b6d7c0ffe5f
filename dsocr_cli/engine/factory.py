"""Build the local backend from user-facing settings: model reference, device, dtype, quantization."""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType

from dsocr_cli.engine.local import LocalBackend
from dsocr_cli.progress import DownloadBar, Reporter


def quiet_transformers() -> None:
    """Keep transformers' progress bars and log messages off stderr (dsocr reports loading itself).

    Called where models are loaded, not at start-up: importing transformers takes over a second, which
    ``dsocr --help`` and ``dsocr doctor`` must not pay.
    """
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


class ModelLoading:
    """The "loading model ..." display (``Reporter.loading``), handing the terminal to the download bar
    while a download runs, then taking it back. Implements ``dsocr_cli.hub.TransferProgress``.

    Two live displays cannot share a terminal: under the spinner the download bar would stay hidden, so
    the spinner is taken down (and the page bar paused) for as long as bytes are being fetched.
    """

    def __init__(self, reporter: Reporter, message: str, bar: DownloadBar) -> None:
        self.reporter = reporter
        self.message = message
        self.bar = bar
        self.display = ExitStack()

    def __enter__(self) -> ModelLoading:
        self.display.enter_context(self.reporter.loading(self.message))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.display.close()

    def start(self, total: int, completed: int) -> None:
        self.display.close()
        self.display = ExitStack()
        self.display.enter_context(self.reporter.paused())
        self.bar.start(total, completed)

    def advance(self, count: int) -> None:
        self.bar.advance(count)

    def stop(self) -> None:
        self.bar.stop()
        self.display.close()
        self.display = ExitStack()
        if self.reporter.interactive:  # a plain or -v line was printed once already
            self.display.enter_context(self.reporter.loading(self.message))


def local_backend(
    model: str,
    device: str,
    dtype: str,
    quant: str,
    offline: bool,
    reporter: Reporter,
    batch_size: int | None = None,
    compile_steps: bool = False,
) -> LocalBackend:
    """Resolve (and if needed download) the model, then load it onto the chosen device.

    While this runs, stderr shows "loading model MODEL ..." (a spinner on a terminal, a line with ``-v``),
    except for the download bar while a download runs. ``batch_size`` None sizes batches from the memory
    left after loading (``engine.batched.auto_batch_size``); ``compile_steps``: ``--compile``
    (``generation.compiled``).
    """
    from dsocr_cli import hub
    from dsocr_cli.devices import resolve_device, resolve_dtype
    from dsocr_cli.models.registry import load_runner
    from dsocr_cli.quant import prepare_quantized, resolve_quant

    quiet_transformers()
    bar = DownloadBar(f"downloading {model}", quiet=reporter.quiet)
    with ModelLoading(reporter, f"loading model {model} ...", bar) as loading:
        directory = source = hub.download(model, offline=offline, progress=loading).path
        torch_device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, torch_device)
        quant = resolve_quant(quant, torch_device, directory, torch_dtype)
        started = time.perf_counter()
        if quant != "none":
            directory = prepare_quantized(directory, quant, torch_device, notify=reporter.info)
        runner = load_runner(directory, torch_device, torch_dtype, notify=reporter.info)
    reporter.info(
        f"model {model} loaded on {torch_device} ({str(torch_dtype).removeprefix('torch.')}, quant {quant}) "
        f"in {time.perf_counter() - started:.1f} s"
    )
    from dsocr_cli.generation.compiled import BACKEND

    backend = LocalBackend(runner, batch_size=batch_size, compile=BACKEND if compile_steps else None)
    backend.provenance = {
        "model": model,
        "revision": snapshot_revision(source),
        "device": str(torch_device),
        "dtype": str(torch_dtype).removeprefix("torch."),
        "quant": quant,
    }
    return backend


def snapshot_revision(directory: Path) -> str | None:
    """The commit of a hub snapshot (``.../snapshots/<commit>``); None for a local model folder."""
    from dsocr_cli import hub

    if directory.parent.name == "snapshots" and hub.GIT_SHA1.fullmatch(directory.name):
        return directory.name
    return None
