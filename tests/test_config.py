"""The config file: its keys are the commands' option names, anything else is an error naming the key and the
file, a bad value is blamed on the file, and DSOCR_CONFIG must name a file that exists."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli_support import Run, make_image

Dsocr = Callable[..., Run]


@pytest.fixture
def config(monkeypatch: pytest.MonkeyPatch, dsocr: Dsocr) -> Callable[[str], Path]:
    """Write ``dsocr.toml`` in the working directory and point DSOCR_CONFIG at it."""

    def write(text: str) -> Path:
        path = Path("dsocr.toml")
        path.write_text(text)
        monkeypatch.setenv("DSOCR_CONFIG", str(path))
        return path

    return write


def test_option_names_from_the_config_file_set_the_options(
    dsocr: Dsocr, config: Callable[[str], Path], eos_checkpoint: Path
) -> None:
    # format is --format (the parameter is called output_format), max_tokens is --max-tokens spelt with _.
    config(f'model = "{eos_checkpoint}"\nformat = "json"\nmax_tokens = 5\nmode = "tiny"\n')
    make_image("scan.png")

    run = dsocr("convert", "scan.png")

    assert (run.code, run.stderr) == (0, "")
    [page] = json.loads(run.stdout)["pages"]
    assert page["mode"] == "tiny"


@pytest.mark.parametrize("value", ['"md,json"', '["md", "json"]'])
def test_format_in_the_config_file_takes_a_comma_list_or_an_array(
    dsocr: Dsocr, config: Callable[[str], Path], eos_checkpoint: Path, value: str
) -> None:
    config(f'model = "{eos_checkpoint}"\nformat = {value}\nmax_tokens = 5\nmode = "tiny"\n')
    make_image("scan.png")

    run = dsocr("convert", "scan.png", "-o", "out")

    assert (run.code, run.stderr) == (0, "")
    assert sorted(path.name for path in Path("out").iterdir() if not path.name.startswith(".")) == ["scan.json", "scan.md"]


def test_unknown_key_is_a_usage_error_naming_it_the_file_and_the_valid_keys(
    dsocr: Dsocr, config: Callable[[str], Path]
) -> None:
    config('mode = "base"\ncolour = "blue"\n')

    run = dsocr("convert", "scan.png")

    assert run.code == 1
    [line] = run.stderr.splitlines()
    assert line.startswith("error: dsocr.toml: unknown setting 'colour' (valid: ")
    valid = line.split("(valid: ")[1].rstrip(")").split(", ")
    assert valid == sorted(valid)
    # Every command that takes settings contributes its options: convert, download and doctor.
    assert {"max-tokens", "mode", "format", "revision", "json", "quant", "offline"} <= set(valid)
    assert "help" not in valid and "inputs" not in valid and "output_format" not in valid


def test_bad_value_is_blamed_on_the_config_file(dsocr: Dsocr, config: Callable[[str], Path]) -> None:
    config('mode = "huge"\n')

    run = dsocr("convert", "scan.png")

    assert run.code == 1
    assert run.stderr == (
        "error: dsocr.toml: mode = \"huge\" (dsocr convert --mode): "
        "'huge' is not one of 'tiny', 'small', 'base', 'large', 'gundam'\n"
    )


def test_bad_number_is_blamed_on_the_config_file(dsocr: Dsocr, config: Callable[[str], Path]) -> None:
    config("dpi = 5\n")

    run = dsocr("convert", "scan.png")

    assert run.code == 1
    assert run.stderr.startswith("error: dsocr.toml: dpi = 5 (dsocr convert --dpi): ")
    assert "env var" not in run.stderr and len(run.stderr.splitlines()) == 1


def test_bad_value_from_the_environment_is_still_blamed_on_the_environment(
    dsocr: Dsocr, config: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    config('mode = "base"\n')
    monkeypatch.setenv("DSOCR_MODE", "huge")

    run = dsocr("convert", "scan.png")

    assert run.code == 1 and "DSOCR_MODE" in run.stderr and "dsocr.toml" not in run.stderr


def test_dsocr_config_naming_a_missing_file_is_a_usage_error(dsocr: Dsocr, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSOCR_CONFIG", "typo.toml")

    run = dsocr("doctor")

    assert run == Run(1, "", "error: typo.toml: no such config file (DSOCR_CONFIG names it)\n")


def test_dsocr_config_dev_null_reads_no_file(dsocr: Dsocr, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSOCR_CONFIG", os.devnull)
    assert dsocr("convert", "missing.png").stderr.startswith("error: missing.png")


def test_config_path_version_and_help_work_whatever_the_file_holds(dsocr: Dsocr, config: Callable[[str], Path]) -> None:
    config("colour = 1\n")  # broken for the commands that read it

    assert dsocr("config", "path") == Run(0, "dsocr.toml\n", "")
    assert dsocr("version").code == 0
    assert dsocr("--help").code == 0


def test_one_quant_setting_suits_convert_and_download(
    dsocr: Dsocr, config: Callable[[str], Path], tiny_checkpoint: Path
) -> None:
    # download --quant takes convert's names: "none" builds nothing (it used to be an invalid value there).
    config(f'quant = "none"\nmodel = "{tiny_checkpoint}"\n')

    run = dsocr("download")

    assert run == Run(0, f"{tiny_checkpoint}\n", "")
