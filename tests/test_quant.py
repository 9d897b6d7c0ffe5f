"""Quantized weights: experts numerics, nf4/int8 on CPU, memory, greedy agreement, the cache, auto choice."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import bitsandbytes as bnb
import pytest
import torch
from rich.console import Console
from safetensors.torch import load_file, save_file
from transformers import UnlimitedOcrTextConfig
from transformers.models.unlimited_ocr.modeling_unlimited_ocr import (
    UnlimitedOcrTextExperts,
)

from dsocr_cli.engine.factory import local_backend
from dsocr_cli.errors import ModelError, UsageError
from dsocr_cli.models.quantize import (
    MANIFEST_NAME,
    WEIGHTS_NAME,
    dequantize_serialized,
    quantize_linear,
    serialized_groups,
)
from dsocr_cli.models.quantized_experts import QuantizedExperts
from dsocr_cli.models.registry import load_runner
from dsocr_cli.models.v1.layout import CheckpointSpec, tensor_shapes
from dsocr_cli.models.v1.preprocess import MODES
from dsocr_cli.models.v1.prompts import resolve_prompt
from dsocr_cli.models.v1.runner import V1Request, V1Runner
from dsocr_cli.progress import Reporter
from dsocr_cli.quant import (
    ACTIVATION_HEADROOM,
    bf16_requirement,
    bf16_weight_bytes,
    cache_entry,
    choose_quant,
    cpu_requirements,
    explain_quant,
    find_quantized,
    kv_cache_bytes,
    prepare_quantized,
    quantized_entries,
    quantized_kind,
    resolve_quant,
    source_identity,
    weight_memory,
)
from dsocr_cli.testing.checkpoint import OFFICIAL_DIR, SHARD_NAME, write_checkpoint
from dsocr_cli.testing.images import make_page_image
from dsocr_cli.testing.prequantized import serialized, write_prequantized

KINDS = ("nf4", "int8")
CPU = torch.device("cpu")
STEPS = 12
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def quant_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private DSOCR_CACHE for this module, so no test touches the user's cache."""
    root = tmp_path_factory.mktemp("dsocr-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DSOCR_CACHE", str(root))
        yield root


@pytest.fixture(scope="module")
def built(quant_cache: Path, tiny_checkpoint: Path) -> dict[str, tuple[Path, float]]:
    """Each kind's cache entry for the tiny checkpoint, built once, with its build time."""
    entries = {}
    for kind in KINDS:
        started = time.perf_counter()
        entries[kind] = (prepare_quantized(tiny_checkpoint, kind, CPU), time.perf_counter() - started)
    return entries


@pytest.fixture(scope="module")
def quantized(built: dict[str, tuple[Path, float]]) -> dict[str, V1Runner]:
    return {kind: load_runner(entry, CPU, torch.float32) for kind, (entry, _) in built.items()}


@pytest.fixture(scope="module")
def page_request(tiny_runner: V1Runner) -> V1Request:
    return tiny_runner.prepare(make_page_image(600, 500, seed=3), MODES["tiny"], resolve_prompt("free"))


def random_experts(hidden: int = 256, intermediate: int = 128, experts: int = 8) -> UnlimitedOcrTextExperts:
    config = UnlimitedOcrTextConfig(
        hidden_size=hidden,
        num_attention_heads=2,
        moe_intermediate_size=intermediate,
        n_routed_experts=experts,
        hidden_act="silu",
    )
    module = UnlimitedOcrTextExperts(config)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        module.gate_up_proj.copy_(torch.randn(module.gate_up_proj.shape, generator=generator) / hidden**0.5)
        module.down_proj.copy_(torch.randn(module.down_proj.shape, generator=generator) / intermediate**0.5)
    return module.to(torch.bfloat16).requires_grad_(False)


