"""``dsocr serve``: an OpenAI-compatible server over dsocr's batched engine (``dsocr_cli.server``).

Only typer and the option tables are imported here: FastAPI, uvicorn and the model stack are imported when
the command runs, so ``dsocr --help`` and ``dsocr serve --help`` start at once.
"""

from __future__ import annotations

from typing import Annotated

import typer

from dsocr_cli import defaults
from dsocr_cli.cli.options import CompileOpt, DeviceOpt, DtypeOpt, ModelOpt, OfflineOpt, QuantName, QuantOpt

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_BODY = "50M"
DEFAULT_MAX_PIXELS = 100_000_000
"""dsocr's own input limit (``inputs.images.MAX_PIXELS``, 10,000 x 10,000 px; tests check they agree)."""

SERVE_EXAMPLES = """Examples:

  dsocr serve                  # DeepSeek-OCR v1 on 127.0.0.1:8000

  dsocr serve --model v2 --host 0.0.0.0 --api-key "$KEY"

  dsocr convert scans/ -o out/ --server http://gpu1:8000

Endpoints: POST /v1/chat/completions (one page image as a data: URL and the instruction; dsocr.mode picks
the resolution), GET /v1/models, GET /metrics (Prometheus), GET /health (needs no key). Requests from
every client are batched together on the model. SIGTERM or Ctrl-C stops accepting, lets the requests in
progress finish, then exits 0.
"""


def serve(
    model: ModelOpt = defaults.DEFAULT_MODEL,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on; 0.0.0.0 for every interface (then set --api-key).")
    ] = DEFAULT_HOST,
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="TCP port; 0 picks a free one (the ready line names it).")
    ] = DEFAULT_PORT,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="DSOCR_API_KEY",
            metavar="KEY",
            show_default=False,
            help="Require Authorization: Bearer KEY on every endpoint except /health (never printed).",
        ),
    ] = None,
    batch_size: Annotated[
        str,
        typer.Option(
            "--batch-size",
            envvar="DSOCR_BATCH_SIZE",
            help="Pages decoded together, across all clients: a number, or auto (from free memory).",
        ),
    ] = "auto",
    max_body_size: Annotated[
        str, typer.Option("--max-body-size", help="Largest request body (e.g. 20M); larger ones are refused (413).")
    ] = DEFAULT_MAX_BODY,
    max_pixels: Annotated[
        int, typer.Option("--max-pixels", min=1, help="Largest page image in pixels; larger ones are refused (400).")
    ] = DEFAULT_MAX_PIXELS,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    quant: QuantOpt = QuantName.auto,
    compile_steps: CompileOpt = False,
    offline: OfflineOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Errors only (not even the ready line).")] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Loading details and one access-log line per request on stderr.")
    ] = False,
) -> None:
    """Serve the model over an OpenAI-compatible HTTP API (vLLM's DeepSeek-OCR dialect), batching all clients' pages.

    One line on stderr when it is ready: "serving MODEL on http://HOST:PORT".
    """
    # Imported here, not at the top, so that --help starts without FastAPI, uvicorn and torch.
    from dsocr_cli.cli.app import quiet_libraries
    from dsocr_cli.engine.backend import parse_batch_size
    from dsocr_cli.errors import UsageError
    from dsocr_cli.inputs.sizes import parse_size
    from dsocr_cli.progress import Reporter

    if api_key is not None and not api_key.strip():
        raise UsageError("--api-key is empty")
    batch = parse_batch_size(batch_size)
    body_limit = parse_size(max_body_size, option="--max-body-size")
    quiet_libraries()
    from dsocr_cli.server.run import ServeOptions
    from dsocr_cli.server.run import serve as run_server

    reporter = Reporter(quiet=quiet, verbose=verbose)
    options = ServeOptions(
        model=model,
        host=host,
        port=port,
        api_key=api_key,
        device=device,
        dtype=dtype,
        quant=quant.value,
        offline=offline,
        batch_size=batch,
        compile_steps=compile_steps,
        max_body_bytes=body_limit,
        max_pixels=max_pixels,
        verbose=verbose and not quiet,
    )

    def ready(url: str) -> None:
        if not quiet:
            typer.echo(f"serving {model} on {url}", err=True)

    run_server(options, reporter, on_ready=ready)
