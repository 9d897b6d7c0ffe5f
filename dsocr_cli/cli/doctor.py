"""``dsocr doctor``: what this machine offers dsocr, and what stands in the way of a conversion."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import typer

from dsocr_cli import defaults
from dsocr_cli.cli.options import JsonOpt, ModelOpt
from dsocr_cli.errors import ExitCode

if TYPE_CHECKING:
    from rich.table import Table

    from dsocr_cli.doctor import Report

DOCTOR_EXAMPLES = """Examples:

  dsocr doctor

  dsocr doctor --json | jq .device

  dsocr doctor --model v2          # memory figures for DeepSeek-OCR-2

Exit codes: 0 a conversion can run here (warnings may suggest options); 4 it cannot (missing package,
not enough memory even with --quant nf4).
"""


def doctor(model: ModelOpt = defaults.DEFAULT_MODEL, as_json: JsonOpt = False) -> None:
    """Check packages, GPUs, memory, the model cache and HF settings; say what dsocr would use for --model."""
    # Imported here, not at the top, so that --help starts without the hub client and torch.
    from dsocr_cli.cli.output import table_console
    from dsocr_cli.doctor import examine

    report = examine(model)
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2))
    else:
        table_console().print(report_table(report))
    if not report.ok:
        raise typer.Exit(int(ExitCode.MODEL))


def report_table(report: Report) -> Table:
    """The report as one two-column table, one section per kind of check."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    from dsocr_cli.hub import human_size

    table = Table(box=box.SIMPLE_HEAD, show_header=False, pad_edge=False)
    table.add_column("check", style="bold", no_wrap=True)
    table.add_column("value")

    def section(title: str) -> None:
        table.add_row(f"[underline]{title}[/]", "")

    section("dsocr")
    table.add_row("version", report.dsocr)
    table.add_row("python", f"{report.python} ({report.platform})")
    for name, version in report.packages.items():
        table.add_row(name, version or "[red]not installed[/]")
    section("devices")
    table.add_row("CUDA", f"available (CUDA {report.cuda_version})" if report.cuda_available else "not available")
    for gpu in report.gpus:
        table.add_row(
            f"GPU {gpu.index}",
            escape(
                f"{gpu.name} (compute {gpu.capability}{', bf16' if gpu.bf16 else ''}): "
                f"{human_size(gpu.free_bytes)} free of {human_size(gpu.total_bytes)}"
            ),
        )
    if report.ram_total_bytes is not None:
        available = f"{human_size(report.ram_available_bytes)} available of " if report.ram_available_bytes else ""
        table.add_row("memory", f"{available}{human_size(report.ram_total_bytes)}")
    table.add_row("model", escape(f"{report.model} ({report.family})"))
    if report.device is not None and report.weights_bytes is not None:
        table.add_row("device", f"{report.device}, {report.dtype}, quant {report.quant or '?'} (what auto picks)")
        if report.dtype_reason:
            table.add_row("dtype", escape(report.dtype_reason))
        if report.quant_reason:
            table.add_row("quant", escape(report.quant_reason))
        table.add_row("weights", f"about {human_size(report.weights_bytes)} ({report.dtype})")
    section("models")
    table.add_row("cache", escape(f"{report.cache_dir} ({human_size(report.cache_free_bytes or 0)} free)"))
    for model in report.models:
        revisions = ", ".join(" ".join((*r.refs, r.commit[:12])) for r in model.revisions) or "interrupted download"
        table.add_row(escape(model.repo), escape(f"{revisions}: {human_size(model.size + model.partial)}"))
    section("environment")
    for name, value in report.environment.items():
        table.add_row(name, escape(value))
    section("problems")
    if not report.problems:
        table.add_row("none", "a conversion can run on this machine")
    for problem in report.problems:
        colour = "red" if problem.severity == "error" else "yellow"
        table.add_row(f"[{colour}]{problem.severity}[/]", escape(problem.message))
    return table
