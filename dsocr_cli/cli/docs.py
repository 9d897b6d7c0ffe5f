"""Generate ``man/dsocr.1`` and the shell completions from the Typer app, so the docs cannot drift from the code.

Run ``python -m dsocr_cli.cli.docs [DIR]`` (DIR: the repository root, default the current directory) after
changing a command or an option; ``tests/test_docs.py`` fails while the committed files are stale. Commands
are found by walking the Click command tree, so a new command or option is documented without editing this
module. The output depends only on the code: no dates, no paths of the machine that ran it.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import typer
from typer.completion import get_completion_script
from typer.core import TyperArgument, TyperCommand, TyperGroup

from dsocr_cli import __version__
from dsocr_cli.cli.app import app
from dsocr_cli.errors import EXIT_CODE_MEANINGS
from dsocr_cli.writers.atomic import LOCK_NAME

PROG = "dsocr"
COMPLETE_VAR = "_DSOCR_COMPLETE"
"""Click's convention, ``_<PROG>_COMPLETE``: the scripts set it when they call ``dsocr`` back for completions."""
MAN_PAGE = "man/dsocr.1"
COMPLETIONS = {"bash": "completions/dsocr.bash", "zsh": "completions/_dsocr", "fish": "completions/dsocr.fish"}
"""Shell -> file, named where each shell's completion loader looks for it."""
REGENERATE = "python -m dsocr_cli.cli.docs"

ENVIRONMENT = {
    "DSOCR_CONFIG": "Config file to read instead of the platform default (see FILES).",
    "DSOCR_TRACEBACK": "Set to 1 to print the traceback of an internal error (exit 70) before its one-line message.",
    "DSOCR_STDIN_TIMEOUT": "Seconds stdin or a pipe may stay silent before its first byte (default 30; none waits forever).",
    "DSOCR_CACHE": "dsocr's cache root; quantized weights are kept in DSOCR_CACHE/quantized (default HF_HOME/dsocr/quantized).",
    "HF_HOME": "Root of the Hugging Face cache where downloaded models are kept (default ~/.cache/huggingface).",
    "HF_HUB_CACHE": "Model cache directory itself, instead of HF_HOME/hub.",
    "HF_HUB_OFFLINE": "Set to 1 to never touch the network and use cached models only (as --offline).",
    "HF_TOKEN": "Hugging Face access token, for gated or private model repositories.",
    "HF_ENDPOINT": "Hub URL, for a mirror or a self-hosted hub.",
    "NO_COLOR": "Set to anything to print messages without colour.",
}
"""Variables dsocr reads that are not an option's default; those are collected from the options themselves."""

FILES = (
    (
        "$XDG_CONFIG_HOME/dsocr/config.toml",
        "The config file on Linux (~/.config/dsocr/config.toml when XDG_CONFIG_HOME is unset; "
        "~/Library/Application Support/dsocr/config.toml on macOS). DSOCR_CONFIG overrides it; "
        "`dsocr config path` prints the one in use. TOML whose keys are long option names without dashes "
        'in front, e.g. mode = "base" or max-tokens = 4096. Precedence: options, then DSOCR_* variables, '
        "then this file, then the built-in defaults.",
    ),
    (
        f"DIR/{LOCK_NAME}",
        "Shared lock held by every run writing into output directory DIR (it keeps out only an older dsocr that "
        "locks DIR for itself). Outputs are written under temporary names (.NAME.PID@HOST.RANDOM.tmp) and renamed "
        "when complete; temporary files left by a killed run are removed by the next run on that host.",
    ),
    (
        "DIR/.NAME.dsocr.lock",
        "The claim of the run converting output NAME (host, pid, time): several runs, on one machine or many, can "
        "share an output folder; each input is converted by one of them. A claim whose process is gone, or not "
        "refreshed for 5 minutes, is taken over.",
    ),
    (
        "DIR/.NAME.dsocr.json",
        "Manifest of output NAME: dsocr version, model and revision, settings (mode, prompt, format, pages, dpi, "
        "guard, layout PDF), the input's size and modification time, each page's finished/looped flags and every "
        "file written. --skip-existing skips an input only when this says its output is complete for the same "
        "input and settings; a file without a manifest is kept (--force overwrites it). Files a manifest lists "
        "(layout PDFs, figure crops) are never read back as inputs.",
    ),
    (
        "DIR/STEM_images/, DIR/STEM_layouts.pdf",
        "Figure crops of a Markdown output and its --layout-pdf, named after the output's stem: inputs found in "
        "a directory keep their relative path below it (out/a/doc.md); inputs that would share a name are named "
        "after their whole file name (x.pdf.md, x.png.md), then ~2, ~3 in command-line order.",
    ),
)


