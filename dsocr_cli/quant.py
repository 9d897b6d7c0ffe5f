"""``--quant auto|none|nf4|int8``: which weights to run, and dsocr's cache of quantized weights.

Choosing (``resolve_quant``):

- A pre-quantized bitsandbytes checkpoint (``quantization_config`` in config.json): ``auto`` = its own kind.
- CUDA: ``none`` (bf16/fp16 weights) when the GPU's free memory holds them, else ``nf4``. Needed for bf16:
  ``bf16 weight bytes + KV cache for KV_CONTEXT_TOKENS tokens + ACTIVATION_HEADROOM``, where the KV cache
  is ``layers x 2 (K, V) x hidden x 2 bytes`` per token (v1 uses plain multi-head attention) and the
  headroom covers SAM/CLIP activations of a tiled page, the CUDA context and allocator slack. For
  DeepSeek-OCR: 6.67 GB + 0.50 GB + 2 GiB = 9.3 GB, so 8 GB cards get nf4 and 12 GB cards bf16.
- CPU (and MPS): the fastest measured option, ``none``, whenever the unquantized weights in the compute
  dtype (``--dtype auto``: float32 or bfloat16 by the CPU's instructions, ``dsocr_cli.devices``) plus the KV
  cache and headroom fit the available RAM; otherwise the fastest quantized kind that fits, in
  ``CPU_QUANT_ORDER`` (int8 before nf4: faster per token below), sized as ``INT8_WEIGHT_FRACTION`` /
  ``NF4_WEIGHT_FRACTION`` of the bf16 weights; nf4 when nothing fits (loading then reports the shortage).
  ``benchmarks/quant_speed.py`` (results in
  ``benchmarks/quant_speed.json``; 2-core AMD EPYC with AVX2 and no AVX512, OMP_NUM_THREADS=1 because
  the machine was shared, best of 2 rounds x 2 runs, quantized options computing in float32):

  ========================  ==========  ==========  =========  ==========
  medium checkpoint         none fp32   none bf16   nf4        int8
  ========================  ==========  ==========  =========  ==========
  decode tokens/s           6.07        5.18        1.22       2.83
  prefill (tiny-mode page)  3.45 s      28.7 s      9.61 s     6.11 s
  ========================  ==========  ==========  =========  ==========

  "medium" is the official decoder width (64 experts of 896, top-6, official vocabulary) with 3 layers
  and a shallower vision tower, so its per-token cost has the real model's shape. A 500-token page there
  takes ~86 s unquantized in float32 against ~182 s int8 and ~420 s nf4. bitsandbytes has no fused
  low-bit CPU matmul without AVX512-BF16, so every quantized matmul first dequantizes its weights: on CPU
  nf4/int8 save memory, never time. (The tiny test checkpoint, whose decode is bound by its unquantized
  129k x 128 output head and per-call overhead, measured 15.4 / 38.0 / 18.6 / 15.5 tokens/s: differences
  within this shared machine's noise, not a ranking.)

Caching (``prepare_quantized``): the first quantization of a checkpoint loads it in bf16 on the CPU,
quantizes linears and experts (``dsocr_cli.models.quantize``, shared by both families) and saves the result as a self-contained
model directory under ``quantized_cache_root()``: config.json, tokenizer files, one safetensors file and
a manifest. It is keyed by the source (hub repo + commit for a hub snapshot, else the directory's path and
its files' sizes and mtimes), the kind, dsocr's version and the format version, so a changed checkpoint or
a new dsocr never reuses stale weights. Later runs load that directory directly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from dsocr_cli import __version__
from dsocr_cli.errors import ModelError, UsageError
from dsocr_cli.processes import process_exists

if TYPE_CHECKING:
    import torch
    from torch import nn

# This module is imported on every conversion, so it imports neither torch, transformers nor bitsandbytes at
# the top: bitsandbytes alone takes seconds and, on CPUs with AVX512-BF16, logs a notice when imported. The
# names below are the ones dsocr_cli.models.quantize and .quantized_experts define (a test keeps them equal);
# they are repeated here so that telling a quantized directory from a plain one costs no import.
MANIFEST_NAME = "dsocr-quantized.json"
"""Marks a directory as dsocr-quantized weights (``dsocr_cli.models.quantize.MANIFEST_NAME``)."""
WEIGHTS_NAME = "model-quantized.safetensors"
EXPERT_KINDS = ("nf4", "int8")
QUANT_CHOICES = ("auto", "none", *EXPERT_KINDS)
CPU_AUTO_QUANT = "none"
CPU_QUANT_ORDER = ("int8", "nf4")
"""Quantized kinds ``auto`` falls back to on a CPU short of memory, fastest first (decode 2.83 vs 1.22 tokens/s)."""
INT8_WEIGHT_FRACTION = 0.6
"""int8 weights against bf16: the routed experts and decoder linears (~80% of the weights) at one byte plus a
float32 scale per row, the vision tower, embeddings and output head kept in bf16."""
NF4_WEIGHT_FRACTION = 0.3
"""nf4 weights against bf16: 4.5 bits per quantized weight (28% of bf16) and the unquantized rest."""
"""Fastest on CPU by measurement (module docstring); also what MPS gets, bitsandbytes' MPS support being partial."""
KV_CONTEXT_TOKENS = 8192
"""v1's context length: the KV cache a single page can grow to. The model's ``max_position_embeddings``
(official config.json), not ``defaults.MAX_NEW_TOKENS``, the user's ``--max-tokens`` that happens to be equal."""
ACTIVATION_HEADROOM = 2 * 2**30
BITSANDBYTES_LOGGER = "bitsandbytes"
"""The root of bitsandbytes' loggers: every notice it prints while being imported is a record below it."""
BUILDING_PREFIX = ".building-"
"""Scratch folders of builds in progress: ``.building-<entry>@<host>-<pid>`` next to the cache entries."""
_BUILDING = re.compile(r"^\.building-(?P<entry>.+?)(?:@(?P<host>[^@/]+))?-(?P<pid>\d+)$")
PROCESS_STARTED = time.time()
"""When this process imported dsocr's quantization support: scratch folders touched later are never stale."""


