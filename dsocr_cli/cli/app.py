"""The ``dsocr`` command: parses arguments, calls the library, maps errors to exit codes."""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
import warnings
from typing import Annotated, Any

import typer
from rich.console import Console

from dsocr_cli import __version__, defaults
from dsocr_cli.cli import compress as compress_cli
from dsocr_cli.cli import doctor as doctor_cli
from dsocr_cli.cli import models as models_cli
from dsocr_cli.cli import serve as serve_cli
from dsocr_cli.cli.options import (
    DEFAULT_MODE,
    DEFAULT_TEXT_LAYER,
    ApiKeyOpt,
    CompileOpt,
    ConcurrencyOpt,
    DeviceOpt,
    DtypeOpt,
    ModelOpt,
    ModeOpt,
    OfflineOpt,
    OutputOpt,
    ProgressMode,
    PromptOpt,
    QuantName,
    QuantOpt,
    QuietOpt,
    ServerKind,
    ServerKindOpt,
    ServerOpt,
    TableStyle,
    TextLayerName,
    VerboseOpt,
    complete_formats,
    parse_formats,
)
from dsocr_cli.config import CONFIGURED_COMMANDS, ConfigFile, config_path, load_config
from dsocr_cli.errors import EXIT_CODE_MEANINGS, DsocrError, ExitCode, Stopped, UsageError, stdout_error
from dsocr_cli.messages import clean
from dsocr_cli.models.registry import guard_help

# Start-up cost is part of the interface: --help, --version, shell completion and `config path` import
# nothing beyond typer and rich (no torch, transformers or hub client); each command imports what it uses.
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}
"""``-h`` is ``--help`` for every command (Click hands the setting down to subcommands)."""

app = typer.Typer(
    name="dsocr",
    help="Convert PDFs and images to Markdown, HTML, text or JSON with DeepSeek-OCR.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings=CONTEXT_SETTINGS,
)
config_app = typer.Typer(help="Where dsocr reads its settings.", no_args_is_help=True)
app.add_typer(config_app, name="config")

CONVERT_EXAMPLES = (
    """Examples:

  dsocr convert paper.pdf > paper.md

  dsocr convert scans/ -o out/ --format json

  dsocr convert scans/ -o out/ --format md,json,pdf --text-layer use

  curl -s https://example.org/a.pdf | dsocr convert - --pages 1-3

Exit codes: """
    + "; ".join(f"{int(code)} {meaning}" for code, meaning in EXIT_CODE_MEANINGS.items())
    + ".\n"
)


