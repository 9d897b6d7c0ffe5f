"""The ``dsocr`` command: parses arguments, calls the library, maps errors to exit codes."""

from __future__ import annotations

import os
import signal
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from dsocr_cli import __version__
from dsocr_cli.cli import doctor as doctor_cli
from dsocr_cli.cli import models as models_cli
from dsocr_cli.cli.options import (
    DeviceOpt,
    DtypeOpt,
    FormatName,
    ModelOpt,
    ModeName,
    ModeOpt,
    OfflineOpt,
    OutputOpt,
    PromptOpt,
    QuantName,
    QuantOpt,
    QuietOpt,
    TableStyle,
    VerboseOpt,
)
from dsocr_cli.config import config_path, load_config
from dsocr_cli.errors import EXIT_CODE_MEANINGS, DsocrError, ExitCode, UsageError
from dsocr_cli.hub import DEFAULT_MODEL
from dsocr_cli.models.v1.prompts import resolve_prompt
from dsocr_cli.progress import Reporter

if TYPE_CHECKING:
    from dsocr_cli.convert import OutputTarget

app = typer.Typer(
    name="dsocr",
    help="Convert PDFs and images to Markdown, HTML, text or JSON with DeepSeek-OCR.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
config_app = typer.Typer(help="Where dsocr reads its settings.", no_args_is_help=True)
app.add_typer(config_app, name="config")

CONVERT_EXAMPLES = """Examples:

  dsocr convert paper.pdf > paper.md

  dsocr convert scans/ -o out/ --format json

  curl -s https://example.org/a.pdf | dsocr convert - --pages 1-3

Exit codes: """ + "; ".join(f"{int(code)} {meaning}" for code, meaning in EXIT_CODE_MEANINGS.items()) + ".\n"


def output_target(output: str | None, inputs: list[str], source_count: int) -> OutputTarget:
    """``-o`` semantics: none or ``-`` = stdout; an existing dir, a trailing slash or several inputs = directory."""
    from dsocr_cli.convert import OutputTarget
    from dsocr_cli.inputs.discover import STDIN

    if output is None or output == STDIN:
        if source_count > 1:
            raise UsageError(f"{source_count} inputs would be mixed on stdout; give -o DIR")
        return OutputTarget()
    path = Path(output)
    if path.is_dir() or output.endswith(os.sep) or source_count > 1 or any(Path(i).is_dir() for i in inputs):
        return OutputTarget(directory=path)
    return OutputTarget(file=path)


@app.command(epilog=CONVERT_EXAMPLES)
def convert(
    inputs: Annotated[list[str], typer.Argument(help="PDF or image files, directories, or - for stdin.")],
    model: ModelOpt = DEFAULT_MODEL,
    mode: ModeOpt = ModeName.gundam,
    prompt: PromptOpt = "markdown",
    output_format: Annotated[
        FormatName, typer.Option("--format", "-f", envvar="DSOCR_FORMAT", help="Output format.")
    ] = FormatName.markdown,
    output: OutputOpt = None,
    tables: Annotated[
        TableStyle, typer.Option("--tables", help="Markdown tables where lossless, or keep the model's HTML.")
    ] = TableStyle.markdown,
    page_separator: Annotated[
        str, typer.Option("--page-separator", help="Put before each page in Markdown; {number} = page number.")
    ] = "<!-- page {number} -->",
    pages: Annotated[str | None, typer.Option("--pages", help="Pages to convert, 1-based: 1-3,7,10-")] = None,
    dpi: Annotated[int, typer.Option("--dpi", min=36, max=600, help="PDF rendering resolution.")] = 144,
    password: Annotated[str | None, typer.Option("--password", help="Password of encrypted PDFs.")] = None,
    glob: Annotated[str | None, typer.Option("--glob", help="Filter files found in directories, e.g. '*.pdf'.")] = None,
    skip_existing: Annotated[
        bool | None,
        typer.Option("--skip-existing/--force", help="Skip inputs whose output exists (default on with -o DIR)."),
    ] = None,
    layout_pdf: Annotated[bool, typer.Option("--layout-pdf", help="Also write <stem>_layouts.pdf with boxes.")] = False,
    stream: Annotated[bool, typer.Option("--stream", help="Print tokens as they are generated (stdout only).")] = False,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, help="Generated-token limit per page.")] = 8192,
    no_repeat_ngram: Annotated[
        int, typer.Option("--no-repeat-ngram", min=0, help="Loop guard n-gram size; 0 disables.")
    ] = 20,
    ngram_window: Annotated[
        int, typer.Option("--ngram-window", min=1, help="Loop guard window of recent generated tokens.")
    ] = 50,
    batch_size: Annotated[
        str,
        typer.Option(
            "--batch-size", envvar="DSOCR_BATCH_SIZE", help="Pages decoded together: a number, or auto (from free memory)."
        ),
    ] = "auto",
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    quant: QuantOpt = QuantName.auto,
    offline: OfflineOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Convert documents and images with DeepSeek-OCR."""
    # Imported here, not at the top, so that --help and shell completion start fast.
    from dsocr_cli.convert import ConvertJob, run
    from dsocr_cli.engine.backend import ConvertOptions
    from dsocr_cli.engine.batched import parse_batch_size
    from dsocr_cli.inputs.discover import discover
    from dsocr_cli.inputs.pages import parse_page_ranges

    reporter = Reporter(quiet=quiet, verbose=verbose)
    resolve_prompt(prompt)
    selection = parse_page_ranges(pages) if pages else None
    sources = discover(inputs, glob)
    target = output_target(output, inputs, len(sources))
    if stream and not target.to_stdout:
        raise UsageError("--stream prints to stdout; it cannot be combined with -o")
    batch = parse_batch_size(batch_size)
    job = ConvertJob(
        sources=sources,
        options=ConvertOptions(
            mode=mode.value,
            prompt=prompt,
            max_new_tokens=max_tokens,
            ngram_size=no_repeat_ngram,
            ngram_window=max(ngram_window, no_repeat_ngram),
        ),
        output=target,
        format=output_format.value,
        tables=tables.value,
        page_separator=page_separator,
        dpi=dpi,
        pages=selection,
        password=password,
        skip_existing=(target.directory is not None) if skip_existing is None else skip_existing,
        layout_pdf=layout_pdf,
        stream=stream,
    )

    def backend_factory():
        from dsocr_cli.engine.factory import local_backend

        return local_backend(
            model, device=device, dtype=dtype, quant=quant.value, offline=offline, reporter=reporter, batch_size=batch
        )

    summary = run(job, backend_factory, reporter)
    code = summary.exit_code()
    reporter.finish(summary.line(), failed=code != ExitCode.OK)
    raise typer.Exit(int(code))


app.command(epilog=models_cli.DOWNLOAD_EXAMPLES)(models_cli.download)
app.add_typer(models_cli.models_app, name="models")
app.command(epilog=doctor_cli.DOCTOR_EXAMPLES)(doctor_cli.doctor)


@config_app.command("path")
def config_path_command() -> None:
    """Print the config file's path (TOML; keys are option names, e.g. mode = "base")."""
    typer.echo(str(config_path()))