class _Notices(logging.Handler):
    """Takes bitsandbytes' log records off stderr and hands their first line to ``notify``, if any."""

    def __init__(self, notify: Callable[[str], None] | None) -> None:
        super().__init__(logging.DEBUG)
        self.notify = notify

    def emit(self, record: logging.LogRecord) -> None:
        if self.notify is not None:
            try:
                message = record.getMessage()
            except Exception:  # a malformed record from a library must not break the import
                message = str(record.msg)
            self.notify(f"bitsandbytes: {message.strip().splitlines()[0] if message.strip() else record.levelname}")


@contextmanager
def bitsandbytes_notices(notify: Callable[[str], None] | None = None) -> Iterator[None]:
    """While the body runs, nothing bitsandbytes logs reaches stderr; each record's first line goes to ``notify``.

    bitsandbytes reports through ``logging`` (``bitsandbytes.*`` loggers, no handler of its own), so
    Python's last-resort handler prints its warnings on stderr. Importing it logs, for instance, "Failed to
    load CPU gemm_4bit_forward from kernels-community ..." on CPUs with AVX512-BF16 (its optional fused
    kernel package is not installed; it falls back to its own kernels) and a notice when it loads the
    library of a neighbouring CUDA version. Neither changes what dsocr computes, and a successful run
    with stderr redirected must print nothing, so the records are taken off stderr: a handler on the
    ``bitsandbytes`` logger that does not propagate to the root. bitsandbytes 0.50 writes nothing else at
    import (no print, no ``warnings``, no output from its native library), so nothing at the
    file-descriptor level needs silencing. A native library that fails to load is not lost: bitsandbytes
    raises its message when a quantized operation runs.
    """
    logger = logging.getLogger(BITSANDBYTES_LOGGER)
    handler = _Notices(notify)
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def quantization(notify: Callable[[str], None] | None = None) -> ModuleType:
    """The quantization code both families share (``dsocr_cli.models.quantize``: the decoder and its experts
    are the same network) and with it bitsandbytes, imported with bitsandbytes' notices kept off stderr
    (``bitsandbytes_notices``). Every use of bitsandbytes in dsocr goes through here, so only runs that
    quantize or load quantized weights ever import it."""
    with bitsandbytes_notices(notify):
        from dsocr_cli.models import quantize

        return quantize


