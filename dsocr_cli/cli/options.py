"""Command-line options declared once, reused by every command that takes them."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from dsocr_cli import defaults
from dsocr_cli.errors import UsageError
from dsocr_cli.models import registry

ModeName = Enum("ModeName", {name: name for name in registry.mode_names()}, type=str)
"""``--mode`` choices: every mode of every model family (``dsocr_cli.models.registry``); pure-Python tables."""

DEFAULT_MODE = ModeName(defaults.MODE)
"""``--mode`` when it is not given (``dsocr_cli.defaults.MODE``)."""


class FormatName(str, Enum):
    markdown = "markdown"
    html = "html"
    text = "text"
    json = "json"
    raw = "raw"
    pdf = "pdf"
    hocr = "hocr"


FORMAT_ALIASES = {"md": "markdown", "txt": "text"}
"""Short names ``--format`` also takes (``--format md,json``)."""


def parse_formats(text: str) -> tuple[str, ...]:
    """``--format``: one format or several, comma-separated (``md,json,pdf``), each once; a UsageError naming
    the valid ones for anything else."""
    names: list[str] = []
    for part in text.split(","):
        word = part.strip().lower()
        name = FORMAT_ALIASES.get(word, word)
        if name not in FormatName.__members__:
            valid = ", ".join([*FormatName.__members__, *FORMAT_ALIASES])
            raise UsageError(f"--format {text}: unknown format {part.strip()!r} (valid: {valid}; several: md,json,pdf)")
        if name in names:
            raise UsageError(f"--format {text}: {name} is named twice")
        names.append(name)
    return tuple(names)


def complete_formats(incomplete: str) -> list[str]:
    """Shell completion for ``--format``: the formats, also after a comma (``md,j`` -> ``md,json``)."""
    head, _, last = incomplete.rpartition(",")
    prefix = head + "," if head else ""
    taken = set(head.split(",")) if head else set()
    return [prefix + name for name in FormatName.__members__ if name.startswith(last) and name not in taken]


class TextLayerName(str, Enum):
    """``--text-layer``: the rules are ``dsocr_cli.text_layer``'s."""

    ocr = "ocr"
    skip = "skip"
    use = "use"


DEFAULT_TEXT_LAYER = TextLayerName(defaults.TEXT_LAYER)
"""``--text-layer`` when it is not given (``dsocr_cli.defaults.TEXT_LAYER``)."""


class TableStyle(str, Enum):
    markdown = "markdown"
    html = "html"


class ProgressMode(str, Enum):
    auto = "auto"
    bar = "bar"
    plain = "plain"
    none = "none"


class QuantName(str, Enum):
    auto = "auto"
    none = "none"
    nf4 = "nf4"
    int8 = "int8"


ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        envvar="DSOCR_MODEL",
        help="Hub repo id (owner/name[@revision]), a short name (v1 or ocr, v2 or ocr2), or a local model directory.",
        show_default=True,
    ),
]
DeviceOpt = Annotated[
    str, typer.Option("--device", envvar="DSOCR_DEVICE", help="auto, cpu, cuda, cuda:N or mps.")
]
DtypeOpt = Annotated[
    str, typer.Option("--dtype", envvar="DSOCR_DTYPE", help="auto, float32, bfloat16 or float16.")
]
QuantOpt = Annotated[
    QuantName, typer.Option("--quant", envvar="DSOCR_QUANT", help="bitsandbytes quantization; auto = none where the weights fit in memory (the fastest), else nf4 on GPUs and int8, or nf4, on CPUs.")
]
CompileOpt = Annotated[
    bool,
    typer.Option(
        "--compile/--no-compile",
        envvar="DSOCR_COMPILE",
        help="Compile decode steps with torch.compile (CUDA graphs on GPUs) over a static cache. Opt-in: tested "
        "equal to the default path, not yet measured faster; each batch size compiles once (tens of seconds).",
    ),
]
OfflineOpt = Annotated[
    bool, typer.Option("--offline", help="Never touch the network; use cached models only (as HF_HUB_OFFLINE=1).")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress, no warnings; errors only.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Per-page details on stderr.")]
ModeOpt = Annotated[
    ModeName,
    typer.Option(
        "--mode",
        envvar="DSOCR_MODE",
        help=registry.mode_help(),
    ),
]
PromptOpt = Annotated[
    str,
    typer.Option("--prompt", "-p", envvar="DSOCR_PROMPT", help=f"Task: {', '.join(registry.prompt_choices())}."),
]
OutputOpt = Annotated[
    str | None,
    typer.Option(
        "--output",
        "-o",
        help="Output directory (one file per input), a file (single input), or - for stdout. Default: stdout.",
    ),
]
ModelArg = Annotated[
    str,
    typer.Argument(
        envvar="DSOCR_MODEL",
        help="Hub repo id (owner/name[@revision]), a short name (v1 or ocr, v2 or ocr2), or a local model directory.",
        show_default=True,
    ),
]
RevisionOpt = Annotated[
    str | None,
    typer.Option("--revision", help="Branch, tag or commit of the hub repo (the same as MODEL@REVISION)."),
]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout instead of a table.")]


class ServerKind(str, Enum):
    """``--server-kind``: ``auto`` reads ``owned_by`` from the server's ``/v1/models``
    (``dsocr_cli.engine.remote.SERVER_KINDS`` lists the others)."""

    auto = "auto"
    vllm = "vllm"
    sglang = "sglang"
    dsocr = "dsocr"


ServerOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--server",
        envvar="DSOCR_SERVER",
        metavar="URL",
        show_default=False,
        help="Convert on this OpenAI-compatible server (vLLM, SGLang or dsocr serve; repeat, or separate with "
        "commas, for several) instead of a local model; --device, --dtype, --quant, --batch-size, --compile and --offline "
        "then do not apply.",
    ),
]
ApiKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="DSOCR_API_KEY",
        metavar="KEY",
        show_default=False,
        help="Key for --server, sent as Authorization: Bearer (never printed).",
    ),
]
ConcurrencyOpt = Annotated[
    int | None,
    typer.Option(
        "--concurrency",
        metavar="N",
        min=1,
        show_default=False,
        help="Pages in flight per --server. Default: what the server reports, else 16.",
    ),
]
ServerKindOpt = Annotated[
    ServerKind,
    typer.Option(
        "--server-kind",
        help="What --server runs: auto (ask it), vllm, sglang (both fix the resolution to gundam) or dsocr.",
    ),
]
