"""SIGTERM and SIGHUP stop `dsocr` as Ctrl-C does: finished outputs stay whole, no temporary file is left, one
line says why, and the exit code is 128 + the signal (143, 129); running the same command again completes."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

from tests.cli_support import DSOCR, FAST, isolated_env, make_pdf


def catches(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler for ``signum`` (Linux: the SigCgt mask in /proc/PID/status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(mask, 16) >> (signum - 1) & 1)


def temporary_files(directory: Path) -> list[str]:
    return sorted(str(path.relative_to(directory)) for path in directory.rglob("*.tmp"))


def test_sigterm_mid_batch_exits_143_keeping_finished_outputs_and_a_rerun_completes(
    tmp_path: Path, eos_checkpoint: Path
) -> None:
    documents = [make_pdf(tmp_path / f"doc{number}.pdf", pages=2).name for number in range(3)]
    out = tmp_path / "out"
    # One page at a time, so the run is certainly mid-way when the first document appears.
    command = [
        str(DSOCR), "convert", *documents, "-o", "out", "--format", "json", "--batch-size", "1",
        "--model", str(eos_checkpoint), *FAST,
    ]
    process = subprocess.Popen(
        command, cwd=tmp_path, env=isolated_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 300
    while not (out / "doc0.json").exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no output after 300 s"
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)  # no worker thread may keep the process alive

    assert (process.returncode, stdout, stderr.decode()) == (143, b"", "terminated\n")
    assert temporary_files(out) == []
    finished = sorted(path.name for path in out.glob("*.json") if not path.name.startswith("."))  # not manifests
    assert "doc0.json" in finished and len(finished) < len(documents), finished  # stopped mid-run
    for name in finished:
        assert len(json.loads((out / name).read_text())["pages"]) == 2

    rerun = subprocess.run(command, cwd=tmp_path, env=isolated_env(tmp_path), capture_output=True, timeout=300)

    assert rerun.returncode == 0, rerun.stderr.decode()
    assert temporary_files(out) == []
    for name in documents:
        assert len(json.loads((out / f"{Path(name).stem}.json").read_text())["pages"]) == 2


def test_sighup_exits_129_with_one_line(tmp_path: Path) -> None:
    # dsocr waits for stdin that never comes: a hang-up must end it at once, and say so.
    process = subprocess.Popen(
        [str(DSOCR), "convert", "-"], cwd=tmp_path, env=isolated_env(tmp_path),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while not catches(process.pid, signal.SIGHUP):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "dsocr never installed its SIGHUP handler"
        time.sleep(0.01)
    process.send_signal(signal.SIGHUP)
    stdout, stderr = process.communicate(timeout=60)
    assert (process.returncode, stdout, stderr.decode()) == (129, b"", "hung up\n")
