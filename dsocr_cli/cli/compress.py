"""``dsocr compress``: the optical-compression lab (``dsocr_cli.compress``). Parses options, calls the library.

Only typer and the option tables are imported here; rendering, the tokenizer and the model stack are imported
when the command runs, so ``dsocr --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dsocr_cli import defaults
from dsocr_cli.cli.options import (
    ApiKeyOpt,
    DeviceOpt,
    DtypeOpt,
    OfflineOpt,
    QuantName,
    QuantOpt,
    QuietOpt,
    ServerKind,
    ServerKindOpt,
    ServerOpt,
    VerboseOpt,
)
from dsocr_cli.errors import UsageError
from dsocr_cli.models import registry

COMPRESS_EXAMPLES = """Examples:

  dsocr compress essay.txt                       # text vs vision tokens per page and mode

  dsocr compress essay.txt --decode -o lab/       # + precision, edit distance, lab/plot.png

  dsocr compress paper.pdf --from-pdf --decode --modes tiny,small --json - > fox.json

  dsocr compress notes.txt --decode --server http://gpu1:8000 --font cjk --page-size letter

Tables go to stderr (--quiet: none); --json/--csv FILE or - (stdout) for pipelines. Exit codes: 0 done, 1
usage error, 2 some inputs or decodes failed, 3 no input gave a page, 4 model/tokenizer problem, 5 output not
writable.
"""


def parse_modes(text: str | None) -> list[str] | None:
    """``--modes a,b``: names of any family's modes (the chosen family's are checked when it is known)."""
    if text is None:
        return None
    modes = [part.strip() for part in text.split(",") if part.strip()]
    known = registry.mode_names()
    unknown = [mode for mode in modes if mode not in known]
    if not modes or unknown:
        raise UsageError(f"--modes {text!r}: expected a comma-separated list of {', '.join(known)}")
    return modes


def compress(
    inputs: Annotated[list[str], typer.Argument(help="UTF-8 text files (PDFs with --from-pdf).", metavar="TEXTFILE")],
    font: Annotated[
        str,
        typer.Option(
            "--font",
            help="A built-in font (tiro = Times, helv, cour, their bold/italic forms, cjk) or a TrueType/OpenType "
            "file; characters it lacks fall back to cjk.",
        ),
    ] = defaults.COMPRESS_FONT,
    font_size: Annotated[float, typer.Option("--font-size", help="Font size in points.")] = defaults.COMPRESS_FONT_SIZE,
    page_size: Annotated[
        str, typer.Option("--page-size", help="A4, A5, letter, legal, or WxH in points (612x792), mm or in.")
    ] = defaults.COMPRESS_PAGE_SIZE,
    margin: Annotated[float, typer.Option("--margin", help="Page margin on every side, in points.")] = (
        defaults.COMPRESS_MARGIN
    ),
    keep_lines: Annotated[
        bool,
        typer.Option("--keep-lines", help="Start a new line at every input line break (default: reflow paragraphs)."),
    ] = False,
    dpi: Annotated[
        int, typer.Option("--dpi", min=36, max=600, help="Resolution of the page images the model gets.")
    ] = defaults.DPI,
    modes: Annotated[
        str | None,
        typer.Option(
            "--modes",
            metavar="MODE,...",
            show_default=False,
            help="Modes to measure, e.g. tiny,small,base,large,gundam. Default: every mode of the model's family.",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Folder for the page images (DIR/<input>/page-001.png), report.json, report.csv and plot.png.",
        ),
    ] = None,
    json_target: Annotated[
        str | None, typer.Option("--json", metavar="FILE|-", help="Write the report as JSON (- = stdout).")
    ] = None,
    csv_target: Annotated[
        str | None,
        typer.Option("--csv", metavar="FILE|-", help="Write one CSV row per page and mode (- = stdout)."),
    ] = None,
    plot_target: Annotated[
        Path | None, typer.Option("--plot", metavar="FILE", help="Write the precision plot (PNG); needs --decode.")
    ] = None,
    decode: Annotated[
        bool,
        typer.Option("--decode", help="Also read the pages back with the model (Free OCR prompt) and score them."),
    ] = False,
    from_pdf: Annotated[
        bool,
        typer.Option("--from-pdf", help="Inputs are born-digital PDFs: their pages and text layers are the pairs."),
    ] = False,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            envvar="DSOCR_MODEL",
            show_default=False,
            help="Hub repo id, short name (v1, v2) or local model directory: its family's modes and its tokenizer. "
            "Default: deepseek-ai/DeepSeek-OCR, or with --server the served family's repo.",
        ),
    ] = None,
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", min=1, help="Generated-token limit per page (--decode).")
    ] = defaults.MAX_NEW_TOKENS,
    batch_size: Annotated[
        str,
        typer.Option("--batch-size", envvar="DSOCR_BATCH_SIZE", help="Pages decoded together: a number, or auto."),
    ] = "auto",
    server: ServerOpt = None,
    api_key: ApiKeyOpt = None,
    server_kind: ServerKindOpt = ServerKind.auto,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    quant: QuantOpt = QuantName.auto,
    offline: OfflineOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Measure optical compression: render text into pages, count text and vision tokens per mode, and with
    --decode read the pages back and score them (Fox precision, edit distance) in a Fox-style table.
    """
    # Imported here, not at the top, so that --help starts fast.
    from dsocr_cli.cli.app import quiet_libraries
    from dsocr_cli.compress.render import Layout, parse_page_size
    from dsocr_cli.compress.run import CompressJob, run
    from dsocr_cli.engine.backend import parse_batch_size
    from dsocr_cli.engine.remote import parse_servers
    from dsocr_cli.progress import Reporter

    quiet_libraries()
    layout = Layout(
        page_size=parse_page_size(page_size),
        font=font,
        font_size=font_size,
        margin=margin,
        dpi=dpi,
        keep_lines=keep_lines,
    )
    requested = parse_modes(modes)
    batch = parse_batch_size(batch_size)
    servers = parse_servers(server or [])
    if servers and not decode:
        raise UsageError("--server is where pages are decoded: it needs --decode")
    reporter = Reporter(quiet=quiet, verbose=verbose, progress="none")
    job = CompressJob(
        inputs=inputs,
        layout=layout,
        modes=requested,
        from_pdf=from_pdf,
        output=output,
        json_target=json_target,
        csv_target=csv_target,
        plot_target=str(plot_target) if plot_target is not None else None,
        decode=decode,
        model=model,
        max_new_tokens=max_tokens,
        offline=offline,
        remote=bool(servers),
    )

    def backend_factory():
        if servers:
            from dsocr_cli.engine.remote import RemoteBackend

            return RemoteBackend(servers, api_key, None, server_kind.value, reporter, model=model)
        from dsocr_cli.engine.factory import local_backend

        return local_backend(
            model or defaults.DEFAULT_MODEL,
            device=device,
            dtype=dtype,
            quant=quant.value,
            offline=offline,
            reporter=reporter,
            batch_size=batch,
        )

    outcome = run(job, reporter, backend_factory if decode else None)
    reporter.finish(outcome.summary, failed=outcome.exit_code != 0)
    raise typer.Exit(int(outcome.exit_code))