@app.command(epilog=CONVERT_EXAMPLES)
def convert(
    inputs: Annotated[list[str], typer.Argument(help="PDF or image files, directories, or - for stdin.")],
    model: ModelOpt = defaults.DEFAULT_MODEL,
    mode: ModeOpt = DEFAULT_MODE,
    prompt: PromptOpt = defaults.PROMPT,
    output_format: Annotated[
        list[str],
        typer.Option(
            "--format",
            "-f",
            envvar="DSOCR_FORMAT",
            metavar="FORMAT[,FORMAT...]",
            autocompletion=complete_formats,
            help="Output format: markdown (md), html, text (txt), json, raw, pdf (searchable), hocr; several "
            "comma-separated (md,json,pdf) or repeated (-f md -f json): one model pass, one output each.",
        ),
    ] = ["markdown"],  # noqa: B006 (Typer reads the default; nothing mutates it)
    output: OutputOpt = None,
    tables: Annotated[
        TableStyle, typer.Option("--tables", help="Markdown tables where lossless, or keep the model's HTML.")
    ] = TableStyle.markdown,
    page_separator: Annotated[
        str, typer.Option("--page-separator", help="Put before each page in Markdown; {number} = page number.")
    ] = defaults.PAGE_SEPARATOR,
    pages: Annotated[str | None, typer.Option("--pages", help="Pages to convert, 1-based: 1-3,7,10-")] = None,
    dpi: Annotated[int, typer.Option("--dpi", min=36, max=600, help="PDF rendering resolution.")] = defaults.DPI,
    password: Annotated[str | None, typer.Option("--password", help="Password of encrypted PDFs.")] = None,
    glob: Annotated[str | None, typer.Option("--glob", help="Filter files found in directories, e.g. '*.pdf'.")] = None,
    skip_existing: Annotated[
        bool | None,
        typer.Option(
            "--skip-existing/--force",
            help="Skip inputs whose output is complete for the same input and settings (default on with -o DIR); "
            "--force redoes and overwrites everything.",
        ),
    ] = None,
    layout_pdf: Annotated[
        bool, typer.Option("--layout-pdf", help="Also write <output stem>_layouts.pdf with the layout boxes.")
    ] = False,
    text_layer: Annotated[
        TextLayerName,
        typer.Option(
            "--text-layer",
            envvar="DSOCR_TEXT_LAYER",
            help="PDF pages with their own text: ocr (OCR every page), skip (pages with any text are not OCRed and "
            "stay as they are in --format pdf), use (a usable text layer is the page's result; OCR the others).",
        ),
    ] = DEFAULT_TEXT_LAYER,
    stream: Annotated[
        bool, typer.Option("--stream", help="Print the model's text as it is generated (stdout; markdown, text, raw).")
    ] = False,
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", min=1, help="Generated-token limit per page.")
    ] = defaults.MAX_NEW_TOKENS,
    no_repeat_ngram: Annotated[
        int | None,
        typer.Option(
            "--no-repeat-ngram",
            min=0,
            show_default=False,
            help=f"Loop guard n-gram size; 0 disables. Default: the model's official value ({guard_help('ngram_size')}).",
        ),
    ] = None,
    ngram_window: Annotated[
        int | None,
        typer.Option(
            "--ngram-window",
            min=1,
            show_default=False,
            help=f"Loop guard window of recent generated tokens. Default: the model's official value "
            f"({guard_help('window')}).",
        ),
    ] = None,
    batch_size: Annotated[
        str,
        typer.Option(
            "--batch-size",
            envvar="DSOCR_BATCH_SIZE",
            help="Pages decoded together: a number, or auto (from free memory).",
        ),
    ] = "auto",
    max_input_size: Annotated[
        str,
        typer.Option(
            "--max-input-size",
            envvar="DSOCR_MAX_INPUT_SIZE",
            help="Largest stdin or pipe input read (e.g. 512M, 2G); files are not limited.",
        ),
    ] = "1G",
    progress: Annotated[
        ProgressMode,
        typer.Option(
            "--progress",
            envvar="DSOCR_PROGRESS",
            help="auto: a bar when stderr is a terminal; plain: one line per page (logs); none.",
        ),
    ] = ProgressMode.auto,
    provenance: Annotated[
        bool,
        typer.Option("--provenance/--no-provenance", help="Record dsocr version, model, device... in each output."),
    ] = True,
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard",
            envvar="DSOCR_SHARD",
            metavar="K/N",
            show_default=False,
            help="Convert only part K of N of the inputs (a stable split by name): N machines given the same "
            "inputs, with K = 1..N, convert each input once in all.",
        ),
    ] = None,
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
    concurrency: ConcurrencyOpt = None,
    server_kind: ServerKindOpt = ServerKind.auto,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    quant: QuantOpt = QuantName.auto,
    compile_steps: CompileOpt = False,
    offline: OfflineOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Convert documents and images with DeepSeek-OCR.

    -o: none or - = stdout (one input, one text format); NAME ending in the format's extension (.md, .html,
    .txt, .json, _det.mmd, .pdf, .hocr) = that file (one input, one format); anything else = a folder, with the
    inputs' paths below their directory arguments mirrored and same-named inputs told apart (x.pdf.md, x.png.md).
    """
    # Imported here, not at the top, so that --help and shell completion start fast.
    from dsocr_cli.convert import ConvertJob, run
    from dsocr_cli.engine.backend import ConvertOptions, parse_batch_size
    from dsocr_cli.engine.remote import parse_servers
    from dsocr_cli.inputs import close_sources, discover, parse_size
    from dsocr_cli.inputs.pages import parse_page_ranges
    from dsocr_cli.inputs.shard import check_shardable, parse_shard
    from dsocr_cli.models.registry import resolve_prompt
    from dsocr_cli.outputs import is_own_output, parse_output
    from dsocr_cli.progress import Reporter
    from dsocr_cli.writers import FORMATS
    from dsocr_cli.writers.markdown import check_page_separator

    resolve_prompt(prompt)
    try:
        check_page_separator(page_separator)
    except ValueError as exc:
        raise UsageError(f"--page-separator {page_separator!r}: {exc}") from None
    format_text = ",".join(output_format)
    formats = parse_formats(format_text)
    whole = [name for name in formats if name in ("json", "html", "hocr", "pdf")]
    if stream and whole:
        raise UsageError(f"--stream prints the model's text as it comes; --format {whole[0]} needs whole pages")
    selection = parse_page_ranges(pages) if pages else None
    batch = parse_batch_size(batch_size)
    suffixes = [FORMATS[name].suffix for name in formats]
    suffix = suffixes[0]
    input_limit = parse_size(max_input_size)
    servers = parse_servers(server or [])
    part = parse_shard(shard) if shard is not None else None
    check_shardable(inputs, part)
    sources = discover(inputs, glob, max_input_bytes=input_limit, read_timeout=stdin_timeout(), exclude=is_own_output)
    try:
        if len(formats) > 1 and output not in (None, "-") and any(output.lower().endswith(s) for s in suffixes):
            if not os.path.isdir(output):
                raise UsageError(f"-o {output}: names one file, but --format {format_text} writes one per format; give -o DIR")
        target = parse_output(output, suffix, len(sources), formats[0])
        if stream and not target.to_stdout:
            raise UsageError("--stream prints to stdout; it cannot be combined with -o")
        if stream and progress is ProgressMode.auto and sys.stdout.isatty():
            progress = ProgressMode.none  # the bar would be drawn over the streamed text
        reporter = Reporter(quiet=quiet, verbose=verbose, progress=progress.value)
        job = ConvertJob(
            sources=sources,
            options=ConvertOptions(
                mode=mode.value,
                prompt=prompt,
                max_new_tokens=max_tokens,
                ngram_size=no_repeat_ngram,
                ngram_window=ngram_window,
            ),
            output=target,
            format=formats[0],
            formats=formats,
            text_layer=text_layer.value,
            tables=tables.value,
            page_separator=page_separator,
            dpi=dpi,
            pages=selection,
            pages_spec=pages,
            password=password,
            skip_existing=(target.directory is not None) if skip_existing is None else skip_existing,
            layout_pdf=layout_pdf,
            stream=stream,
            model=model,
            provenance=provenance,
            shard=part,
        )

        def backend_factory():
            if servers:  # no local model: pages go to the servers (engine.remote)
                from dsocr_cli.engine.remote import RemoteBackend

                return RemoteBackend(servers, api_key, concurrency, server_kind.value, reporter, model=model)
            from dsocr_cli.engine.factory import local_backend

            return local_backend(
                model,
                device=device,
                dtype=dtype,
                quant=quant.value,
                offline=offline,
                reporter=reporter,
                batch_size=batch,
                compile_steps=compile_steps,
            )

        summary = run(job, backend_factory, reporter)
    finally:
        close_sources(sources)  # the temporary copies of stdin and pipes
    code = summary.exit_code()
    reporter.finish(summary.line(), failed=code != ExitCode.OK)
    raise typer.Exit(int(code))


def stdin_timeout() -> float | None:
    """``DSOCR_STDIN_TIMEOUT``: seconds a pipe may stay silent before its first byte (0 or ``none``: wait forever)."""
    text = os.environ.get("DSOCR_STDIN_TIMEOUT", "").strip()
    if not text:
        return defaults.STDIN_TIMEOUT_SECONDS
    if text.lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"DSOCR_STDIN_TIMEOUT={text!r}: expected seconds, e.g. 30") from None
    return value if value > 0 else None


app.command(epilog=models_cli.DOWNLOAD_EXAMPLES)(models_cli.download)
app.add_typer(models_cli.models_app, name="models")
app.command(epilog=doctor_cli.DOCTOR_EXAMPLES)(doctor_cli.doctor)
app.command(epilog=serve_cli.SERVE_EXAMPLES)(serve_cli.serve)
app.command(epilog=compress_cli.COMPRESS_EXAMPLES)(compress_cli.compress)


@config_app.command("path")
def config_path_command() -> None:
    """Print the config file's path (TOML; keys are option names, e.g. mode = "base")."""
    typer.echo(str(config_path()))


