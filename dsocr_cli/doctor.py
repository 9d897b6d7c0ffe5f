"""What ``dsocr doctor`` checks: whether this machine can run a conversion, and how dsocr would run it.

Everything here only looks (package metadata, device properties, memory, the model cache, the HF_*
environment); nothing is downloaded or loaded. A check that cannot run (no torch, no /proc) becomes a
reported problem instead of an exception, because the doctor is what people run when things are broken.
"""

from __future__ import annotations

import math
import os
import platform
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from huggingface_hub import constants

from dsocr_cli import __version__, quant
from dsocr_cli.defaults import DEFAULT_MODEL
from dsocr_cli.errors import DsocrError
from dsocr_cli.hub import (
    CachedModel,
    cached_models,
    expand_model,
    free_space,
    hub_cache,
    human_size,
)
from dsocr_cli.messages import redact
from dsocr_cli.models.family import ModelFamily
from dsocr_cli.models.registry import DEFAULT_FAMILY, FAMILIES, family_for

PACKAGES = (
    "torch",
    "transformers",
    "tokenizers",
    "safetensors",
    "huggingface-hub",
    "hf-xet",
    "bitsandbytes",
    "accelerate",
    "pymupdf",
    "pillow",
    "typer",
    "rich",
)
OPTIONAL = {"hf-xet": "huggingface_hub's optional Xet transport; dsocr downloads over HTTP"}
"""Packages dsocr runs without; every other one in PACKAGES is required for a conversion."""
"""nf4 weights relative to bf16: issue 4's bar for dsocr's nf4 (linear and expert layers <= 30%)."""

BF16_BYTES = 2
"""The official checkpoint ships bfloat16 weights."""

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    severity: Severity
    message: str


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    capability: str
    total_bytes: int
    free_bytes: int
    bf16: bool


@dataclass
class Report:
    """Everything the doctor found; ``ok`` is False when no conversion can run on this machine."""

    dsocr: str
    python: str
    platform: str
    packages: dict[str, str | None]
    cuda_available: bool = False
    cuda_version: str | None = None
    gpus: list[Gpu] = field(default_factory=list)
    ram_total_bytes: int | None = None
    ram_available_bytes: int | None = None
    model: str = DEFAULT_MODEL
    """The model the figures below are for (``--model``, as given)."""
    family: str = DEFAULT_FAMILY.name
    """Its family (from its config.json when it is local or cached, else from its hub repo)."""
    device: str | None = None
    dtype: str | None = None
    dtype_reason: str | None = None
    """Why ``--dtype auto`` picks ``dtype`` here (on the CPU: whether it has AMX-BF16 or AVX512-BF16)."""
    weights_bytes: int | None = None
    """Memory the model family's official weights take on ``device`` in ``dtype`` (unquantized)."""
    nf4_weights_bytes: int | None = None
    quant: str | None = None
    """What ``--quant auto`` picks here for the model."""
    quant_reason: str | None = None
    """Why (``dsocr_cli.quant.explain_quant``)."""
    cache_dir: str = ""
    cache_free_bytes: int | None = None
    models: list[CachedModel] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)

    def add(self, severity: Severity, message: str) -> None:
        self.problems.append(Problem(severity, message))

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["models"] = [m.to_json() for m in self.models]
        data["ok"] = self.ok
        return data


def examine(model: str = DEFAULT_MODEL) -> Report:
    """Run every check for ``model`` (a hub repo, short name or local directory); never raises for what it finds."""
    report = Report(
        dsocr=__version__,
        python=platform.python_version(),
        platform=f"{platform.system()} {platform.machine()}",
        packages={name: installed_version(name) for name in PACKAGES},
        model=model,
    )
    for name, version in report.packages.items():
        if version is None:
            if name in OPTIONAL:
                report.add("warning", f"{name} is not installed ({OPTIONAL[name]})")
            else:
                report.add("error", f"{name} is missing: reinstall dsocr (pip install --force-reinstall dsocr-cli)")
    report.ram_total_bytes, report.ram_available_bytes = system_memory()
    examine_cache(report)
    family, directory = examine_model(report)
    examine_devices(report, family, directory)
    examine_environment(report)
    return report


def installed_version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def locate_model(reference: str, models: list[CachedModel]) -> Path | None:
    """The directory ``reference`` names: itself when it is a local directory, else its newest cached snapshot;
    None when it is not cached."""
    local = Path(reference).expanduser()
    if local.is_dir():
        return local
    repo = expand_model(reference).partition("@")[0]
    return next((m.revisions[0].path for m in models if m.repo == repo and m.revisions), None)