@pytest.mark.parametrize("kind", KINDS)
def test_quantized_experts_match_bf16_and_compute_only_routed_experts(kind: str, monkeypatch) -> None:
    reference = random_experts()
    generator = torch.Generator().manual_seed(1)
    hidden = torch.randn(24, 256, generator=generator).to(torch.bfloat16)
    top_k_index = torch.stack([torch.randperm(8, generator=generator)[:3] for _ in range(24)])
    top_k_index[:, 0] = top_k_index[:, 0] % 4  # skew the routing so that some experts get no token
    top_k_index[top_k_index == 7] = 6
    top_k_weights = torch.softmax(torch.randn(24, 3, generator=generator), dim=-1)
    expected = reference(hidden, top_k_index, top_k_weights).float()
    experts = QuantizedExperts.quantize(reference, kind, CPU)
    computed: list[int] = []
    original = QuantizedExperts.dequantized
    monkeypatch.setattr(
        QuantizedExperts,
        "dequantized",
        lambda self, name, expert, dtype: computed.append(expert) or original(self, name, expert, dtype),
    )
    got = experts(hidden, top_k_index, top_k_weights).float()
    error = ((got - expected).norm() / expected.norm()).item()
    print(f"\n{kind} experts vs bf16 on random inputs: relative error {error:.4f}")
    assert got.shape == expected.shape and got.dtype == torch.float32
    assert error < (0.25 if kind == "nf4" else 0.03)
    routed = set(top_k_index.unique().tolist())
    assert 7 not in routed and set(computed) == routed  # each routed expert dequantized, nothing else
    assert len(computed) == 2 * len(routed)  # once per projection


@pytest.fixture(scope="module")
def reference_tokens(tiny_runner: V1Runner, page_request: V1Request) -> list[int]:
    """Greedy tokens of the unquantized model (the bf16 checkpoint's weights, float32 compute)."""
    return tiny_runner.generate(page_request, max_new_tokens=STEPS, ngram_size=0).token_ids


@torch.inference_mode()
def teacher_forced(runner: V1Runner, request: V1Request, tokens: list[int]) -> torch.Tensor:
    """Next-token logits at each of ``tokens``' positions, feeding the reference continuation."""
    inputs = runner.model_inputs(V1Request(input_ids=request.input_ids + tokens, image=request.image))
    start = len(request.input_ids) - 1
    return runner.loaded.model(**inputs).logits[0, start : start + len(tokens)].float()


@pytest.mark.parametrize("kind", KINDS)
def test_quantized_model_generates_on_cpu_with_measured_memory_and_agreement(
    kind: str,
    quantized: dict[str, V1Runner],
    tiny_runner: V1Runner,
    page_request: V1Request,
    reference_tokens: list[int],
) -> None:
    runner = quantized[kind]
    layers = runner.loaded.model.model.language_model.layers
    assert isinstance(layers[1].mlp.experts, QuantizedExperts) and layers[1].mlp.experts.kind == kind
    linear = bnb.nn.Linear4bit if kind == "nf4" else bnb.nn.Linear8bitLt
    assert isinstance(layers[0].self_attn.q_proj, linear) and isinstance(layers[1].mlp.shared_experts.up_proj, linear)
    generated = runner.generate(page_request, max_new_tokens=STEPS, ngram_size=0).token_ids
    assert len(generated) == STEPS and runner.decode(generated)

    full, memory = weight_memory(tiny_runner.loaded.model), weight_memory(runner.loaded.model)
    ratio = memory.ratio_to_bf16("linear", "experts")
    print(f"\nunquantized weights (float32 in memory):\n{full.table()}\n{kind} weights:\n{memory.table()}")
    print(f"{kind}: linear+expert weights take {ratio:.1%} of their bf16 bytes "
          f"(experts alone {memory.ratio_to_bf16('experts'):.1%})")
    experts = memory.categories["experts"]
    assert experts.weights == full.categories["experts"].weights == experts.quantized_weights
    assert memory.categories["kept"].stored_bytes == full.categories["kept"].stored_bytes  # lm_head untouched
    if kind == "nf4":
        assert ratio <= 0.30
        assert memory.categories["linear"].quantized_weights == memory.categories["linear"].weights
    else:
        assert memory.ratio_to_bf16("experts") <= 0.55
        assert 0 < memory.categories["linear"].quantized_weights < memory.categories["linear"].weights  # SAM/CLIP kept

    same = sum(a == b for a, b in zip(reference_tokens, generated)) / STEPS
    expected = teacher_forced(tiny_runner, page_request, reference_tokens)
    got = teacher_forced(runner, page_request, reference_tokens)
    top1 = (expected.argmax(-1) == got.argmax(-1)).float().mean().item()
    cosine = torch.nn.functional.cosine_similarity(expected, got, dim=-1).mean().item()
    print(f"{kind} vs unquantized over {STEPS} greedy steps: identical tokens {same:.0%} free-running, "
          f"top-1 agreement {top1:.0%} teacher-forced, mean logit cosine {cosine:.3f}")
    # The tiny random model has near-tied logits and amplifies quantization noise (stock transformers nf4 of
    # its linears alone flips the first token too), so only a floor that catches broken weights is asserted.
    assert cosine > (0.9 if kind == "nf4" else 0.99)


