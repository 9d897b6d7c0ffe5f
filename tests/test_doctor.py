"""`dsocr doctor`'s verdict on machines of different sizes, and its exit code when nothing can run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsocr_cli import doctor
from dsocr_cli.cli.app import main
from dsocr_cli.doctor import Gpu, Report, check_memory
from dsocr_cli.errors import ExitCode
from tests.hubserver import use_environment

GB = 10**9
BF16 = 6_672_212_480
OVERHEAD = 2 * GB


def verdict(device: str, ram: int, gpu_free: int | None = None, dtype: str = "float32") -> list[tuple[str, str]]:
    itemsize = {"float32": 4, "bfloat16": 2}[dtype]
    report = Report(dsocr="0", python="3", platform="test", packages={}, device=device, dtype=dtype)
    report.ram_available_bytes = ram
    report.weights_bytes = BF16 // 2 * itemsize
    report.nf4_weights_bytes = int(BF16 * doctor.NF4_WEIGHT_FRACTION)
    if gpu_free is not None:
        report.gpus = [Gpu(0, "test GPU", "8.0", 24 * GB, gpu_free, True)]
    check_memory(report, BF16, OVERHEAD)
    return [(p.severity, p.message) for p in report.problems]


@pytest.mark.parametrize(
    ("device", "ram", "gpu_free", "dtype", "severity", "advice"),
    [
        ("cpu", 32 * GB, None, "float32", None, None),
        ("cpu", 12 * GB, None, "float32", "warning", "--dtype bfloat16"),
        ("cpu", 6 * GB, None, "bfloat16", "warning", "--quant nf4"),
        ("cpu", 3 * GB, None, "float32", "error", "even --quant nf4 needs"),
        ("cuda", 4 * GB, 20 * GB, "bfloat16", None, None),
        ("cuda", 4 * GB, 6 * GB, "bfloat16", "warning", "--quant nf4"),
        ("cuda", 16 * GB, 2 * GB, "bfloat16", "warning", "--device cpu"),
        ("cuda", 2 * GB, 2 * GB, "bfloat16", "error", "even --quant nf4 needs"),
    ],
)
def test_memory_verdict(
    device: str, ram: int, gpu_free: int | None, dtype: str, severity: str | None, advice: str | None
) -> None:
    problems = verdict(device, ram, gpu_free, dtype)
    if severity is None:
        assert problems == []
    else:
        ((found, message),) = problems
        assert found == severity and advice in message


def test_doctor_exits_4_when_not_even_nf4_fits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use_environment(monkeypatch, HF_HOME=str(tmp_path / "hf"))
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.setattr(doctor, "system_memory", lambda: (2 * GB, GB))
    assert main(["doctor", "--json"]) == ExitCode.MODEL
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["device"] == "cpu"
    assert any(p["severity"] == "error" and "not enough memory" in p["message"] for p in report["problems"])