@app.command()
def version() -> None:
    """Print dsocr's version."""
    typer.echo(f"dsocr {__version__}")


def quiet_libraries() -> None:
    """Keep library chatter off stderr: transformers' bars and warnings, huggingface_hub's and bitsandbytes' notices."""
    from huggingface_hub.utils import logging as hub_logging
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    hub_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


def command_defaults(defaults: dict) -> dict:
    """The config file's settings for every command that takes options (Click ignores keys a command lacks)."""
    return {name: defaults for name in ("convert", "download", "doctor")}


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app and turn every outcome into a documented exit code."""
    console = Console(stderr=True)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    quiet_libraries()
    try:
        defaults = load_config()
        code = app(args=argv, prog_name="dsocr", standalone_mode=False, default_map=command_defaults(defaults))
    except typer.Exit as done:
        return done.exit_code
    except typer.TyperException as exc:
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        console.print(f"error: {message}", highlight=False, soft_wrap=True, markup=False)
        return ExitCode.USAGE
    except (KeyboardInterrupt, typer.Abort):
        code = ExitCode.INTERRUPTED
    except DsocrError as exc:
        console.print(f"error: {exc}", highlight=False, soft_wrap=True, markup=False)
        return exc.exit_code
    if code == ExitCode.INTERRUPTED:
        # Typer turns Ctrl-C inside a command into a bare exit code 130; say why the run stopped.
        console.print("interrupted", highlight=False)
    return code if isinstance(code, int) else ExitCode.OK


def entry() -> None:
    sys.exit(main())