def test_second_run_loads_from_the_cache(built: dict[str, tuple[Path, float]], tiny_checkpoint: Path) -> None:
    entry, build_s = built["nf4"]
    stamp = (entry / WEIGHTS_NAME).stat().st_mtime_ns
    manifest = json.loads((entry / MANIFEST_NAME).read_text())
    assert manifest["quant"] == "nf4" and manifest["source"]["path"] == str(tiny_checkpoint.resolve())
    assert find_quantized(tiny_checkpoint, "nf4") == entry  # cache hit before the second run
    started = time.perf_counter()
    again = prepare_quantized(tiny_checkpoint, "nf4", CPU)
    load_runner(again, CPU, torch.float32)
    second_s = time.perf_counter() - started
    started = time.perf_counter()
    load_runner(entry, CPU, torch.float32)
    load_s = time.perf_counter() - started
    first_s = build_s + load_s
    print(f"\nnf4 first run {first_s:.2f} s (quantize + save {build_s:.2f} s, then load), second run {second_s:.2f} s: "
          f"{first_s / second_s:.1f}x faster from the cache")
    assert again == entry and (entry / WEIGHTS_NAME).stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert {entry, built["int8"][0]} <= {path for path, _ in quantized_entries()}


def test_convert_backend_quantizes_through_the_cache(
    built: dict[str, tuple[Path, float]], tiny_checkpoint: Path
) -> None:
    output = io.StringIO()
    reporter = Reporter(console=Console(file=output, width=400), verbose=True)
    backend = local_backend(str(tiny_checkpoint), "cpu", "float32", "int8", offline=True, reporter=reporter)
    assert backend.runner.loaded.source == built["int8"][0]
    assert isinstance(backend.runner.loaded.model.model.language_model.layers[2].mlp.experts, QuantizedExperts)
    assert "quant int8" in output.getvalue() and "quantizing" not in output.getvalue()  # the cache, no rebuild
    assert output.getvalue().startswith(f"loading model {tiny_checkpoint} ...\n")  # said before the wait


def test_model_loading_display_makes_room_for_the_download_bar() -> None:
    from rich.file_proxy import FileProxy

    from dsocr_cli.engine.factory import ModelLoading
    from dsocr_cli.progress import DownloadBar

    terminal = Console(file=io.StringIO(), force_terminal=True, width=100)
    reporter = Reporter(console=terminal)
    bar = DownloadBar("downloading m", console=terminal)

    def spinning() -> bool:  # a live display owns the terminal (it redirects stderr while it runs)
        return isinstance(sys.stderr, FileProxy)

    with ModelLoading(reporter, "loading model m ...", bar) as loading:
        assert spinning() and bar.progress is None
        loading.start(total=100, completed=10)  # a download begins: the spinner goes, the bar draws
        assert bar.progress is not None
        loading.advance(90)
        loading.stop()
        assert bar.progress is None and spinning()  # the spinner is back for the rest of the loading
    assert not spinning()
    assert "loading model m" in terminal.file.getvalue() and "downloading m" in terminal.file.getvalue()


