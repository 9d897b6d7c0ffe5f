"""`dsocr doctor`'s verdict on machines of different sizes, and its exit code when nothing can run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsocr_cli import doctor, quant
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
    report.nf4_weights_bytes = int(BF16 * quant.NF4_WEIGHT_FRACTION)
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


def doctor_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert main(["doctor", "--json", *args]) == ExitCode.OK
    return json.loads(capsys.readouterr().out)


def test_doctor_sizes_the_chosen_family(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--model picks the family whose memory figures doctor reports: by hub repo before a download, by
    config.json for a local directory; an unknown, undownloaded repo is said to be estimated."""
    from dsocr_cli.models.registry import V1, V2
    from dsocr_cli.testing.checkpoint_v2 import write_checkpoint_v2

    use_environment(monkeypatch, HF_HOME=str(tmp_path / "hf"))
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.setattr(doctor, "system_memory", lambda: (64 * GB, 64 * GB))
    v1, v2 = doctor_json(capsys), doctor_json(capsys, "--model", "v2")
    assert (v1["model"], v1["family"]) == ("deepseek-ai/DeepSeek-OCR", V1.name)
    assert (v2["model"], v2["family"]) == ("v2", V2.name)
    itemsize = 4 if v1["dtype"] == "float32" else 2
    assert v1["weights_bytes"] == V1.reference_sizes().bf16_weight_bytes // 2 * itemsize
    assert v2["weights_bytes"] == V2.reference_sizes().bf16_weight_bytes // 2 * itemsize > v1["weights_bytes"]
    assert any("`dsocr download v2` fetches deepseek-ai/DeepSeek-OCR-2" in p["message"] for p in v2["problems"])

    local = doctor_json(capsys, "--model", str(write_checkpoint_v2(tmp_path / "mine", seed=0)))
    assert local["family"] == V2.name and local["weights_bytes"] == v2["weights_bytes"]

    other = doctor_json(capsys, "--model", "someone/other-model")
    assert other["family"] == V1.name
    assert any("someone/other-model is not downloaded" in p["message"] for p in other["problems"])


def test_doctor_reports_an_unsupported_local_model_as_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use_environment(monkeypatch, HF_HOME=str(tmp_path / "hf"))
    model = tmp_path / "llama"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}))
    assert main(["doctor", "--json", "--model", str(model)]) == ExitCode.MODEL
    report = json.loads(capsys.readouterr().out)
    assert any(p["severity"] == "error" and "unsupported model (model_type 'llama'" in p["message"] for p in report["problems"])
