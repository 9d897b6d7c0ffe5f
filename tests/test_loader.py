"""Loading official-layout checkpoints: what loads, and the one-line errors for broken ones."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from dsocr_cli.errors import ExitCode, ModelError
from dsocr_cli.models.registry import load_runner
from dsocr_cli.models.v1.layout import CheckpointSpec, tensor_shapes
from dsocr_cli.models.v1.loader import load_v1
from dsocr_cli.testing.checkpoint import SHARD_NAME

OFFICIAL_INDEX = Path(__file__).parents[1] / "dsocr_cli" / "testing" / "official"


def copy_checkpoint(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def rewrite_weights(directory: Path, edit) -> None:
    tensors = load_file(str(directory / SHARD_NAME))
    edit(tensors)
    save_file(tensors, str(directory / SHARD_NAME), metadata={"format": "pt"})


def test_official_sizes_have_the_official_2710_tensor_names() -> None:
    names = [name for name, _ in tensor_shapes(CheckpointSpec.official())]
    assert len(names) == len(set(names)) == 2710
    total = sum(torch.Size(shape).numel() for _, shape in tensor_shapes(CheckpointSpec.official()))
    assert total == 3_336_106_240


def test_tiny_checkpoint_loads_with_v1_settings(tiny_runner) -> None:
    model = tiny_runner.loaded.model
    text = model.config.text_config
    assert text.layer_types == ["full_attention"] * 3
    assert text.mlp_layer_types == ["dense", "sparse", "sparse"]
    assert model.config.image_token_id == 128815
    assert tiny_runner.loaded.token_ids.eos == 1 and tiny_runner.loaded.token_ids.td_open == 128821
    assert model.model.language_model.layers[1].mlp.experts.gate_up_proj.shape == (8, 128, 128)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_loads_straight_into_half_precision(tiny_checkpoint: Path, dtype: torch.dtype) -> None:
    loaded = load_v1(tiny_checkpoint, dtype=dtype)
    assert {p.dtype for p in loaded.model.parameters()} == {dtype}


def test_missing_tensor_is_named(tiny_checkpoint: Path, tmp_path: Path) -> None:
    broken = copy_checkpoint(tiny_checkpoint, tmp_path / "ck")
    rewrite_weights(broken, lambda t: t.pop("model.layers.2.mlp.gate.weight"))
    with pytest.raises(ModelError, match=r"missing tensor model\.layers\.2\.mlp\.gate\.weight$") as err:
        load_v1(broken)
    assert err.value.exit_code == ExitCode.MODEL and "\n" not in str(err.value)


def test_misshaped_tensor_is_named_with_both_shapes(tiny_checkpoint: Path, tmp_path: Path) -> None:
    broken = copy_checkpoint(tiny_checkpoint, tmp_path / "ck")
    rewrite_weights(broken, lambda t: t.__setitem__("model.image_newline", torch.zeros(64, dtype=torch.bfloat16)))
    with pytest.raises(ModelError, match=r"tensor model\.image_newline has shape \[64\], config\.json expects \[128\]"):
        load_v1(broken)


def test_unexpected_tensor_is_named(tiny_checkpoint: Path, tmp_path: Path) -> None:
    broken = copy_checkpoint(tiny_checkpoint, tmp_path / "ck")
    rewrite_weights(broken, lambda t: t.__setitem__("model.extra_head.weight", torch.zeros(2)))
    with pytest.raises(ModelError, match=r"unexpected tensor model\.extra_head\.weight"):
        load_v1(broken)


def test_missing_tokenizer_is_reported(tiny_checkpoint: Path, tmp_path: Path) -> None:
    broken = copy_checkpoint(tiny_checkpoint, tmp_path / "ck")
    (broken / "tokenizer.json").unlink()
    with pytest.raises(ModelError, match=r"no tokenizer\.json"):
        load_v1(broken)


def test_missing_weight_shard_is_reported(tiny_checkpoint: Path, tmp_path: Path) -> None:
    broken = copy_checkpoint(tiny_checkpoint, tmp_path / "ck")
    (broken / SHARD_NAME).unlink()
    with pytest.raises(ModelError, match=rf"weight file {SHARD_NAME} listed in model\.safetensors\.index\.json is missing"):
        load_v1(broken)


def test_missing_config_and_directory_are_reported(tiny_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="model directory not found"):
        load_v1(tmp_path / "nope")
    broken = copy_checkpoint(tiny_checkpoint, tmp_path / "ck")
    (broken / "config.json").unlink()
    with pytest.raises(ModelError, match=r"no config\.json"):
        load_v1(broken)


def test_other_model_types_are_refused_by_name(tiny_checkpoint: Path, tmp_path: Path) -> None:
    broken = copy_checkpoint(tiny_checkpoint, tmp_path / "ck")
    config = json.loads((broken / "config.json").read_text())
    config["model_type"] = "llama"
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="unsupported model"):
        load_runner(broken, torch.device("cpu"), torch.float32)