def bitsandbytes_module(notify: Callable[[str], None] | None = None) -> ModuleType:
    """The bitsandbytes module, imported through ``quantization``."""
    quantization(notify)
    import bitsandbytes as bnb

    return bnb


def _read_config(directory: Path) -> dict[str, Any]:
    """``directory/config.json``, read without importing the model stack; its errors are the loader's."""
    try:
        return json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        from dsocr_cli.models.files import read_json  # raises the one-line ModelError worded there

        return read_json(directory / "config.json")


def quantized_cache_root() -> Path:
    """``$DSOCR_CACHE/quantized`` if set, else ``dsocr/quantized`` under the Hugging Face cache root (HF_HOME).

    Next to the downloaded models, so moving HF_HOME (e.g. off a small home directory) moves both.
    """
    base = os.environ.get("DSOCR_CACHE")
    if base:
        return Path(base).expanduser() / "quantized"
    from huggingface_hub import constants

    return Path(constants.HF_HOME) / "dsocr" / "quantized"


def quantized_kind(directory: Path) -> str | None:
    """``nf4``/``int8`` when ``directory`` already holds quantized weights: a dsocr cache entry or a
    bitsandbytes checkpoint from the hub (``quantization_config`` in config.json); None otherwise."""
    if (directory / MANIFEST_NAME).is_file():
        return quantization().read_manifest(directory)["quant"]
    config = _read_config(directory).get("quantization_config")
    if not config:
        return None
    if config.get("quant_method") != "bitsandbytes":
        raise ModelError(
            f"{directory}: quantized with {config.get('quant_method')!r}; dsocr loads bitsandbytes (nf4/int8) only"
        )
    return "int8" if config.get("load_in_8bit") or config.get("_load_in_8bit") else "nf4"


def bf16_weight_bytes(directory: Path) -> int:
    """Bytes the checkpoint's weights take in bf16, from the safetensors headers (nothing is read)."""
    from safetensors import safe_open

    from dsocr_cli.models.files import weight_files

    total = 0
    for file in weight_files(directory):
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():
                count = 1
                for size in handle.get_slice(name).get_shape():
                    count *= size
                total += 2 * count
    return total


def kv_cache_bytes(official: dict) -> int:
    """bf16 K and V of every decoder layer for ``KV_CONTEXT_TOKENS`` tokens (official or transformers-converted config)."""
    language = official.get("language_config") or official.get("text_config") or official
    return language["num_hidden_layers"] * 2 * language["hidden_size"] * 2 * KV_CONTEXT_TOKENS


def bf16_requirement(directory: Path) -> int:
    """Free GPU bytes ``auto`` wants before choosing unquantized weights (module docstring)."""
    return bf16_weight_bytes(directory) + kv_cache_bytes(_read_config(directory)) + ACTIVATION_HEADROOM


def choose_quant(
    requested: str,
    device: torch.device,
    required_bytes: int,
    free_bytes: int | None,
    quantized_bytes: dict[str, int] | None = None,
) -> str:
    """The rule behind ``resolve_quant``, free of I/O so it can be checked with any memory figures."""
    return explain_quant(requested, device, required_bytes, free_bytes, quantized_bytes)[0]


def explain_quant(
    requested: str,
    device: torch.device,
    required_bytes: int,
    free_bytes: int | None,
    quantized_bytes: dict[str, int] | None = None,
) -> tuple[str, str]:
    """``choose_quant``'s kind and why (for ``dsocr doctor``): ``required_bytes`` for unquantized weights,
    ``free_bytes`` free GPU memory or available RAM (None: unknown), ``quantized_bytes`` what each quantized kind
    needs (CPU fallback, module docstring)."""
    if requested not in QUANT_CHOICES:
        raise UsageError(f"unknown --quant {requested!r} (choose from {', '.join(QUANT_CHOICES)})")
    if requested != "auto":
        return requested, "chosen with --quant"
    if free_bytes is None:
        return CPU_AUTO_QUANT, "free memory unknown: unquantized weights (the fastest on CPUs)"
    where = "free on the GPU" if device.type == "cuda" else "of RAM available"
    have = f"{free_bytes / 1e9:.1f} GB {where}"
    if free_bytes >= required_bytes:
        return "none", f"{have}, unquantized weights need {required_bytes / 1e9:.1f} GB"
    if device.type == "cuda":
        return "nf4", f"{have}, less than the {required_bytes / 1e9:.1f} GB unquantized weights need"
    for kind in CPU_QUANT_ORDER:
        need = (quantized_bytes or {}).get(kind)
        if need is not None and free_bytes >= need:
            return kind, (
                f"{have}, less than the {required_bytes / 1e9:.1f} GB unquantized weights need; {kind} "
                f"({need / 1e9:.1f} GB) is the fastest quantized kind that fits"
            )
    return "nf4", f"{have}: too little even for nf4, the smallest weights"