@dataclass
class CommandDoc:
    """One command of the tree with the context Click needs to describe its parameters."""

    name: str
    """The command line that invokes it: ``dsocr config path``."""
    command: TyperCommand | TyperGroup
    context: typer.Context


def walk(command: TyperCommand | TyperGroup, context: typer.Context) -> Iterator[CommandDoc]:
    """Every visible command below (and including) ``command``, depth first, in the order ``--help`` lists them."""
    yield CommandDoc(context.command_path, command, context)
    if isinstance(command, TyperGroup):
        for name in command.list_commands(context):
            sub = command.get_command(context, name)
            if sub is None or sub.hidden:
                continue
            yield from walk(sub, typer.Context(sub, info_name=name, parent=context))


def command_tree() -> list[CommandDoc]:
    root = typer.main.get_command(app)
    return list(walk(root, typer.Context(root, info_name=PROG)))


def roff(text: str) -> str:
    """Text escaped for roff: backslashes, minus signs (so options copy and search as typed), leading dots."""
    escaped = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line for line in escaped.split("\n"))


def paragraphs(text: str) -> list[str]:
    """Help text in roff: blank lines separate paragraphs; indented paragraphs (examples) keep their lines."""
    out: list[str] = []
    for block in text.strip("\n").split("\n\n"):
        lines = block.split("\n")
        if not block.strip():
            continue
        if all(line.startswith(" ") for line in lines if line):
            out.append(".PP\n.RS 4\n.nf\n" + roff("\n".join(line.strip() for line in lines)) + "\n.fi\n.RE")
        else:
            out.append(".PP\n" + roff(" ".join(line.strip() for line in lines)))
    return out


def argument_term(param: TyperArgument) -> str:
    """``INPUTS...``: the argument's name in capitals, with dots when it takes several values."""
    return f"\\fI{roff((param.name or '').upper())}\\fR" + ("..." if param.nargs == -1 else "")


def synopsis(doc: CommandDoc) -> str:
    """``dsocr convert [OPTIONS] INPUTS...``: the usage line, built from the parameters."""
    pieces = [f"\\fB{roff(doc.name)}\\fR", "[\\fIOPTIONS\\fR]"]
    for param in doc.command.get_params(doc.context):
        if isinstance(param, TyperArgument):
            term = argument_term(param)
            pieces.append(term if param.required else f"[{term}]")
    if isinstance(doc.command, TyperGroup):
        subcommand = "\\fICOMMAND\\fR [\\fIARGS\\fR]..."
        pieces.append(f"[{subcommand}]" if doc.command.invoke_without_command else subcommand)
    return ".PP\n" + " ".join(pieces)


def invocable(doc: CommandDoc) -> bool:
    """Whether the command runs by itself: a leaf, or a group that does something without a subcommand."""
    return not isinstance(doc.command, TyperGroup) or doc.command.invoke_without_command


def option_term(declaration: str) -> str:
    """``-m, --model <str>`` with the option names bold and the value placeholder (``<int range>``) italic."""
    words = declaration.split(" ")
    names: list[str] = []
    while words and (words[0].startswith("-") or words[0] == "/"):
        word = words.pop(0)
        comma = "," if word.endswith(",") else ""
        names.append(word if word == "/" else f"\\fB{roff(word.removesuffix(','))}\\fR{comma}")
    placeholder = [f"\\fI{roff(' '.join(words))}\\fR"] if words else []
    return " ".join(names + placeholder)


def parameters(doc: CommandDoc) -> list[str]:
    """Arguments then options, each as a tagged paragraph with its help, env var and default (as in ``--help``)."""
    arguments: list[str] = []
    options: list[str] = []
    for param in doc.command.get_params(doc.context):
        if getattr(param, "hidden", False):
            continue
        record = param.get_help_record(doc.context)
        if isinstance(param, TyperArgument):
            # Typer's own term reads "inputs... <list[str]>"; the man page names arguments as the synopsis does.
            arguments.append(f".TP\n{argument_term(param)}\n{roff(record[1] if record else param.help or '')}")
        elif record is not None:
            options.append(f".TP\n{option_term(record[0])}\n{roff(record[1])}")
    out: list[str] = []
    if arguments:
        out += [".SS Arguments", *arguments]
    if options:
        out += [".SS Options", *options]
    return out


