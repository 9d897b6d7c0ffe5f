"""Tables on stdout: fitted to the terminal, or kept on one line per row when piped (grep, awk)."""

from __future__ import annotations

from rich.console import Console

PIPE_WIDTH = 200
"""Columns when stdout is not a terminal; rich's default of 80 would wrap cache paths mid-row."""


def table_console() -> Console:
    console = Console(highlight=False)
    return console if console.is_terminal else Console(highlight=False, width=PIPE_WIDTH)