@app.command()
def version() -> None:
    """Print dsocr's version."""
    typer.echo(f"dsocr {__version__}")


LIBRARY_COMMANDS = frozenset({"convert", "download", "models", "doctor"})
"""The commands that reach huggingface_hub, torch or transformers, whose chatter ``quiet_libraries`` stops."""


def show_version(value: bool) -> None:
    if value:
        typer.echo(f"dsocr {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    show: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=show_version, help="Print dsocr's version and exit."),
    ] = False,
) -> None:
    """Runs before every command (not for --help, --version or completion): reads the config file for
    the commands that take settings and quiets the libraries of those that use them."""
    command = ctx.invoked_subcommand
    if command in LIBRARY_COMMANDS:
        quiet_libraries()
    if command in CONFIGURED_COMMANDS:
        commands = {name: ctx.command.get_command(ctx, name) for name in CONFIGURED_COMMANDS}
        settings = load_config(commands)
        ctx.obj = settings
        current = ctx.default_map or {}
        ctx.default_map = {
            **current,
            **{name: {**current.get(name, {}), **settings.defaults_for(cmd)} for name, cmd in commands.items()},
        }


def flag_defaults(command: Any) -> dict[str, Any]:
    """A ``default_map`` giving ``--help`` and Typer's completion flags the default False, for ``command`` and
    every subcommand.

    Typer declares these flags with the default None, and coerces any non-bool value through pydantic,
    whose import alone costs ~0.15 s, a third of what ``dsocr version`` or ``dsocr config path`` may take;
    a bool default skips that (``typer.core._TyperParameter.process_value``). Nothing else changes: a
    False flag does nothing, as an absent one.
    """
    defaults: dict[str, Any] = {"help": False}
    for param in command.params:
        if getattr(param, "is_flag", False) and param.default is None and not param.expose_value:
            defaults[param.name] = False
    for name, sub in getattr(command, "commands", {}).items():
        defaults[name] = flag_defaults(sub)
    return defaults