def test_corrupt_cache_entry_is_a_one_line_error(built: dict[str, tuple[Path, float]], tmp_path: Path) -> None:
    entry, copy = built["nf4"][0], tmp_path / "entry"
    shutil.copytree(entry, copy, ignore=shutil.ignore_patterns(WEIGHTS_NAME))
    with (entry / WEIGHTS_NAME).open("rb") as weights:
        (copy / WEIGHTS_NAME).write_bytes(weights.read(4096))
    with pytest.raises(ModelError, match="delete .* to rebuild"):
        load_runner(copy, CPU, torch.float32)


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny with one CLIP layer and two decoder layers: the pre-quantized test quantizes every linear twice."""
    spec = replace(
        CheckpointSpec.tiny(), clip_layers=1, num_hidden_layers=2, sam_layers=2, sam_global_attn_indexes=(1,)
    )
    return write_checkpoint(tmp_path_factory.mktemp("small") / "small", spec, seed=1)


def test_prequantized_hub_checkpoint_is_repacked_and_loads(
    small_checkpoint: Path, quant_cache: Path, tmp_path: Path
) -> None:
    hub = write_prequantized(small_checkpoint, tmp_path / "hub", "nf4")
    assert quantized_kind(hub) == "nf4" and resolve_quant("auto", CPU, hub) == "nf4"
    with pytest.raises(UsageError, match="cannot run with --quant none"):
        resolve_quant("none", CPU, hub)
    with pytest.raises(ModelError, match="pre-quantized"):
        load_runner(hub, CPU, torch.float32)
    runner = load_runner(prepare_quantized(hub, "nf4", CPU), CPU, torch.float32)
    request = runner.prepare(make_page_image(400, 300, seed=2), MODES["tiny"], resolve_prompt("free"))
    assert len(runner.generate(request, max_new_tokens=2, ngram_size=0).token_ids) == 2
    # The repacked experts hold the hub's own quantized values (block scales rounded once to bf16).
    saved = load_file(str(hub / SHARD_NAME))
    experts = runner.loaded.model.model.language_model.layers[1].mlp.experts
    for expert in (0, 5):
        names = [f"model.layers.1.mlp.experts.{expert}.{proj}.weight" for proj in ("gate_proj", "up_proj")]
        groups = serialized_groups(sorted(saved))
        hub_matrix = torch.cat([dequantize_serialized(n, {k: saved[k] for k in groups[n]}) for n in names]).float()
        mine, _ = experts.dequantized("gate_up_proj", expert, torch.float32)
        assert torch.allclose(mine, hub_matrix, rtol=2**-7, atol=1e-6)


def test_int8_hub_serialization_is_read_back() -> None:
    weight = (torch.randn(64, 128, generator=torch.Generator().manual_seed(4)) / 8).to(torch.bfloat16)
    saved = {f"model.layers.0.mlp.down_proj.{key}": value for key, value in serialized(weight, "int8").items()}
    saved["model.norm.weight"] = torch.ones(128)
    groups = serialized_groups(sorted(saved))
    base = "model.layers.0.mlp.down_proj.weight"
    assert groups == {base: sorted(k for k in saved if "down_proj" in k), "model.norm.weight": ["model.norm.weight"]}
    restored = dequantize_serialized(base, {key: saved[key] for key in groups[base]})
    row_absmax = weight.float().abs().amax(dim=1, keepdim=True)
    assert ((restored.float() - weight.float()).abs() <= row_absmax / 127).all()
    assert torch.equal(quantize_linear(restored, "int8")["weight"], saved[base])  # requantizing keeps the codes


def test_auto_quant_choice() -> None:
    gpu = torch.device("cuda")
    assert choose_quant("auto", CPU, 10 * 2**30, None) == "none"  # CPU: unquantized is the fastest measured
    assert choose_quant("auto", torch.device("mps"), 10 * 2**30, None) == "none"
    assert choose_quant("auto", gpu, 10 * 2**30, free_bytes=12 * 2**30) == "none"
    assert choose_quant("auto", gpu, 10 * 2**30, free_bytes=10 * 2**30 - 1) == "nf4"
    for explicit in ("none", "nf4", "int8"):
        assert choose_quant(explicit, gpu, 10 * 2**30, free_bytes=0) == explicit
    with pytest.raises(UsageError, match="unknown --quant"):
        choose_quant("fp8", CPU, 0, None)


def test_auto_quant_on_a_gpu_compares_free_memory_with_the_bf16_requirement(tiny_checkpoint: Path, monkeypatch) -> None:
    weights = 2 * sum(torch.Size(shape).numel() for _, shape in tensor_shapes(CheckpointSpec.tiny()))
    assert bf16_weight_bytes(tiny_checkpoint) == weights
    official = json.loads((OFFICIAL_DIR / "config.json").read_text())
    assert kv_cache_bytes(official) == 12 * 2 * 1280 * 2 * 8192
    required = bf16_requirement(tiny_checkpoint)
    kv = kv_cache_bytes(json.loads((tiny_checkpoint / "config.json").read_text()))
    assert required == weights + kv + ACTIVATION_HEADROOM
    for free, expected in ((required, "none"), (required - 1, "nf4")):
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None, free=free: (free, 80 * 2**30))
        assert resolve_quant("auto", torch.device("cuda"), tiny_checkpoint) == expected
    assert resolve_quant("auto", CPU, tiny_checkpoint) == "none"


def test_cache_entry_follows_the_source(tmp_path: Path, quant_cache: Path) -> None:
    snapshot = tmp_path / "hub" / "models--deepseek-ai--DeepSeek-OCR" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    assert source_identity(snapshot) == {"repo": "deepseek-ai/DeepSeek-OCR", "revision": "0123abcd"}
    assert cache_entry(snapshot, "nf4").name.startswith("deepseek-ai--DeepSeek-OCR--")
    assert cache_entry(snapshot, "nf4") != cache_entry(snapshot, "int8")
    assert cache_entry(snapshot, "nf4").parent == quant_cache / "quantized"
    local = tmp_path / "local"
    local.mkdir()
    for name in ("config.json", "tokenizer.json"):
        (local / name).write_text("{}")
    save_file({"w": torch.zeros(2)}, str(local / "model.safetensors"))
    before = cache_entry(local, "nf4")
    weights = local / "model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    assert cache_entry(local, "nf4") != before  # re-written weights are never served from a stale entry


@pytest.mark.cuda
@needs_cuda
def test_bf16_generation_on_cuda(tiny_checkpoint: Path, page_request: V1Request) -> None:
    runner = load_runner(tiny_checkpoint, torch.device("cuda"), torch.bfloat16)
    assert runner.loaded.device.type == "cuda"
    assert len(runner.generate(page_request, max_new_tokens=8, ngram_size=0).token_ids) == 8


@pytest.mark.cuda
@needs_cuda
def test_nf4_on_cuda(tiny_checkpoint: Path, quant_cache: Path, page_request: V1Request) -> None:
    gpu = torch.device("cuda")
    runner = load_runner(prepare_quantized(tiny_checkpoint, "nf4", gpu), gpu, torch.bfloat16)
    experts = runner.loaded.model.model.language_model.layers[1].mlp.experts
    assert isinstance(experts, QuantizedExperts) and experts.gate_up_proj.device.type == "cuda"
    assert len(runner.generate(page_request, max_new_tokens=8, ngram_size=0).token_ids) == 8
    memory = weight_memory(runner.loaded.model)
    allocated = torch.cuda.memory_allocated(gpu)
    print(f"\nnf4 on {torch.cuda.get_device_name(gpu)}:\n{memory.table()}\nallocated {allocated:,} bytes")
    assert memory.ratio_to_bf16("linear", "experts") <= 0.30


# ---------------------------------------------------------------- bitsandbytes stays quiet, stale builds go

NOTICE = "Failed to load CPU gemm_4bit_forward from kernels-community"
EMIT_NOTICE = (
    "import logging\n"
    "logging.getLogger('bitsandbytes.backends.cpu.ops').warning(\n"
    f"    '{NOTICE}: %s. Please make sure you already `pip install kernels`', ImportError(\"No module named 'kernels'\"))\n"
)
"""What bitsandbytes 0.50 does when imported on a CPU with AVX512-BF16 (``bitsandbytes/backends/cpu/ops.py``)."""
FAKE_AVX512_BF16 = """\
import importlib.abc, importlib.machinery, sys