def examine_model(report: Report) -> tuple[ModelFamily, Path | None]:
    """``report.model``'s family and directory, without loading anything: a local or cached model by its
    config.json (``registry.family_for``); a model not downloaded yet by its hub repo (a family's official
    repo), else the default family's figures with a warning. An unsupported checkpoint is an error."""
    directory = locate_model(report.model, report.models)
    family = DEFAULT_FAMILY
    if directory is not None:
        try:
            family = family_for(directory)
        except DsocrError as exc:
            report.add("error", str(exc))
    else:
        repo = expand_model(report.model).partition("@")[0]
        known = next((f for f in FAMILIES if f.default_repo == repo), None)
        if known is None:
            report.add(
                "warning",
                f"{report.model} is not downloaded: its family is known once it is (figures below are "
                f"{DEFAULT_FAMILY.description}'s)",
            )
        family = known or DEFAULT_FAMILY
    report.family = family.name
    return family, directory


def examine_devices(report: Report, family: ModelFamily = DEFAULT_FAMILY, directory: Path | None = None) -> None:
    """CUDA and its GPUs, what ``--device/--dtype/--quant auto`` pick, and whether ``family``'s official
    weights fit in memory (``directory``: the model's local or cached copy, if any)."""
    try:
        import torch

        from dsocr_cli.devices import auto_dtype, resolve_device
    except (ImportError, OSError) as exc:
        report.add("error", f"dsocr's model stack cannot be imported ({exc}); reinstall dsocr and torch")
        return
    report.cuda_available = torch.cuda.is_available()
    report.cuda_version = torch.version.cuda
    if report.cuda_available:
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            try:
                free, total = torch.cuda.mem_get_info(index)
            except RuntimeError as exc:
                report.add("warning", f"GPU {index} ({props.name}): cannot read free memory ({exc})")
                free, total = 0, props.total_memory
            with torch.cuda.device(index):
                bf16 = torch.cuda.is_bf16_supported()
            report.gpus.append(Gpu(index, props.name, f"{props.major}.{props.minor}", total, free, bf16))
    device = resolve_device("auto")
    dtype, report.dtype_reason = auto_dtype(device)
    report.device, report.dtype = str(device), str(dtype).removeprefix("torch.")
    sizes = family.reference_sizes()
    bf16_bytes = sizes.bf16_weight_bytes
    overhead = (
        quant.kv_cache_bytes({"num_hidden_layers": sizes.num_hidden_layers, "hidden_size": sizes.hidden_size})
        + quant.ACTIVATION_HEADROOM
    )
    report.weights_bytes = bf16_bytes // BF16_BYTES * dtype.itemsize
    report.nf4_weights_bytes = math.ceil(bf16_bytes * quant.NF4_WEIGHT_FRACTION)
    cached = directory
    try:
        # What resolve_quant decides for the model, from dsocr's layout table instead of the
        # checkpoint's headers (the same figures for the official checkpoint): reading those would load the
        # model stack, which takes longer than everything else the doctor does.
        held = quant.quantized_kind(cached) if cached is not None else None
        if held is not None:
            report.quant = held
        else:
            if device.type == "cuda":
                free = report.gpus[device.index or 0].free_bytes
                report.quant, report.quant_reason = quant.explain_quant("auto", device, bf16_bytes + overhead, free)
            else:
                required, quantized = quant.cpu_requirements(bf16_bytes, overhead, dtype.itemsize)
                report.quant, report.quant_reason = quant.explain_quant(
                    "auto", device, required, report.ram_available_bytes, quantized
                )
    except DsocrError as exc:
        report.add("warning", f"cannot tell what --quant auto would pick ({exc})")
    check_memory(report, bf16_bytes, overhead)