def quiet_libraries() -> None:
    """Keep library chatter off stderr: huggingface_hub's notices and Python warnings from any library.

    Cheap (the hub client is imported by every command that calls this anyway). transformers is quieted
    where models are loaded (``engine.factory.quiet_transformers``) and bitsandbytes where it is imported
    (``quant.bitsandbytes_notices``), so that commands which never load a model never import them.
    """
    from huggingface_hub.utils import logging as hub_logging

    hub_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


STOP_SIGNALS = {
    signal.SIGTERM: (ExitCode.TERMINATED, "terminated"),
    signal.SIGHUP: (ExitCode.HANGUP, "hung up"),
}
"""Signals that stop a run the way Ctrl-C does, with their exit code and the line said on stderr."""


def stop_on_signal(signum: int, frame: object) -> None:
    """Turn SIGTERM/SIGHUP into ``Stopped`` in the main thread. Further stop signals are ignored from
    then on, so that a second one cannot cut the clean-up short (removing temporary files)."""
    for other in STOP_SIGNALS:
        signal.signal(other, signal.SIG_IGN)
    code, message = STOP_SIGNALS[signal.Signals(signum)]
    raise Stopped(code, message)


def install_signal_handlers() -> dict[int, object]:
    """SIGPIPE back to the default action (a closed pipe ends dsocr silently, as it does `cat`), and
    SIGTERM/SIGHUP handled like Ctrl-C. Returns the previous handlers of all three (main restores them,
    so an in-process caller keeps its own). Outside the main thread nothing is installed."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {signal.SIGPIPE: signal.getsignal(signal.SIGPIPE)}
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    for signum in STOP_SIGNALS:
        previous[signum] = signal.getsignal(signum)
        signal.signal(signum, stop_on_signal)
    return previous


def say(console: Console, message: str) -> None:
    """One line on stderr, through ``messages.clean`` (one line, no credentials)."""
    console.print(clean(message), highlight=False, soft_wrap=True, markup=False)


class StdoutError(OSError):
    """Writing to stdout failed; raised by ``GuardedStdout`` in place of the OSError, so main can tell it
    from any other OSError (code that catches OSError around its writes still catches it)."""


class GuardedStdout:
    """``sys.stdout`` while ``main`` runs: the same stream, except that a write or flush that fails raises
    ``StdoutError``. Help, version and listings printed by Click or rich go through it as much as results."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def _guard(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self.stream, method)(*args)
        except StdoutError:
            raise
        except OSError as exc:
            raise StdoutError(exc.errno, exc.strerror or str(exc)) from exc

    def write(self, data: Any) -> Any:
        return self._guard("write", data)

    def writelines(self, lines: Any) -> Any:
        return self._guard("writelines", lines)

    def flush(self) -> Any:
        return self._guard("flush")

    @property
    def buffer(self) -> GuardedStdout:
        return GuardedStdout(self.stream.buffer)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def stdout_failure() -> OSError | None:
    """The error that writing out what stdout still buffers raises, if any."""
    try:
        sys.stdout.flush()
    except OSError as exc:
        return exc
    except (AttributeError, ValueError):  # closed, or replaced by the command itself
        return None
    return None