class FakeAvx512Bf16(importlib.abc.MetaPathFinder):
    # bitsandbytes asks its native library whether the CPU has AVX512-BF16; this answers yes.
    def find_spec(self, name, path, target=None):
        if name != "bitsandbytes.cextension":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            real = module.lib

            class Lib:
                def __getattr__(self, attr):
                    return getattr(real, attr)

                def has_avx512bf16_cpu(self):
                    return True

            module.lib = Lib()

        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, FakeAvx512Bf16())
"""


def python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_quant_module_names_match_the_quantization_modules() -> None:
    from dsocr_cli import quant
    from dsocr_cli.models import quantize, quantized_experts

    assert (quant.MANIFEST_NAME, quant.WEIGHTS_NAME) == (quantize.MANIFEST_NAME, quantize.WEIGHTS_NAME)
    assert quant.EXPERT_KINDS == quantized_experts.EXPERT_KINDS


def test_bitsandbytes_notices_are_kept_off_stderr_and_handed_to_notify() -> None:
    assert NOTICE in python(EMIT_NOTICE).stderr  # what reaches a user's terminal without dsocr's helper

    quiet = python(
        "from dsocr_cli.quant import bitsandbytes_notices\n"
        "heard = []\n"
        "with bitsandbytes_notices(heard.append):\n"
        + "".join(f"    {line}\n" for line in EMIT_NOTICE.splitlines())
        + "print(*heard, sep='\\n')\n"
        "logging.getLogger('bitsandbytes.nn').warning('after the import')\n"
    )

    assert quiet.stderr == "after the import\n"  # silenced during the block only
    [heard] = quiet.stdout.splitlines()
    assert heard.startswith(f"bitsandbytes: {NOTICE}: No module named 'kernels'")


@pytest.mark.slow
def test_importing_bitsandbytes_on_an_avx512_bf16_cpu_prints_nothing() -> None:
    # This machine lacks AVX512-BF16, so the CPU check is answered yes: bitsandbytes then really logs its notice.
    quiet = python(
        FAKE_AVX512_BF16
        + "from dsocr_cli.quant import bitsandbytes_notices\n"
        "heard = []\n"
        "with bitsandbytes_notices(heard.append):\n"
        "    import bitsandbytes\n"
        "print(heard)\n"
    )
    assert quiet.returncode == 0, quiet.stderr
    assert NOTICE in quiet.stdout  # bitsandbytes did emit it...
    assert quiet.stderr == ""  # ...and none of it reached stderr


def test_stale_build_folders_are_removed_by_the_next_run_that_looks_for_a_quantized_copy(
    built: dict[str, tuple[Path, float]], tiny_checkpoint: Path, quant_cache: Path
) -> None:
    root = quant_cache / "quantized"
    host = socket.gethostname()
    gone = [int(python("import os; print(os.getpid())").stdout) for _ in range(2)]  # ended processes
    hour_ago = time.time() - 3600

    def scratch(name: str, old: bool = True) -> Path:
        path = root / name
        (path / "entry").mkdir(parents=True)
        (path / "entry" / "model-quantized.safetensors").write_bytes(b"half a build")
        if old:
            os.utime(path, (hour_ago, hour_ago))
        return path

    stale = scratch(f".building-a--nf4@{host}-{gone[0]}")
    unnamed_host = scratch(f".building-b--nf4-{gone[1]}")  # dsocr 0.1 named no host
    running = scratch(f".building-c--nf4@{host}-{os.getppid()}")  # its owner is alive
    elsewhere = scratch(f".building-d--nf4@another-machine-{gone[0]}")  # a shared cache: not ours to judge
    recent = scratch(f".building-e--nf4@{host}-{gone[1]}", old=False)  # touched after this process started
    stamp = (built["nf4"][0] / WEIGHTS_NAME).stat().st_mtime_ns

    entry = prepare_quantized(tiny_checkpoint, "nf4", CPU)

    assert entry == built["nf4"][0] and (entry / WEIGHTS_NAME).stat().st_mtime_ns == stamp
    assert not stale.exists() and not unnamed_host.exists()
    assert running.exists() and elsewhere.exists() and recent.exists()
    for path in (running, elsewhere, recent):
        shutil.rmtree(path)


def test_auto_quant_on_a_cpu_quantizes_only_when_ram_is_short_fastest_kind_first() -> None:
    gb = 10**9
    required, quantized = cpu_requirements(bf16_bytes=10 * gb, overhead=2 * gb, dtype_bytes=4)
    assert required == 22 * gb and quantized == {"int8": 8 * gb, "nf4": 5 * gb}
    assert choose_quant("auto", CPU, required, 22 * gb, quantized) == "none"  # fits: unquantized, the fastest
    assert choose_quant("auto", CPU, required, 22 * gb - 1, quantized) == "int8"  # int8 decodes faster than nf4
    assert choose_quant("auto", CPU, required, 8 * gb - 1, quantized) == "nf4"
    kind, reason = explain_quant("auto", CPU, required, 4 * gb, quantized)
    assert kind == "nf4" and "too little even for nf4" in reason
    kind, reason = explain_quant("auto", CPU, required, 12 * gb, quantized)
    assert kind == "int8" and "12.0 GB of RAM available" in reason and "22.0 GB" in reason
    assert cpu_requirements(10 * gb, 2 * gb, dtype_bytes=2)[0] == 12 * gb  # bf16 compute: half the bytes