def subcommands(doc: CommandDoc) -> list[str]:
    if not isinstance(doc.command, TyperGroup):
        return []
    entries = []
    for name in doc.command.list_commands(doc.context):
        sub = doc.command.get_command(doc.context, name)
        if sub is not None and not sub.hidden:
            summary = sub.short_help or (sub.help or "").strip().split("\n\n")[0]
            entries.append(f".TP\n\\fB{roff(doc.name + ' ' + name)}\\fR\n{roff(' '.join(summary.split()))}")
    return [".SS Commands", *entries] if entries else []


def environment(tree: list[CommandDoc]) -> list[str]:
    """Option defaults read from the environment (found on the parameters) and the other variables dsocr honours."""
    described = {name: roff(text) for name, text in ENVIRONMENT.items()}
    used_by: dict[str, dict[str, list[str]]] = {}
    """Variable -> the parameter it sets, in roff -> the commands that have that parameter."""
    for doc in tree:
        for param in doc.command.get_params(doc.context):
            names = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or ())
            for name in names:
                if isinstance(param, TyperArgument):
                    term = f"\\fI{roff((param.name or '').upper())}\\fR"
                else:
                    term = f"\\fB{roff(max(param.opts, key=len))}\\fR"
                used_by.setdefault(name, {}).setdefault(term, []).append(doc.name)
    for name, terms in used_by.items():
        parts = [
            f"{term} of " + ", ".join(f"\\fB{roff(command)}\\fR" for command in commands)
            for term, commands in terms.items()
        ]
        described.setdefault(name, "Default for " + "; ".join(parts) + ".")
    return [".SH ENVIRONMENT", *(f".TP\n\\fB{roff(name)}\\fR\n{described[name]}" for name in sorted(described))]


def man_page() -> str:
    """The whole man page: NAME, SYNOPSIS, DESCRIPTION, one section per command, then exit codes, environment, files."""
    tree = command_tree()
    root = tree[0]
    summary = (root.command.help or "").strip().split("\n\n")[0]
    lines = [
        f'.\\" Generated by {REGENERATE}; do not edit.',
        f'.TH DSOCR 1 "" "{PROG} {__version__}" "User Commands"',
        ".SH NAME",
        f"{PROG} \\- {roff(summary)}",
        ".SH SYNOPSIS",
        *(synopsis(doc) for doc in tree if doc is root or invocable(doc)),
        ".SH DESCRIPTION",
        *paragraphs(root.command.help or ""),
        *parameters(root),
        *subcommands(root),
    ]
    for doc in tree[1:]:
        lines += [f'.SH "{roff(doc.name.upper())}"', synopsis(doc), *paragraphs(doc.command.help or "")]
        lines += parameters(doc) + subcommands(doc)
        if doc.command.epilog:
            lines += paragraphs(doc.command.epilog)
    lines.append(".SH EXIT STATUS")
    for code, meaning in EXIT_CODE_MEANINGS.items():
        lines.append(f".TP\n.B {int(code)}\n{roff(meaning[0].upper() + meaning[1:])}.")
    lines += environment(tree)
    lines.append(".SH FILES")
    for path, text in FILES:
        lines.append(f".TP\n.I {roff(path)}\n{roff(text)}")
    return "\n".join(lines) + "\n"


def completion(shell: str) -> str:
    """Typer's own script for ``shell``, the one ``dsocr --show-completion`` prints in that shell."""
    return get_completion_script(prog_name=PROG, complete_var=COMPLETE_VAR, shell=shell) + "\n"


def generate() -> dict[str, str]:
    """Every generated file: path relative to the repository root -> content."""
    files = {MAN_PAGE: man_page()}
    files.update({path: completion(shell) for shell, path in COMPLETIONS.items()})
    home = os.path.expanduser("~")
    # A default that is a path below the home directory (a cache, say) must not leak this machine's name.
    return {path: text.replace(home, "~") if home != "/" else text for path, text in files.items()}


def write(root: Path) -> list[Path]:
    """Write every generated file below ``root``; returns the paths written."""
    written = []
    for relative, text in generate().items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """``python -m dsocr_cli.cli.docs [DIR]``: regenerate into DIR and list what was written."""
    parser = argparse.ArgumentParser(prog=REGENERATE, description="Regenerate the man page and shell completions.")
    parser.add_argument("root", nargs="?", default=".", type=Path, help="repository root (default: .)")
    args = parser.parse_args(argv)
    for path in write(args.root):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