def check_memory(report: Report, bf16_bytes: int, overhead: int) -> None:
    """Where the model fits: as chosen, only with nf4, only on the CPU, or nowhere (an error).

    ``overhead`` is what a page needs beside the weights (KV cache and activations, as ``--quant auto``
    counts them in dsocr_cli.quant).
    """
    assert report.weights_bytes is not None and report.nf4_weights_bytes is not None
    full = report.weights_bytes + overhead
    bf16 = bf16_bytes + overhead
    nf4 = report.nf4_weights_bytes + overhead
    ram = report.ram_available_bytes
    if report.gpus and report.device is not None and report.device.startswith("cuda"):
        gpu = report.gpus[0]
        if gpu.free_bytes >= full:
            return
        if gpu.free_bytes >= nf4:
            report.add(
                "warning",
                f"GPU {gpu.index} has {human_size(gpu.free_bytes)} free; {report.dtype} weights need about "
                f"{human_size(full)}: use --quant nf4",
            )
            return
        if ram is None or ram >= nf4:
            report.add(
                "warning",
                f"GPU {gpu.index} has {human_size(gpu.free_bytes)} free, too little even for nf4 "
                f"({human_size(nf4)}): use --device cpu",
            )
            return
        report.add(
            "error",
            f"not enough memory: GPU {gpu.index} has {human_size(gpu.free_bytes)} free and the system "
            f"{human_size(ram)} available; even --quant nf4 needs about {human_size(nf4)}",
        )
        return
    if ram is None or ram >= full:
        return
    if report.quant in quant.EXPERT_KINDS and ram >= (report.nf4_weights_bytes + overhead):
        report.add(
            "warning",
            f"{human_size(ram)} of memory available; {report.dtype} weights need about {human_size(full)}: "
            f"--quant auto uses {report.quant} (slower per token than unquantized weights on a CPU)",
        )
    elif report.dtype != "bfloat16" and ram >= bf16:
        report.add(
            "warning",
            f"{human_size(ram)} of memory available; {report.dtype} weights need about {human_size(full)}: "
            "use --dtype bfloat16 (or --quant nf4)",
        )
    elif ram >= nf4:
        report.add(
            "warning",
            f"{human_size(ram)} of memory available; unquantized weights need about {human_size(full)}: "
            "use --quant nf4",
        )
    else:
        report.add(
            "error", f"not enough memory: {human_size(ram)} available, even --quant nf4 needs about {human_size(nf4)}"
        )


def system_memory() -> tuple[int | None, int | None]:
    """(total, available) bytes of RAM, limited by the cgroup (container) memory limit where there is one."""
    total = available = None
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
        total = int(fields["MemTotal"].split()[0]) * 1024
        available = int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (AttributeError, OSError, ValueError):
            pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        if limit != "max":
            total = min(total or int(limit), int(limit))
            available = min(available if available is not None else int(limit), int(limit) - used)
    except (OSError, ValueError):
        pass
    return total, available


def examine_cache(report: Report) -> None:
    """Where models go, how much room is left, and which models are there."""
    report.cache_dir = str(hub_cache())
    report.cache_free_bytes = free_space(hub_cache())
    try:
        report.models = cached_models()
    except OSError as exc:
        report.add("warning", f"cannot read the model cache {hub_cache()} ({exc})")
    repo = expand_model(report.model).partition("@")[0]
    here = Path(report.model).expanduser().is_dir() or any(m.repo == repo and m.revisions for m in report.models)
    needed = official_size(next((f for f in FAMILIES if f.default_repo == repo), DEFAULT_FAMILY))
    if not here and report.cache_free_bytes < needed:
        report.add(
            "warning",
            f"{report.model} is not cached and needs {human_size(needed)}; {report.cache_dir} has "
            f"{human_size(report.cache_free_bytes)} free (set HF_HUB_CACHE to a bigger disk)",
        )
    if not report.models:
        command = "dsocr download" if report.model == DEFAULT_MODEL else f"dsocr download {report.model}"
        report.add("warning", f"no model in the cache yet: `{command}` fetches {expand_model(report.model)}")


def official_size(family: ModelFamily = DEFAULT_FAMILY) -> int:
    """Bytes of ``family``'s official checkpoint in bf16 (they dominate the download), from its layout table
    (``ModelFamily.reference_sizes``)."""
    return family.reference_sizes().bf16_weight_bytes


def examine_environment(report: Report) -> None:
    """The HF_* settings that decide where models come from; the token only as present or absent."""
    offline = constants.is_offline_mode()
    if os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN"):
        token = "set (HF_TOKEN)"
    elif Path(constants.HF_TOKEN_PATH).is_file():
        token = "set (stored login)"
    else:
        token = "not set"
    report.environment = {
        "HF_ENDPOINT": redact(constants.ENDPOINT),
        "HF_HOME": constants.HF_HOME,
        "HF_HUB_CACHE": constants.HF_HUB_CACHE,
        "HF_HUB_OFFLINE": "1" if offline else "0",
        "token": token,
    }
    if offline and not any(m.revisions for m in report.models):
        report.add("warning", "offline mode is on (HF_HUB_OFFLINE) and no model is cached: only --model DIR can work")
