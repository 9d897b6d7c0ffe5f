"""The man page and shell completions are generated from the Typer app; the committed copies must be current."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from dsocr_cli.cli import docs
from dsocr_cli.errors import ExitCode
from tests.cli_support import call_main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh generation, written the way a developer writes it."""
    root = tmp_path_factory.mktemp("docs")
    assert docs.main([str(root)]) == 0
    return root


def test_committed_man_page_and_completions_are_current(generated: Path) -> None:
    stale = [
        relative
        for relative in docs.generate()
        if not (REPO / relative).is_file() or (REPO / relative).read_text() != (generated / relative).read_text()
    ]
    assert not stale, f"{', '.join(stale)} out of date with the CLI: run `{docs.REGENERATE}` and commit the result"


def test_generation_is_deterministic_and_free_of_machine_paths(generated: Path) -> None:
    again = docs.generate()
    assert again == {relative: (generated / relative).read_text() for relative in again}
    for text in again.values():
        assert str(Path.home()) not in text or str(Path.home()) == "/"
        assert str(REPO) not in text
    assert '.TH DSOCR 1 "" ' in again[docs.MAN_PAGE]  # no date


def test_man_page_documents_every_command_and_option(generated: Path) -> None:
    page = (generated / docs.MAN_PAGE).read_text()
    for doc in docs.command_tree():
        if doc.name != docs.PROG:
            assert f'.SH "{docs.roff(doc.name.upper())}"' in page
        for param in doc.command.get_params(doc.context):
            for option in (*param.opts, *param.secondary_opts):
                if option.startswith("-"):
                    assert f"\\fB{docs.roff(option)}\\fR" in page, f"{doc.name} {option}"


def test_man_page_has_exit_status_environment_and_files(generated: Path) -> None:
    page = (generated / docs.MAN_PAGE).read_text()
    sections = [line.removeprefix(".SH ").strip('"') for line in page.splitlines() if line.startswith(".SH ")]
    assert sections[:3] == ["NAME", "SYNOPSIS", "DESCRIPTION"]
    assert sections[-3:] == ["EXIT STATUS", "ENVIRONMENT", "FILES"]
    exit_status = page.split(".SH EXIT STATUS\n")[1].split(".SH ")[0]
    assert [int(line.removeprefix(".B ")) for line in exit_status.splitlines() if line.startswith(".B ")] == [
        int(code) for code in ExitCode
    ]
    assert [0, 1, 2, 3, 4, 5, 70, 129, 130, 143] == [int(code) for code in ExitCode]
    environment = page.split(".SH ENVIRONMENT\n")[1].split(".SH ")[0]
    for variable in (
        "DSOCR_MODEL", "DSOCR_MODE", "DSOCR_PROMPT", "DSOCR_FORMAT", "DSOCR_DEVICE", "DSOCR_DTYPE", "DSOCR_QUANT",
        "DSOCR_CONFIG", "HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_TOKEN", "HF_ENDPOINT", "NO_COLOR",
    ):
        assert f"\\fB{variable}\\fR" in environment, variable
    assert "dsocr/config.toml" in page.split(".SH FILES\n")[1]


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
def test_man_page_renders_without_warnings(generated: Path) -> None:
    result = subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww", "-z", str(generated / docs.MAN_PAGE)], capture_output=True, text=True
    )
    assert (result.returncode, result.stderr) == (0, "")


@pytest.mark.parametrize("shell", list(docs.COMPLETIONS))
def test_completion_scripts_call_dsocr_back_for_the_candidates(generated: Path, shell: str) -> None:
    script = (generated / docs.COMPLETIONS[shell]).read_text()
    assert f"{docs.COMPLETE_VAR}=complete_{shell}" in script
    assert "dsocr" in script


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("dsocr conv", ["convert"]),
        ("dsocr con", ["config", "convert"]),
        ("dsocr convert --form", ["--format"]),
        ("dsocr convert --format ", ["hocr", "html", "json", "markdown", "pdf", "raw", "text"]),
        ("dsocr convert --format md,j", ["md,json"]),
        ("dsocr config ", ["path"]),
    ],
)
def test_dsocr_answers_the_completion_scripts_with_commands_options_and_choices(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], words: str, expected: list[str]
) -> None:
    """What the bash script asks: COMP_WORDS and COMP_CWORD in the environment, candidates one per line back."""
    monkeypatch.setenv(docs.COMPLETE_VAR, "complete_bash")
    monkeypatch.setenv("COMP_WORDS", words)
    monkeypatch.setenv("COMP_CWORD", str(len(words.split(" ")) - 1))
    with pytest.raises(SystemExit) as done:
        call_main([])
    assert done.value.code == 0
    assert sorted(capsys.readouterr().out.split()) == expected
