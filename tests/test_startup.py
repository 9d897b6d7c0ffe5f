"""Start-up: help, version, completion and `config path` answer at once and load no model stack; the cache and
doctor commands skip what they do not use; a conversion without quantization never imports bitsandbytes.

What a process imported is read from the process itself: a ``sitecustomize`` on PYTHONPATH writes
``sorted(sys.modules)`` to a file when the interpreter exits (``ImportLog``).
"""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cli_support import DSOCR, FAST, isolated_env, make_image

MODEL_STACK = ("torch", "transformers", "bitsandbytes")
HUB_CLIENT = ("httpx2", "httpx", "dsocr_cli.hub")
"""What importing dsocr's hub module costs (0.3 s): its HTTP client."""
SERVER_STACK = ("fastapi", "starlette", "uvicorn", "dsocr_cli.server")
"""What ``dsocr serve`` imports when it runs, never before."""
DOCUMENT_STACK = ("pymupdf", "numpy", "markdownify", "bs4")
"""What opening a PDF or an image and writing Markdown load (0.4 s of start here), bound lazily."""
SITECUSTOMIZE = """\
import atexit, os, sys
_log = os.environ.get("DSOCR_TEST_IMPORT_LOG")
if _log:
    atexit.register(lambda: open(_log, "w").write("\\n".join(sorted(sys.modules))))
"""


@dataclass
class Started:
    """One ``dsocr`` process: how it ended, how long it took, and the modules (and their top-level packages)
    it had imported."""

    code: int
    stdout: str
    stderr: str
    seconds: float
    modules: set[str]

    def imported(self, *packages: str) -> list[str]:
        return [name for name in packages if name in self.modules]


@dataclass
class ImportLog:
    """Runs ``dsocr`` with the import-logging ``sitecustomize`` on its path."""

    hook: Path
    tmp_path: Path

    def run(self, *args: str | Path, env: dict[str, str] | None = None) -> Started:
        log = self.tmp_path / f"modules-{time.monotonic_ns()}.txt"
        environment = (env or isolated_env(self.tmp_path)) | {
            "PYTHONPATH": str(self.hook),
            "DSOCR_TEST_IMPORT_LOG": str(log),
        }
        started = time.perf_counter()
        done = subprocess.run(
            [str(DSOCR), *map(str, args)], cwd=self.tmp_path, env=environment, capture_output=True, timeout=120
        )
        seconds = time.perf_counter() - started
        names = set(log.read_text().split()) if log.is_file() else set()
        modules = names | {name.split(".")[0] for name in names}
        assert modules, f"the import hook did not run: {done.stderr.decode()}"
        return Started(done.returncode, done.stdout.decode(), done.stderr.decode(), seconds, modules)

    def median(self, *args: str, env: dict[str, str] | None = None, runs: int = 3) -> tuple[float, Started]:
        """The median wall time of ``runs`` runs, and the last run."""
        times = []
        for _ in range(runs):
            last = self.run(*args, env=env)
            assert last.code == 0, last.stderr
            times.append(last.seconds)
        return statistics.median(times), last


@pytest.fixture
def dsocr_process(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> ImportLog:
    hook = tmp_path_factory.mktemp("import-hook")
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return ImportLog(hook, tmp_path)


QUICK: Sequence[tuple[str, ...]] = (
    ("--help",),
    ("-h",),
    ("--version",),
    ("convert", "--help"),
    ("serve", "--help"),
    ("config", "path"),
)


@pytest.mark.parametrize("args", QUICK, ids=" ".join)
def test_help_version_and_config_path_answer_at_once_without_the_model_stack(
    dsocr_process: ImportLog, args: tuple[str, ...]
) -> None:
    # Measured on the 2-core CI machine with other tests running: 0.2-0.45 s each (it was 1.1-1.7 s, with
    # transformers and the hub client imported before parsing). The bound leaves room for a loaded machine.
    seconds, run = dsocr_process.median(*args)
    assert run.imported(*MODEL_STACK, *HUB_CLIENT, *SERVER_STACK, "pydantic") == []
    assert seconds < 1.0, f"dsocr {' '.join(args)}: median {seconds:.2f} s"
    assert run.stderr == ""


def test_shell_completion_answers_at_once_without_the_model_stack(dsocr_process: ImportLog, tmp_path: Path) -> None:
    env = isolated_env(tmp_path) | {"_DSOCR_COMPLETE": "complete_bash", "COMP_WORDS": "dsocr conv", "COMP_CWORD": "1"}
    seconds, run = dsocr_process.median(env=env)
    assert run.stdout.split() == ["convert"]
    assert run.imported(*MODEL_STACK, *HUB_CLIENT, "pydantic") == []
    assert seconds < 1.0, f"completion: median {seconds:.2f} s"


def test_a_run_whose_inputs_all_fail_loads_no_document_or_model_stack(
    dsocr_process: ImportLog, tmp_path: Path
) -> None:
    (tmp_path / "noise.pdf").write_bytes(b"not a PDF at all")
    run = dsocr_process.run("convert", "missing.pdf", "noise.pdf", "-o", "out", "-q", "--model", "never-loaded")
    assert run.code == 3, run.stderr
    assert run.stderr.splitlines() == [
        "error: missing.pdf: no such file or directory",
        "error: noise.pdf: unsupported file type (looks like plain text despite the .pdf extension)",
    ]
    assert run.imported(*MODEL_STACK, *DOCUMENT_STACK, *SERVER_STACK) == []


def test_h_is_help_everywhere(dsocr_process: ImportLog) -> None:
    assert dsocr_process.run("-h").stdout == dsocr_process.run("--help").stdout
    for command in (("convert",), ("models", "rm"), ("config",), ("doctor",)):
        run = dsocr_process.run(*command, "-h")
        assert run.code == 0 and run.stdout.startswith(f"Usage: dsocr {' '.join(command)} "), run.stderr
        assert "-h, --help" in run.stdout


def test_version_flag_and_command_agree(dsocr_process: ImportLog) -> None:
    from dsocr_cli import __version__

    assert dsocr_process.run("--version").stdout == dsocr_process.run("version").stdout == f"dsocr {__version__}\n"


def test_models_and_doctor_skip_what_they_do_not_use(dsocr_process: ImportLog, tmp_path: Path) -> None:
    env = isolated_env(tmp_path) | {"HF_HOME": str(tmp_path / "hf")}
    models = dsocr_process.run("models", env=env)
    assert models.code == 0, models.stderr
    assert models.imported(*MODEL_STACK) == []
    # torch is the doctor's one heavy import (CUDA devices); it took 15-17 s when it imported
    # bitsandbytes and transformers too, and measures 2.7-3.1 s on the loaded 2-core CI machine.
    doctor = dsocr_process.run("doctor", "--json", env=env)
    assert doctor.code in (0, 4), doctor.stderr
    assert doctor.imported(*MODEL_STACK) == ["torch"]
    assert models.seconds < 2.0 and doctor.seconds < 6.0, (models.seconds, doctor.seconds)


def test_unquantized_conversion_never_imports_bitsandbytes_and_is_silent(
    dsocr_process: ImportLog, eos_checkpoint: Path, tmp_path: Path
) -> None:
    make_image(tmp_path / "page.png")
    run = dsocr_process.run("convert", "page.png", "--quant", "none", "--model", eos_checkpoint, *FAST)
    assert (run.code, run.stderr) == (0, "")
    assert "<!-- page 1 -->" in run.stdout
    assert "torch" in run.modules and "bitsandbytes" not in run.modules
