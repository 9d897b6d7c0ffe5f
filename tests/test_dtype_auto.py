"""``--dtype auto`` on the CPU follows the CPU's flags: bfloat16 with AMX-BF16 or AVX512-BF16, float32 otherwise
(and where the flags cannot be read); ``dsocr doctor`` says which and why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dsocr_cli import devices
from dsocr_cli.cli.app import main
from dsocr_cli.devices import choose_cpu_dtype, cpu_flags, resolve_dtype
from dsocr_cli.errors import ExitCode
from tests.hubserver import use_environment

AVX2 = "fpu vme sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi1 bmi2 sha_ni vaes"
"""An AVX2-only EPYC's flags (abridged), like the machine bf16 measured slower on."""
AVX512_BF16 = AVX2 + " avx512f avx512bw avx512vl avx512_vnni avx512_bf16"
AMX = AVX512_BF16 + " amx_bf16 amx_tile amx_int8"
SAPPHIRE_RAPIDS_AMX_ONLY = AVX2 + " avx512f amx_bf16 amx_tile"


def cpuinfo_text(flags: str, processors: int = 2) -> str:
    """/proc/cpuinfo as Linux writes it: one block per logical CPU, tab before the colon."""
    block = (
        "processor\t: {n}\nvendor_id\t: GenuineIntel\nmodel name\t: Test CPU @ 2.00GHz\n"
        "flags\t\t: {flags}\nbugs\t\t: spectre_v1\nbogomips\t: 4000.00\n\n"
    )
    return "".join(block.format(n=n, flags=flags) for n in range(processors))


def fake_cpuinfo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str | None) -> None:
    """Point dsocr's reader at a fake /proc/cpuinfo (``None``: there is none, as on macOS)."""
    path = tmp_path / "cpuinfo"
    if text is not None:
        path.write_text(text)
    monkeypatch.setattr(devices, "CPUINFO", path)


@pytest.mark.parametrize(
    ("flags", "dtype", "named"),
    [
        (AVX2, "float32", "no AVX512-BF16 or AMX-BF16"),
        ("", "float32", "no AVX512-BF16 or AMX-BF16"),
        (AVX2 + " avx512f avx512bw avx512vl", "float32", "no AVX512-BF16 or AMX-BF16"),
        (AVX512_BF16, "bfloat16", "AVX512-BF16 (avx512_bf16)"),
        (SAPPHIRE_RAPIDS_AMX_ONLY, "bfloat16", "AMX-BF16 (amx_bf16)"),
        (AMX, "bfloat16", "AMX-BF16 (amx_bf16)"),
    ],
)
def test_rule_picks_bf16_only_with_bf16_instructions(flags: str, dtype: str, named: str) -> None:
    chosen, reason = choose_cpu_dtype(frozenset(flags.split()))
    assert chosen == dtype
    assert reason.startswith(f"{dtype}: ") and named in reason and "\n" not in reason


def test_rule_falls_back_to_float32_when_the_flags_cannot_be_read() -> None:
    chosen, reason = choose_cpu_dtype(None, "AVX512")
    assert chosen == "float32"
    assert "could not read" in reason and "AVX512" in reason


def test_torch_capability_only_annotates_the_reason() -> None:
    """Flags are the authority: a torch running below AVX512 is mentioned, the choice stays bfloat16."""
    flags = frozenset(AMX.split())
    assert choose_cpu_dtype(flags, "AVX512") == ("bfloat16", "bfloat16: the CPU has AMX-BF16 (amx_bf16)")
    chosen, reason = choose_cpu_dtype(flags, "AVX2")
    assert chosen == "bfloat16" and "AVX2" in reason and "ATEN_CPU_CAPABILITY" in reason
    assert choose_cpu_dtype(frozenset(AVX2.split()), "AVX2")[0] == "float32"


def test_reader_takes_the_flags_line_of_cpuinfo(tmp_path: Path) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo_text(AMX))
    flags = cpu_flags(path)
    assert flags is not None
    assert {"amx_bf16", "avx512_bf16", "avx2"} <= flags
    assert "spectre_v1" not in flags and "GenuineIntel" not in flags
    assert choose_cpu_dtype(flags)[0] == "bfloat16"


def test_reader_says_none_without_a_flags_line_or_file(tmp_path: Path) -> None:
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd evtstrm bf16 sve\nCPU implementer\t: 0x41\n")
    assert cpu_flags(arm) is None
    assert cpu_flags(tmp_path / "missing") is None
    assert cpu_flags(tmp_path) is None  # a directory: unreadable


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (cpuinfo_text(AVX2), torch.float32),
        (cpuinfo_text(AVX512_BF16), torch.bfloat16),
        (cpuinfo_text(AMX), torch.bfloat16),
        (None, torch.float32),
    ],
)
def test_resolve_dtype_auto_on_cpu_follows_the_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str | None, expected: torch.dtype
) -> None:
    fake_cpuinfo(tmp_path, monkeypatch, text)
    assert resolve_dtype("auto", torch.device("cpu")) == expected
    # An explicit --dtype is never overridden by the CPU.
    assert resolve_dtype("float32", torch.device("cpu")) == torch.float32
    assert resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16


def test_gpu_choice_ignores_the_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cpuinfo(tmp_path, monkeypatch, cpuinfo_text(AMX))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_dtype("auto", torch.device("cuda")) == torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    fake_cpuinfo(tmp_path, monkeypatch, cpuinfo_text(AVX2))
    assert resolve_dtype("auto", torch.device("mps")) == torch.float16


@pytest.mark.parametrize(
    ("text", "dtype", "said"),
    [
        (cpuinfo_text(AMX), "bfloat16", "bfloat16: the CPU has AMX-BF16 (amx_bf16)"),
        (cpuinfo_text(AVX2), "float32", "float32: no AVX512-BF16 or AMX-BF16 on this CPU"),
        (None, "float32", "float32: could not read this CPU's flags"),
    ],
)
def test_doctor_reports_what_auto_picks_and_why(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    text: str | None,
    dtype: str,
    said: str,
) -> None:
    use_environment(monkeypatch, HF_HOME=str(tmp_path / "hf"))
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    fake_cpuinfo(tmp_path, monkeypatch, text)
    assert main(["doctor", "--json"]) == ExitCode.OK
    report = json.loads(capsys.readouterr().out)
    assert report["device"] == "cpu" and report["dtype"] == dtype
    assert report["dtype_reason"].startswith(said)
    # The memory figure is for the dtype auto picked: bf16 weights take half of float32's.
    float32_bytes = 4 * 6_672_212_480 // 2
    assert report["weights_bytes"] == (float32_bytes // 2 if dtype == "bfloat16" else float32_bytes)
    assert main(["doctor"]) == ExitCode.OK
    table = capsys.readouterr().out
    assert said in " ".join(table.split())
