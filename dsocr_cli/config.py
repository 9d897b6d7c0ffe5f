"""Settings precedence: command-line flags > ``DSOCR_*`` environment variables > config file > defaults.

The config file is TOML in the platform config directory (``dsocr config path`` prints it), with
option names as keys, e.g. ``mode = "base"`` or ``max-tokens = 4096``. Flags and environment variables
are resolved by Click; the file is handed to Click as its ``default_map``, which ranks below both.

Rules:

- The keys are the long option names (without ``--``) of the commands that take settings: ``convert``,
  ``download``, ``doctor`` and ``serve`` (``CONFIGURED_COMMANDS``), read from the commands themselves, so a new
  option is a valid key at once. ``max_tokens`` is accepted for ``max-tokens``. A key applies to every
  one of those commands that has a parameter of that name.
- Any other key is a usage error naming the key and the file, with the valid keys.
- A value is checked by the option it sets, when the command runs; a bad one is blamed on the file
  (``value_error``), never on an environment variable or the command line.
- ``DSOCR_CONFIG`` names the file to read instead of the default; a file it names must exist (a typo
  would otherwise silently drop every setting). ``DSOCR_CONFIG=/dev/null`` reads no file.
- The default file is optional: without it every option has its built-in default.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib
from pathlib import Path
from typing import Any

from dsocr_cli.errors import UsageError

APP_NAME = "dsocr"
CONFIG_ENV = "DSOCR_CONFIG"
CONFIGURED_COMMANDS = ("convert", "download", "doctor", "serve")
"""The commands whose options the config file sets."""


def config_path() -> Path:
    """``$DSOCR_CONFIG`` if set, else ``config.toml`` in the platform config dir (XDG on Linux)."""
    override = os.environ.get(CONFIG_ENV)
    if override:
        return Path(override).expanduser()
    import typer

    return Path(typer.get_app_dir(APP_NAME)) / "config.toml"


def option_keys(command: Any) -> dict[str, str]:
    """Config keys of one Click command -> its parameter names: each option's long names without ``--``.

    Options that take no value from anywhere (``--help``) have no key; neither have arguments, but a key
    also sets an argument of the same name (``model`` is ``convert --model`` and ``download``'s MODEL).
    """
    keys: dict[str, str] = {}
    for param in command.params:
        if not param.expose_value or not param.name:
            continue
        if param.param_type_name == "argument":
            continue
        for opt in param.opts:
            if opt.startswith("--"):
                keys[opt[2:]] = param.name
    return keys


def _param(command: Any, name: str) -> Any:
    return next(param for param in command.params if param.name == name)


def parameter_for(command: Any, key: str) -> str | None:
    """The parameter of ``command`` that config key ``key`` sets, if any (``option_keys``)."""
    keys = option_keys(command)
    name = keys.get(key) or keys.get(key.replace("_", "-"))
    if name is None:
        arguments = {p.name for p in command.params if p.param_type_name == "argument"}
        if key.replace("-", "_") in arguments:
            name = key.replace("-", "_")
    return name


@dataclass(frozen=True)
class ConfigFile:
    """The settings read from one config file (``path`` None: no file), keys as written there."""

    path: Path | None = None
    values: dict[str, Any] = field(default_factory=dict)

    def defaults_for(self, command: Any) -> dict[str, Any]:
        """Click's ``default_map`` for ``command``: its parameter names -> the file's values."""
        found = {}
        for key, value in self.values.items():
            name = parameter_for(command, key)
            if name is not None:
                # An option that may be repeated takes a list; a single string is one occurrence of it.
                found[name] = [value] if isinstance(value, str) and _param(command, name).multiple else value
        return found

    def value_error(self, command: Any, name: str, reason: str) -> UsageError:
        """The one-line error for a value of this file that parameter ``name`` of ``command`` refused."""
        key = next((key for key in self.values if parameter_for(command, key) == name), name.replace("_", "-"))
        reason = reason.removeprefix("Value error, ").rstrip(".")
        option = next((opt for opt in _param(command, name).opts if opt.startswith("--")), name)
        return UsageError(
            f"{self.path}: {key} = {toml_value(self.values.get(key))} (dsocr {command.name} {option}): {reason}"
        )


def toml_value(value: Any) -> str:
    """``value`` as it would be written in the file (strings quoted, booleans lower case)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def valid_keys(commands: Iterable[Any]) -> list[str]:
    """Every key the config file may hold: the union of the commands' option keys, sorted."""
    return sorted({key for command in commands for key in option_keys(command)})


def load_config(commands: Mapping[str, Any], path: Path | None = None) -> ConfigFile:
    """The config file's settings for ``commands`` (name -> Click command), checked against their options.

    ``path`` defaults to ``config_path()``. Raises ``UsageError`` for a file that cannot be read or
    parsed, a ``DSOCR_CONFIG`` naming no file, and unknown keys.
    """
    explicit = path is not None or bool(os.environ.get(CONFIG_ENV))
    path = path or config_path()
    if explicit and str(path) == os.devnull:
        return ConfigFile()
    if not path.is_file():
        if explicit and not path.exists():
            raise UsageError(f"{path}: no such config file ({CONFIG_ENV} names it)")
        if explicit:
            raise UsageError(f"{path}: not a file ({CONFIG_ENV} names it)")
        return ConfigFile()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path}: invalid config file ({exc})") from None
    known = valid_keys(commands.values())
    unknown = [key for key in data if key not in known and key.replace("_", "-") not in known]
    if unknown:
        raise UsageError(f"{path}: unknown setting {unknown[0]!r} (valid: {', '.join(known)})")
    return ConfigFile(path, dict(data))
