"""DeepSeek-OCR-2 (``dsocr_cli.models.v2``): checkpoints, loading, the registry, and ``dsocr convert``.

Random-weight checkpoints from ``dsocr_cli.testing.checkpoint_v2`` (conftest's ``v2_checkpoint`` and
friends) stand in for the real model; golden numbers from the official code are in ``test_golden_v2``.
What is asserted here is what only v2 has: the layout (the official index's 2,707 names), loading with 0
missing/unexpected keys, one-line errors, its two modes and its prompt layout. What v2 shares with v1 (the
batched engine giving exactly the one-page result, every output format, truncation, exit codes) is tested
once for both families in ``test_batched`` and ``test_cli`` (``family``-parametrised, ids ``[v2]``).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from dsocr_cli.errors import ExitCode, ModelError
from dsocr_cli.models import registry
from dsocr_cli.models.family import FamilyRunner, ModelFamily
from dsocr_cli.models.v2.config import build_config
from dsocr_cli.models.v2.family import FAMILY as V2
from dsocr_cli.models.v2.layout import V2Spec, spec_from_config, tensor_shapes
from dsocr_cli.models.v2.loader import load_v2
from dsocr_cli.models.v2.runner import V2Runner
from dsocr_cli.testing.checkpoint import SHARD_NAME
from dsocr_cli.testing.checkpoint_v2 import official_config
from dsocr_cli.testing.images import make_page_image
from tests.cli_support import make_image

TESTING = Path(__file__).resolve().parents[1] / "dsocr_cli" / "testing"
OFFICIAL_V2_CONFIG = TESTING / "official_v2" / "config.json"
OFFICIAL_V1_CONFIG = TESTING / "official" / "config.json"
OFFICIAL_V2_INDEX = Path(__file__).parent / "fixtures" / "deepseek-ocr-2.model.safetensors.index.json"
"""Copies of ../shared/reference/deepseek-ocr-2/ (the official hub files), so a clone runs these tests alone."""


def copy_checkpoint(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def rewrite_weights(directory: Path, edit) -> None:
    tensors = load_file(str(directory / SHARD_NAME))
    edit(tensors)
    save_file(tensors, str(directory / SHARD_NAME), metadata={"format": "pt"})


def expect_one_line(error: pytest.ExceptionInfo[ModelError]) -> str:
    message = str(error.value)
    assert "\n" not in message and error.value.exit_code == ExitCode.MODEL
    return message


# ---------------------------------------------------------------- layout and config


def test_official_sizes_have_the_official_indexs_2707_names_and_parameter_count() -> None:
    """Names and shapes only (nothing is allocated): the layout table at official sizes is the hub index."""
    index = json.loads(OFFICIAL_V2_INDEX.read_text())["weight_map"]
    shapes = dict(tensor_shapes(V2Spec.official()))
    assert len(shapes) == len(list(tensor_shapes(V2Spec.official()))) == 2707
    assert set(shapes) == set(index)
    counts = {
        prefix: sum(math.prod(s) for n, s in shapes.items() if n.startswith(prefix))
        for prefix in ("model.sam_model.", "model.qwen2_model.", "model.projector.", "model.layers.")
    }
    assert counts == {
        "model.sam_model.": 94_979_328,
        "model.qwen2_model.": 358_256_512,
        "model.projector.": 1_148_160,
        "model.layers.": 2_603_776_000,
    }
    assert sum(math.prod(s) for s in shapes.values()) == 3_389_119_360
    assert V2.reference_sizes().bf16_weight_bytes == 2 * 3_389_119_360


def test_the_writers_official_size_config_is_the_official_config_json() -> None:
    official = json.loads(OFFICIAL_V2_CONFIG.read_text())
    assert official_config(V2Spec.official()) == official
    assert spec_from_config(official) == V2Spec.official()


def test_config_is_built_from_the_official_config_json_with_the_official_codes_values() -> None:
    from dsocr_cli.models.tokenizer import TokenIds

    official = json.loads(OFFICIAL_V2_CONFIG.read_text())
    ids = TokenIds(bos=0, eos=1, image=128815, td_open=128821, td_close=128822)
    config = build_config(official, ids, "config.json")
    text, vision = config.text_config, config.vision_config
    assert (text.vocab_size, text.hidden_size, text.intermediate_size, text.num_hidden_layers) == (
        129280,
        1280,
        6848,
        12,
    )
    assert (text.num_attention_heads, text.num_key_value_heads, text.moe_intermediate_size) == (10, 10, 896)
    assert (text.n_routed_experts, text.n_shared_experts, text.num_experts_per_tok) == (64, 2, 6)
    assert (text.topk_method, text.n_group, text.topk_group, text.routed_scaling_factor) == ("greedy", 1, 1, 1.0)
    assert text.mlp_layer_types == ["dense"] + ["sparse"] * 11
    assert text.rope_parameters["rope_theta"] == 10000.0 and not config.tie_word_embeddings
    assert (text.bos_token_id, text.eos_token_id, config.image_token_id) == (0, 1, 128815)
    encoder = vision.encoder_config
    assert (encoder.hidden_size, encoder.intermediate_size, encoder.num_hidden_layers) == (896, 4864, 24)
    assert (encoder.num_attention_heads, encoder.num_key_value_heads) == (14, 2)
    assert encoder.rope_parameters["rope_theta"] == 1_000_000.0
    sam = vision.sam_config
    assert (sam.hidden_size, sam.num_hidden_layers, sam.mlp_dim, list(sam.downsample_channels)) == (
        768,
        12,
        3072,
        [512, 896],
    )


# ---------------------------------------------------------------- registry


def test_the_registry_tells_v2_from_v1() -> None:
    v2 = json.loads(OFFICIAL_V2_CONFIG.read_text())
    v1 = json.loads(OFFICIAL_V1_CONFIG.read_text())
    assert registry.family_for(v2) is V2 and isinstance(V2, ModelFamily)
    assert registry.family_for({**v2, "architectures": []}) is V2  # by vision_config.model_name
    assert registry.family_for(v1) is registry.DEFAULT_FAMILY is not V2


def test_the_v2_runner_implements_the_runner_protocol(v2_runner: V2Runner) -> None:
    assert isinstance(v2_runner, FamilyRunner)
    assert v2_runner.mode("gundam").max_image_tokens == 1121


# ---------------------------------------------------------------- loading


def test_the_writers_checkpoint_loads_with_no_missing_or_unexpected_keys(v2_checkpoint: Path) -> None:
    from transformers import DeepseekOcr2ForConditionalGeneration

    from dsocr_cli.models.tokenizer import load_tokenizer

    official = json.loads((v2_checkpoint / "config.json").read_text())
    _, ids = load_tokenizer(v2_checkpoint)
    _, info = DeepseekOcr2ForConditionalGeneration.from_pretrained(
        v2_checkpoint, config=build_config(official, ids, "config.json"), output_loading_info=True
    )
    assert {kind: list(names) for kind, names in info.items() if kind != "error_msgs"} == {
        "missing_keys": [],
        "unexpected_keys": [],
        "mismatched_keys": [],
    }
    loaded = load_v2(v2_checkpoint)  # the real loader checks the same and raises otherwise
    assert loaded.model.config.vision_config.encoder_config.hidden_size == V2Spec.tiny().encoder_hidden


def test_the_converted_layout_loads_the_same_network(v2_converted_checkpoint: Path, v2_runner: V2Runner) -> None:
    config = json.loads((v2_converted_checkpoint / "config.json").read_text())
    assert config["model_type"] == "deepseek_ocr2"
    names = set(json.loads((v2_converted_checkpoint / "model.safetensors.index.json").read_text())["weight_map"])
    assert (
        "model.vision_tower.query_1024_resolution.weight" in names
        and "model.qwen2_model.query_1024.weight" not in names
    )
    assert registry.family_for(v2_converted_checkpoint) is V2
    runner = registry.load_runner(v2_converted_checkpoint, torch.device("cpu"), torch.float32)
    converted, official = runner.model.state_dict(), v2_runner.model.state_dict()
    assert converted.keys() == official.keys()
    assert all(torch.equal(converted[name], official[name]) for name in official)


def test_a_converted_config_without_its_sizes_is_one_line(v2_converted_checkpoint: Path, tmp_path: Path) -> None:
    broken = copy_checkpoint(v2_converted_checkpoint, tmp_path / "ck")
    config = json.loads((broken / "config.json").read_text())
    del config["text_config"]["hidden_size"]
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match=r"text_config lacks hidden_size") as error:
        load_v2(broken)
    expect_one_line(error)


def test_a_tensor_missing_from_a_converted_checkpoint_is_named(v2_converted_checkpoint: Path, tmp_path: Path) -> None:
    broken = copy_checkpoint(v2_converted_checkpoint, tmp_path / "ck")
    rewrite_weights(broken, lambda t: t.pop("model.view_separator"))
    with pytest.raises(ModelError, match=r"missing keys after conversion: model\.view_separator") as error:
        load_v2(broken)
    expect_one_line(error)


def test_a_missing_tensor_is_named(v2_checkpoint: Path, tmp_path: Path) -> None:
    broken = copy_checkpoint(v2_checkpoint, tmp_path / "ck")
    rewrite_weights(broken, lambda t: t.pop("model.qwen2_model.query_768.weight"))
    with pytest.raises(ModelError, match=r"missing tensor model\.qwen2_model\.query_768\.weight$") as error:
        load_v2(broken)
    expect_one_line(error)


def test_a_misshaped_tensor_is_named_with_both_shapes(v2_checkpoint: Path, tmp_path: Path) -> None:
    broken = copy_checkpoint(v2_checkpoint, tmp_path / "ck")
    rewrite_weights(broken, lambda t: t.__setitem__("model.view_seperator", torch.zeros(64, dtype=torch.bfloat16)))
    with pytest.raises(
        ModelError, match=r"model\.view_seperator has shape \[64\], config\.json expects \[128\]"
    ) as error:
        load_v2(broken)
    expect_one_line(error)


def test_a_v1_tensor_in_a_v2_checkpoint_is_unexpected(v2_checkpoint: Path, tmp_path: Path) -> None:
    broken = copy_checkpoint(v2_checkpoint, tmp_path / "ck")
    rewrite_weights(broken, lambda t: t.__setitem__("model.image_newline", torch.zeros(128, dtype=torch.bfloat16)))
    with pytest.raises(
        ModelError, match=r"unexpected tensor model\.image_newline \(not part of DeepSeek-OCR-2\)"
    ) as error:
        load_v2(broken)
    expect_one_line(error)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c["projector_config"].update(input_dim=1024), r"projector_config 1024->128 does not join"),
        (lambda c: c["vision_config"]["width"].pop("qwen2-0-5b"), r"vision_config\.width needs"),
        (lambda c: c["language_config"].pop("vocab_size") and c.pop("vocab_size"), r"language_config lacks vocab_size"),
        (lambda c: c["language_config"].update(use_mla=True), r"use_mla=true is not DeepSeek-OCR-2"),
    ],
)
def test_a_bad_config_is_one_line(v2_checkpoint: Path, tmp_path: Path, edit, message: str) -> None:
    broken = copy_checkpoint(v2_checkpoint, tmp_path / "ck")
    config = json.loads((broken / "config.json").read_text())
    edit(config)
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match=message) as error:
        load_v2(broken)
    expect_one_line(error)


def test_missing_tokenizer_and_shard_are_one_line(v2_checkpoint: Path, tmp_path: Path) -> None:
    broken = copy_checkpoint(v2_checkpoint, tmp_path / "ck")
    (broken / "tokenizer.json").unlink()
    with pytest.raises(ModelError, match=r"no tokenizer\.json") as error:
        load_v2(broken)
    expect_one_line(error)
    broken = copy_checkpoint(v2_checkpoint, tmp_path / "ck2")
    (broken / SHARD_NAME).unlink()
    with pytest.raises(ModelError, match="is missing") as error:
        registry.load_runner(broken, torch.device("cpu"), torch.float32)
    expect_one_line(error)


# ---------------------------------------------------------------- the CLI


@pytest.mark.parametrize("mode", ["tiny", "small", "large"])
def test_a_mode_v2_has_no_queries_for_is_exit_1_naming_the_supported_ones(
    dsocr, v2_checkpoint: Path, mode: str
) -> None:
    make_image("scan.png")
    run = dsocr("convert", "scan.png", "--model", v2_checkpoint, "--mode", mode)
    assert run.code == 1
    assert f"'{mode}'" in run.stderr and "base, gundam" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_a_request_is_bos_then_the_pages_positions_then_the_stripped_prompt(v2_runner: V2Runner) -> None:
    from dsocr_cli.models.v1.prompts import Prompt

    ids = v2_runner.loaded.token_ids
    prompt = Prompt("custom", "<image>\nFree OCR. ")  # the official example prompt ends with a space
    request = v2_runner.request(v2_runner.prepare_image(make_page_image(1300, 650), "gundam"), prompt)
    k = request.image.grid[0] * request.image.grid[1]
    positions = 256 + 144 * k + 1
    text = v2_runner.loaded.tokenizer.encode("\nFree OCR.", add_special_tokens=False)
    assert request.input_ids == [ids.bos, *[ids.image] * positions, *text]


def test_a_directory_saved_by_transformers_loads(v2_runner: V2Runner, v2_checkpoint: Path, tmp_path: Path) -> None:
    """``save_pretrained`` writes transformers' config.json with the tensors back under their official names:
    the converted config is read, the conversion mapping renames the tensors, 0 missing/unexpected keys."""
    saved = tmp_path / "saved"
    v2_runner.model.save_pretrained(saved)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(v2_checkpoint / name, saved / name)
    assert json.loads((saved / "config.json").read_text())["model_type"] == "deepseek_ocr2"
    reloaded = load_v2(saved).model.state_dict()
    original = v2_runner.model.state_dict()
    assert reloaded.keys() == original.keys()
    assert all(torch.equal(reloaded[name], original[name]) for name in original)
