"""Run ``dsocr serve``: a socket bound before the model loads, uvicorn serving the app, a graceful stop.

Order (``serve``): bind HOST:PORT (a port in use fails at once, before the model loads; port 0 picks a free
one), load the model (``engine.factory.local_backend``: the same loading as ``dsocr convert``), size the batch
(``--batch-size``, else ``auto_batch_size`` for the family's default mode at the full token limit), build the
app and start uvicorn on the socket. Once it listens, ``on_ready`` gets the URL with the actual port.

Stopping: SIGTERM or SIGINT is uvicorn's graceful shutdown (stop accepting, let every in-flight request,
streams included, finish), then the scheduler drains and ``serve`` returns (the command exits 0). A second
SIGINT cuts the wait short (uvicorn's force exit); the pages still running are then dropped. uvicorn re-raises
the signal it handled once it is done; ``graceful_signals`` makes that a no-op, so the exit status stays 0.
"""

from __future__ import annotations

import copy
import ipaddress
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn

from dsocr_cli.engine.backend import ConvertOptions
from dsocr_cli.errors import UsageError
from dsocr_cli.inputs.images import MAX_PIXELS
from dsocr_cli.progress import Reporter
from dsocr_cli.server.app import DEFAULT_MAX_BODY_BYTES, ServerSettings, build_app

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


@dataclass(frozen=True)
class ServeOptions:
    """``dsocr serve``'s settings."""

    model: str
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    api_key: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    quant: str = "auto"
    offline: bool = False
    batch_size: int | None = None
    """None: ``auto_batch_size``."""
    compile_steps: bool = False
    """``--compile``: decode steps compiled over a static cache (``generation.compiled``)."""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_pixels: int = MAX_PIXELS
    verbose: bool = False


def url_of(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` (uvicorn listens on it); ``UsageError`` when that fails."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (OSError, UnicodeError) as exc:
        raise UsageError(f"--host {host!r}: {getattr(exc, 'strerror', None) or exc}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {url_of(host, port)}: {exc.strerror or exc}") from None
    return sock


class Server(uvicorn.Server):
    """uvicorn's server, telling ``on_ready`` once it listens."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None] | None = None) -> None:
        super().__init__(config)
        self.on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and not self.should_exit and self.on_ready is not None:
            self.on_ready()


def log_config() -> dict:
    """uvicorn's logging, its access log on stderr as well (stdout is for results only)."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    return config


@contextmanager
def graceful_signals() -> Iterator[None]:
    """SIGINT/SIGTERM ignored around uvicorn's run (which installs its own handlers over these and, when it is
    done, restores them and re-raises the signal it handled); the previous handlers come back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stops = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.getsignal(signum) for signum in stops}
    for signum in stops:
        signal.signal(signum, lambda signum, frame: None)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def serve(options: ServeOptions, reporter: Reporter, on_ready: Callable[[str], None]) -> None:
    """Serve until SIGTERM/SIGINT (module docstring); ``on_ready(url)`` once it listens."""
    from dsocr_cli.engine.batched import auto_batch_size
    from dsocr_cli.engine.factory import local_backend
    from dsocr_cli.engine.scheduler import Scheduler

    sock = listen_socket(options.host, options.port)
    url = url_of(options.host, sock.getsockname()[1])
    try:
        if options.api_key is None and not is_loopback(options.host):
            reporter.warn(f"serving on {options.host} without --api-key: anyone who can reach {url} can use it")
        backend = local_backend(
            options.model,
            device=options.device,
            dtype=options.dtype,
            quant=options.quant,
            offline=options.offline,
            reporter=reporter,
            batch_size=options.batch_size,
            compile_steps=options.compile_steps,
        )
        runner = backend.runner
        rows = options.batch_size or auto_batch_size(runner, ConvertOptions(mode=runner.family.default_mode))
        reporter.info(f"batch of {rows} rows ({'--batch-size' if options.batch_size else 'auto'})")
        scheduler = Scheduler(backend.engine, rows=rows)
        settings = ServerSettings(
            model=options.model,
            api_key=options.api_key,
            max_body_bytes=options.max_body_bytes,
            max_pixels=options.max_pixels,
        )
        app = build_app(runner, scheduler, settings)
        config = uvicorn.Config(
            app,
            log_config=log_config(),
            log_level="info" if options.verbose else "warning",
            access_log=options.verbose,
            lifespan="off",
            timeout_graceful_shutdown=None,
            server_header=False,
        )
        server = Server(config, on_ready=lambda: on_ready(url))
        try:
            with graceful_signals():
                server.run(sockets=[sock])
        finally:
            scheduler.close(drain=not server.force_exit)
    finally:
        sock.close()