def usage_message(exc: typer.TyperException) -> str:
    """Click's message for a usage error, except that a bad value from the config file is blamed on the file
    (Click names the option's environment variable whatever the value's source)."""
    ctx, param = getattr(exc, "ctx", None), getattr(exc, "param", None)
    if ctx is not None and param is not None and param.name:
        source = ctx.get_parameter_source(param.name)
        settings = ctx.find_object(ConfigFile)
        if source is not None and source.name == "DEFAULT_MAP" and settings is not None:
            return str(settings.value_error(ctx.command, param.name, getattr(exc, "message", str(exc))))
    return exc.format_message() if hasattr(exc, "format_message") else str(exc)


def run_app(argv: list[str] | None, console: Console) -> int:
    """The app's outcome as an exit code; every error is said as one line here."""
    try:
        command = typer.main.get_command(app)
        code = command(args=argv, prog_name="dsocr", standalone_mode=False, default_map=flag_defaults(command))
    except typer.Exit as done:
        code = done.exit_code
    except Stopped as stop:
        say(console, stop.message)
        return stop.exit_code
    except typer.TyperException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `dsocr` alone: the help, on stderr, as Click does
            typer.echo(exc.format_message(), err=True)
        else:
            say(console, f"error: {usage_message(exc)}")
        return ExitCode.USAGE
    except (KeyboardInterrupt, typer.Abort):
        code = ExitCode.INTERRUPTED
    except DsocrError as exc:
        say(console, f"error: {exc}")
        return exc.exit_code
    except StdoutError as exc:
        say(console, f"error: {stdout_error(exc)}")
        return ExitCode.OUTPUT
    except Exception as exc:  # a bug: still one line and a documented code, the traceback on request
        if os.environ.get("DSOCR_TRACEBACK"):
            traceback.print_exc()
        say(console, f"error: internal error: {type(exc).__name__}: {exc} (DSOCR_TRACEBACK=1 shows where)")
        return ExitCode.INTERNAL
    if code == ExitCode.INTERRUPTED:
        # Typer turns Ctrl-C inside a command into a bare exit code 130; say why the run stopped.
        say(console, "interrupted")
    return code if isinstance(code, int) else ExitCode.OK


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app and turn every outcome into a documented exit code.

    Rules: every message is one line on stderr (``say``); SIGTERM and SIGHUP stop a run as Ctrl-C does
    (finished outputs kept, temporary files removed) with exit 143 / 129; stdout is flushed here, and a
    stdout that cannot take the output (a full disk, ``> /dev/full``) is one error line and exit 5.
    """
    console = Console(stderr=True)
    previous = install_signal_handlers()
    stdout = sys.stdout
    sys.stdout = GuardedStdout(stdout)
    try:
        try:
            code = run_app(argv, console)
            failure = stdout_failure()
        except Stopped as stop:  # the signal came while an error was being said or stdout flushed
            say(console, stop.message)
            return stop.exit_code
        if failure is not None:
            if code != ExitCode.OUTPUT:  # else an output error is said already: one line per run
                say(console, f"error: {stdout_error(failure)}")
            return ExitCode.OUTPUT
        return code
    finally:
        if isinstance(sys.stdout, GuardedStdout):
            sys.stdout = stdout
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def silence_stdout() -> None:
    """Point file descriptor 1 at /dev/null: whatever stdout still buffers after ``main`` said its error is
    dropped by Python's final flush instead of ending the process with a traceback and exit 120."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    else:
        return
    try:
        null = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    try:
        os.dup2(null, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    finally:
        os.close(null)


def entry() -> None:
    """The ``dsocr`` console script."""
    code = main()
    silence_stdout()
    sys.exit(code)