def cpu_requirements(bf16_bytes: int, overhead: int, dtype_bytes: int) -> tuple[int, dict[str, int]]:
    """Bytes unquantized weights in a ``dtype_bytes`` compute dtype need on a CPU, and each quantized kind."""
    quantized = {
        "int8": int(bf16_bytes * INT8_WEIGHT_FRACTION) + overhead,
        "nf4": int(bf16_bytes * NF4_WEIGHT_FRACTION) + overhead,
    }
    return bf16_bytes // 2 * dtype_bytes + overhead, quantized


def resolve_quant(requested: str, device: torch.device, directory: Path, dtype: torch.dtype | None = None) -> str:
    """``auto`` made concrete for this checkpoint on this device (CPU: for weights in ``dtype``, default
    float32); explicit choices are checked and kept."""
    own = quantized_kind(directory)
    if own is not None:
        if requested == "none":
            raise UsageError(f"{directory}: holds {own}-quantized weights, which cannot run with --quant none")
        return own if requested == "auto" else choose_quant(requested, device, 0, None)
    if requested != "auto":
        return choose_quant(requested, device, 0, None)
    try:
        weights = bf16_weight_bytes(directory)
        overhead = kv_cache_bytes(_read_config(directory)) + ACTIVATION_HEADROOM
    except Exception:  # unreadable headers or config: no sizes to choose by; loading names the damaged file
        return choose_quant(requested, device, 0, None)
    if device.type == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info(device)
        return choose_quant(requested, device, weights + overhead, free)
    import psutil

    itemsize = dtype.itemsize if dtype is not None else 4
    required, quantized = cpu_requirements(weights, overhead, itemsize)
    return choose_quant(requested, device, required, psutil.virtual_memory().available, quantized)


def source_identity(directory: Path) -> dict[str, str]:
    """What a cache entry is keyed on: repo + commit for a hub snapshot, else path + file sizes and mtimes."""
    directory = directory.resolve()
    repo_dir = directory.parent.parent
    if directory.parent.name == "snapshots" and repo_dir.name.startswith("models--"):
        repo = repo_dir.name.removeprefix("models--").replace("--", "/")
        return {"repo": repo, "revision": directory.name}
    from dsocr_cli.models.files import weight_files

    files = [directory / "config.json", directory / "tokenizer.json", *weight_files(directory)]
    stamps = [f"{file.name}:{file.stat().st_size}:{file.stat().st_mtime_ns}" for file in files]
    return {"path": str(directory), "files": hashlib.sha256("\n".join(stamps).encode()).hexdigest()}


def cache_entry(directory: Path, quant: str) -> Path:
    """Where the ``quant`` variant of ``directory`` lives in the cache (whether or not it exists yet)."""
    identity = source_identity(Path(directory))
    key = json.dumps(
        {"source": identity, "quant": quant, "dsocr": __version__, "format": quantization().FORMAT_VERSION},
        sort_keys=True,
    )
    label = identity["repo"].replace("/", "--") if "repo" in identity else Path(identity["path"]).name
    return quantized_cache_root() / f"{label}--{hashlib.sha256(key.encode()).hexdigest()[:16]}--{quant}"


def find_quantized(directory: Path, quant: str) -> Path | None:
    """The complete cache entry for ``directory`` and ``quant``, if one was built before."""
    entry = cache_entry(directory, quant)
    return entry if (entry / MANIFEST_NAME).is_file() and (entry / WEIGHTS_NAME).is_file() else None


def scratch_name(entry: Path) -> str:
    """The scratch folder this process builds ``entry`` in: it names the host and process that own it."""
    return f"{BUILDING_PREFIX}{entry.name}@{socket.gethostname()}-{os.getpid()}"


