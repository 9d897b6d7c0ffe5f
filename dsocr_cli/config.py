"""Settings precedence: command-line flags > ``DSOCR_*`` environment variables > config file > defaults.

The config file is TOML in the platform config directory (``dsocr config path`` prints it), with
option names as keys, e.g. ``mode = "base"`` or ``max-tokens = 4096``. Flags and environment variables
are resolved by Click; the file is handed to Click as its ``default_map``, which ranks below both.
"""

from __future__ import annotations

import os
import sys

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib
from pathlib import Path
from typing import Any

import typer

from dsocr_cli.errors import UsageError

APP_NAME = "dsocr"


def config_path() -> Path:
    """``$DSOCR_CONFIG`` if set, else ``config.toml`` in the platform config dir (XDG on Linux)."""
    override = os.environ.get("DSOCR_CONFIG")
    if override:
        return Path(override).expanduser()
    return Path(typer.get_app_dir(APP_NAME)) / "config.toml"


def load_config(path: Path | None = None) -> dict[str, Any]:
    """Option defaults from the config file (``{}`` when there is none), keys as Click parameter names."""
    path = path or config_path()
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path}: invalid config file ({exc})") from None
    return {key.replace("-", "_"): value for key, value in data.items()}
