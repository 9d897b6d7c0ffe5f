"""Choosing the device and dtype a model runs on.

``--dtype auto`` on the CPU follows what the CPU can do: bfloat16 where it has AMX-BF16 or AVX512-BF16
(measured ~1.8x faster batched decoding and ~2x faster vision encoding than float32 on a 2-core Xeon
with both), float32 everywhere else. Without those instructions bf16 is emulated and slower: on a 2-core
AVX2-only EPYC, decode 5.18 tokens/s against 6.07 in float32 and a tiny-mode prefill 28.7 s against
3.45 s (dsocr_cli/quant.py, BENCHMARKS.md). The CPU's flags (the ``flags`` line of /proc/cpuinfo) decide;
where they cannot be read (macOS, Windows, no /proc) auto stays on float32. Nothing is cached: reading
them costs well under a millisecond, and only happens when a dtype is resolved.
"""

from __future__ import annotations

from pathlib import Path

import torch

from dsocr_cli.errors import UsageError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
CPUINFO = Path("/proc/cpuinfo")
BF16_CPU_FLAGS = {"amx_bf16": "AMX-BF16", "avx512_bf16": "AVX512-BF16"}
"""/proc/cpuinfo flags that make bfloat16 faster than float32 on the CPU, best first, with their names."""
AVX512_CAPABILITIES = ("AVX512",)
"""``torch.backends.cpu.get_cpu_capability()`` values at which torch's own CPU kernels use AVX512."""


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` = the first CUDA GPU if there is one, else the CPU; an unavailable device is a usage error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown --device {name!r} (use auto, cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name}: no CUDA GPU is available on this machine (use --device cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"--device {name}: Apple MPS is not available on this machine")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto`` = bfloat16 on GPUs that support it (else float16), float16 on MPS, and on the CPU bfloat16
    with AMX-BF16 or AVX512-BF16, else float32 (``auto_dtype``)."""
    if name == "auto":
        return auto_dtype(device)[0]
    if name not in DTYPES:
        raise UsageError(f"unknown --dtype {name!r} (choose from auto, {', '.join(DTYPES)})")
    return DTYPES[name]


def auto_dtype(device: torch.device) -> tuple[torch.dtype, str]:
    """What ``--dtype auto`` picks on ``device``, and a one-line reason (``dsocr doctor`` shows it)."""
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16, "bfloat16: the GPU supports it"
        return torch.float16, "float16: the GPU has no bfloat16 support"
    if device.type == "mps":
        return torch.float16, "float16: Apple MPS"
    name, reason = choose_cpu_dtype(cpu_flags(), torch_cpu_capability())
    return DTYPES[name], reason


def choose_cpu_dtype(flags: frozenset[str] | None, capability: str | None = None) -> tuple[str, str]:
    """The CPU dtype for ``--dtype auto`` and why: bfloat16 when ``flags`` (/proc/cpuinfo's) include
    ``amx_bf16`` or ``avx512_bf16``, else float32; ``None`` = the flags could not be read (float32).

    ``capability`` (``torch.backends.cpu.get_cpu_capability()``) only cross-checks: when the flags promise
    bf16 but torch runs its own kernels below AVX512 (``ATEN_CPU_CAPABILITY`` set, or a torch build
    without them), the reason says so; the choice stays the flags'. No I/O here.
    """
    if flags is None:
        seen = f"; torch reports {capability}" if capability else ""
        return (
            "float32",
            f"float32: could not read this CPU's flags (no /proc/cpuinfo{seen}); bf16 is only faster with "
            "AVX512-BF16 or AMX-BF16",
        )
    for flag, label in BF16_CPU_FLAGS.items():
        if flag in flags:
            reason = f"bfloat16: the CPU has {label} ({flag})"
            if capability is not None and capability not in AVX512_CAPABILITIES:
                reason += f", though torch runs its CPU kernels at {capability} (check ATEN_CPU_CAPABILITY)"
            return "bfloat16", reason
    return "float32", "float32: no AVX512-BF16 or AMX-BF16 on this CPU; bf16 runs slower there (BENCHMARKS.md)"


def cpu_flags(cpuinfo: Path | None = None) -> frozenset[str] | None:
    """The first ``flags`` line of ``cpuinfo`` (default ``CPUINFO``, Linux x86's /proc/cpuinfo) as a set;
    None when the file cannot be read or has no such line (macOS, Windows, ARM's ``Features`` lines)."""
    try:
        with (cpuinfo or CPUINFO).open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                key, colon, value = line.partition(":")
                if colon and key.strip() == "flags":
                    return frozenset(value.split())
    except OSError:
        return None
    return None


def torch_cpu_capability() -> str | None:
    """The vector instruction level torch's CPU kernels run at (AVX2, AVX512, DEFAULT, ...), if it says."""
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        return None
