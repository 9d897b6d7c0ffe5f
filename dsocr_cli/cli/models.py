"""``dsocr download``, ``dsocr models`` and ``dsocr models rm``: the model cache from the command line.

Importing this module must stay cheap (``dsocr --help`` imports it to list the commands): the hub client,
rich's tables and dsocr's quantization support are imported by the commands that use them.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections import defaultdict
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from dsocr_cli.cli.options import (
    JsonOpt,
    ModelArg,
    OfflineOpt,
    QuietOpt,
    RevisionOpt,
    YesOpt,
)
from dsocr_cli.defaults import DEFAULT_MODEL
from dsocr_cli.errors import UsageError
from dsocr_cli.messages import clean

DOWNLOAD_EXAMPLES = """Examples:

  dsocr download

  dsocr download deepseek-ai/DeepSeek-OCR --revision <commit>

  dsocr download --quant nf4

  HF_HUB_CACHE=/data/hf-cache dsocr download

Prints the model directory on stdout. Run it again after an interruption: the download continues where it
stopped. HF_TOKEN authenticates for gated or private repos; HF_ENDPOINT selects a mirror.
"""

MODELS_EXAMPLES = """Examples:

  dsocr models

  dsocr models --json | jq -r '.[].repo'

  dsocr models rm deepseek-ai/DeepSeek-OCR@<commit> --yes
"""

models_app = typer.Typer(
    help="Models in the Hugging Face cache that dsocr can run.",
    epilog=MODELS_EXAMPLES,
    invoke_without_command=True,
    rich_markup_mode=None,
)


class PreparedQuant(str, Enum):
    """``download --quant``: the same names as ``convert --quant``, so one ``quant`` setting in the config
    file suits both. ``none`` builds nothing; ``auto`` builds what ``convert --quant auto`` runs here."""

    auto = "auto"
    none = "none"
    nf4 = "nf4"
    int8 = "int8"


def download(
    model: ModelArg = DEFAULT_MODEL,
    revision: RevisionOpt = None,
    quant: Annotated[
        PreparedQuant | None,
        typer.Option(
            "--quant",
            help="Also build the quantized weights `convert --quant` loads (one-time, cached); "
            "auto = what convert's auto picks on this machine, none = nothing.",
        ),
    ] = None,
    offline: OfflineOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Download a model into the Hugging Face cache: config, weights and tokenizer only."""
    from dsocr_cli import hub
    from dsocr_cli.progress import DownloadBar, Reporter

    reporter = Reporter(quiet=quiet)
    snapshot = hub.download(
        model, revision=revision, offline=offline, progress=DownloadBar(f"downloading {model}", quiet=quiet)
    )
    if snapshot.note:
        reporter.warn(snapshot.note)
    typer.echo(str(snapshot.path))
    done = f"{hub.human_size(snapshot.fetched)} downloaded" if snapshot.fetched else "already in the cache"
    kind = quant.value if quant is not None else "none"
    if kind == "auto":
        from dsocr_cli.devices import resolve_device
        from dsocr_cli.quant import resolve_quant

        kind = resolve_quant("auto", resolve_device("auto"), snapshot.path)
    if kind != "none":
        from dsocr_cli.engine.factory import quiet_transformers
        from dsocr_cli.quant import prepare_quantized

        quiet_transformers()
        entry = prepare_quantized(snapshot.path, kind, notify=reporter.info)
        done += f"; {kind} weights in {entry}"
    reporter.finish(f"{model}: {done} ({snapshot.path})", failed=False)


def quantized_variants() -> dict[tuple[str, str], list[tuple[str, Path]]]:
    """(repo, commit) -> the quantized weights dsocr built from that snapshot: (kind, cache entry)."""
    from dsocr_cli.quant import quantized_entries

    variants: dict[tuple[str, str], list[tuple[str, Path]]] = defaultdict(list)
    for entry, manifest in quantized_entries():
        source = manifest.get("source", {})
        if "repo" in source and "revision" in source:
            variants[(source["repo"], source["revision"])].append((manifest["quant"], entry))
    return variants


@models_app.callback()
def models(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List cached models dsocr can run: repo, revisions, size on disk, quantized variants, interrupted downloads."""
    if ctx.invoked_subcommand is not None:
        return
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from dsocr_cli import hub
    from dsocr_cli.cli.output import table_console

    found = hub.cached_models()
    variants = quantized_variants()
    if as_json:
        listing = []
        for model in found:
            data = model.to_json()
            for revision in data["revisions"]:
                revision["quantized"] = sorted(kind for kind, _ in variants.get((model.repo, revision["commit"]), []))
            listing.append(data)
        typer.echo(json.dumps(listing, indent=2))
        return
    if not found:
        Console(stderr=True).print(
            clean(f"no models in the cache ({hub.hub_cache()}); `dsocr download` fetches {DEFAULT_MODEL}"),
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("MODEL", "FAMILY", "REVISION", "COMMIT"):
        table.add_column(column, no_wrap=True)
    table.add_column("SIZE", justify="right", no_wrap=True)
    table.add_column("QUANTIZED", no_wrap=True)
    for model in found:
        for revision in model.revisions:
            kinds = ", ".join(sorted(kind for kind, _ in variants.get((model.repo, revision.commit), []))) or "-"
            refs = ", ".join(revision.refs) or "-"
            table.add_row(model.repo, revision.family, refs, revision.commit[:12], hub.human_size(revision.size), kinds)
        if model.partial:
            table.add_row(model.repo, "-", "(interrupted download)", "-", hub.human_size(model.partial), "-")
    table_console().print(table)


@models_app.command("rm")
def remove(
    model: Annotated[str, typer.Argument(help="Repo id, or repo@revision (a branch, tag or commit prefix).")],
    yes: YesOpt = False,
) -> None:
    """Delete a cached model, with its quantized variants: every revision, or only the one @revision names."""
    from rich.console import Console

    from dsocr_cli import hub

    removal = hub.plan_removal(model)
    variants = quantized_variants()
    entries = [entry for commit in removal.commits for _, entry in variants.get((removal.repo, commit), [])]
    console = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)
    summary = f"{removal.description}, {hub.human_size(removal.size)}"
    if entries:
        summary += f", and {len(entries)} quantized variant(s)"
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError(f"not deleting {summary} without confirmation; pass --yes")
        if not typer.confirm(f"delete {summary}?", err=True):
            console.print("nothing deleted")
            return
    removal.execute()
    for entry in entries:
        shutil.rmtree(entry, ignore_errors=True)
    console.print(clean(f"deleted {summary}"))