def remove_stale_builds(root: Path) -> list[Path]:
    """Delete the scratch folders under ``root`` that builds killed before their cleanup left (SIGKILL, power loss).

    A folder is stale when its owner process is gone and it was last modified before this process
    started. Only folders of this host are judged (a cache on a shared disk may hold another machine's
    build in progress, whose process id means nothing here); folders named without a host, as dsocr 0.1
    named them, count as this host's. Returns what was removed.
    """
    try:
        candidates = [path for path in root.iterdir() if path.name.startswith(BUILDING_PREFIX)]
    except OSError:
        return []
    host = socket.gethostname()
    removed = []
    for path in candidates:
        match = _BUILDING.match(path.name)
        if match is None or (match["host"] is not None and match["host"] != host):
            continue
        pid = int(match["pid"])
        try:
            touched = path.stat().st_mtime
        except OSError:
            continue
        if pid == os.getpid() or process_exists(pid) or touched >= PROCESS_STARTED:
            continue
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            removed.append(path)
    return removed


def prepare_quantized(
    directory: Path, quant: str, device: torch.device | None = None, notify: Callable[[str], None] | None = None
) -> Path:
    """The cached ``quant`` variant of checkpoint ``directory``, building it on the first call.

    Building loads the checkpoint in bf16 on the CPU and quantizes on ``device`` (default: the first CUDA
    GPU if any, else the CPU); ``notify`` hears about it first, since it takes minutes for the full model,
    and hears bitsandbytes' import notices (``bitsandbytes_notices``). A pre-quantized hub checkpoint is
    first unpacked to bf16 in a scratch directory next to the cache. The entry appears atomically (renamed
    into place when complete). Scratch folders that killed builds left behind are removed first
    (``remove_stale_builds``).
    """
    directory = Path(directory)
    if quant not in EXPERT_KINDS:
        raise UsageError(f"cannot prepare --quant {quant!r} weights (choose from {', '.join(EXPERT_KINDS)})")
    quantize = quantization(notify)
    if (directory / MANIFEST_NAME).is_file():  # already a cache entry, e.g. passed as --model
        held = quantize.read_manifest(directory)["quant"]
        if held != quant:
            raise UsageError(f"{directory}: holds {held} weights, not {quant}")
        return directory
    remove_stale_builds(quantized_cache_root())
    found = find_quantized(directory, quant)
    if found is not None:
        return found
    import torch

    from dsocr_cli.models.registry import family_for

    family = family_for(directory)
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    entry = cache_entry(directory, quant)
    if notify is not None:
        notify(f"quantizing {directory} to {quant} on {device} (once; cached in {entry})")
    scratch = entry.with_name(scratch_name(entry))
    shutil.rmtree(scratch, ignore_errors=True)
    started = time.perf_counter()
    try:
        scratch.mkdir(parents=True)
        source = directory
        if quantized_kind(directory) is not None:
            source = quantize.write_dequantized(directory, scratch / "bf16")
        runner = family.load(source, torch.device("cpu"), torch.bfloat16)
        state = quantize.quantized_state(runner.model, quant, device)
        del runner
        save_quantized(state, scratch / "entry", quant, source, directory, started)
        try:
            os.replace(scratch / "entry", entry)
        except OSError:
            if find_quantized(directory, quant) is None:  # not a concurrent build that finished first
                raise
    except OSError as exc:
        raise ModelError(f"{entry}: cannot write the quantized cache ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return entry


def save_quantized(
    state: dict[str, torch.Tensor], destination: Path, quant: str, files_from: Path, source: Path, started: float
) -> None:
    """Weights, config/tokenizer files and the manifest that marks the entry complete (written last)."""
    from safetensors.torch import save_file

    quantize = quantization()
    destination.mkdir()
    save_file(state, str(destination / WEIGHTS_NAME), metadata={"format": "pt", "dsocr_quant": quant})
    quantize.copy_model_files(files_from, destination)
    manifest = {
        "format": quantize.FORMAT_VERSION,
        "quant": quant,
        "dsocr": __version__,
        "bitsandbytes": bitsandbytes_module().__version__,
        "source": {**source_identity(source), "directory": str(source)},
        "weights": WEIGHTS_NAME,
        "weights_bytes": (destination / WEIGHTS_NAME).stat().st_size,
        "build_seconds": round(time.perf_counter() - started, 2),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (destination / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1), encoding="utf-8")


def quantized_entries() -> list[tuple[Path, dict]]:
    """Every complete cache entry with its manifest, for listing (``dsocr models``, ``dsocr doctor``)."""
    root = quantized_cache_root()
    if not root.is_dir():
        return []
    entries = []
    for entry in sorted(root.iterdir()):
        manifest = entry / MANIFEST_NAME
        if not entry.name.startswith(".") and manifest.is_file():
            entries.append((entry, json.loads(manifest.read_text(encoding="utf-8"))))
    return entries


@dataclass
class WeightBytes:
    """Weights of one category: how many, and the bytes they take as stored (quantization scales included)."""

    weights: int = 0
    stored_bytes: int = 0
    quantized_weights: int = 0

    @property
    def bf16_bytes(self) -> int:
        return 2 * self.weights


@dataclass
class WeightMemory:
    """Weight bytes per category: ``experts`` (routed), ``linear`` (quantization targets), ``kept``
    (linears deliberately left unquantized: lm_head) and ``other`` (embeddings, norms, convs, biases)."""

    categories: dict[str, WeightBytes] = field(
        default_factory=lambda: {name: WeightBytes() for name in ("experts", "linear", "kept", "other")}
    )

    def ratio_to_bf16(self, *names: str) -> float:
        """Stored bytes of ``names`` over what the same weights take in bf16."""
        chosen = [self.categories[name] for name in names]
        return sum(c.stored_bytes for c in chosen) / sum(c.bf16_bytes for c in chosen)

    def table(self) -> str:
        rows = [f"{'category':<8} {'weights':>13} {'stored bytes':>14} {'bf16 bytes':>14} {'quantized':>13}"]
        for name, c in self.categories.items():
            rows.append(
                f"{name:<8} {c.weights:>13,} {c.stored_bytes:>14,} {c.bf16_bytes:>14,} {c.quantized_weights:>13,}"
            )
        return "\n".join(rows)


def tensor_bytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def linear_bytes(module: nn.Linear) -> tuple[int, int]:
    """(stored bytes, quantized weights) of a linear's weight, bitsandbytes scales included."""
    bnb = bitsandbytes_module()
    weight = module.weight
    if isinstance(module, bnb.nn.Linear4bit):
        scales = module.weight.quant_state.as_dict(packed=True).values()
        return tensor_bytes(weight) + sum(tensor_bytes(t) for t in scales), module.in_features * module.out_features
    if isinstance(module, bnb.nn.Linear8bitLt):
        row_absmax = weight.SCB if weight.SCB is not None else module.state.SCB
        return tensor_bytes(weight) + tensor_bytes(row_absmax), weight.numel()
    return tensor_bytes(weight), 0


def weight_memory(model: nn.Module) -> WeightMemory:
    """Measure the bytes a loaded model's weights take, per category (``WeightMemory``)."""
    from torch import nn

    quantize = quantization()
    keep, quantized_experts, experts = quantize.KEEP_FULL_PRECISION, quantize.QuantizedExperts, quantize.EXPERT_CLASSES
    memory = WeightMemory()
    counted: set[int] = set()
    for name, module in model.named_modules():
        if isinstance(module, quantized_experts):
            tensors = list(module.buffers())
            stored, weights, quantized = sum(tensor_bytes(t) for t in tensors), module.num_weights, module.num_weights
            category = "experts"
        elif isinstance(module, experts):
            tensors = [module.gate_up_proj, module.down_proj]
            stored, weights, quantized = sum(tensor_bytes(t) for t in tensors), sum(t.numel() for t in tensors), 0
            category = "experts"
        elif isinstance(module, nn.Linear):
            tensors = [module.weight]
            stored, quantized = linear_bytes(module)
            weights = module.in_features * module.out_features
            category = "kept" if name in keep else "linear"
        else:
            continue
        entry = memory.categories[category]
        entry.weights += weights
        entry.stored_bytes += stored
        entry.quantized_weights += quantized
        counted.update(id(t) for t in tensors)
    other = memory.categories["other"]
    for tensor in (*model.parameters(), *model.buffers()):
        if id(tensor) not in counted:
            other.weights += tensor.numel()
            other.stored_bytes += tensor_bytes(tensor)
    return memory
