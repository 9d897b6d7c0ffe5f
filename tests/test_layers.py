"""Import direction and the family registry.

Layers, lowest first: ``dsocr_cli.generation`` (guard, cache, streamer) < model families
(``dsocr_cli.models.<family>``) < ``dsocr_cli.engine`` < ``dsocr_cli.server`` (``dsocr serve``). The engine
and the server reach a family only through ``dsocr_cli.models.family`` / ``dsocr_cli.models.registry``.
Imports are read from the source with ``ast`` (every static import, including those inside functions), never
by importing the modules.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from dsocr_cli.errors import ExitCode, ModelError
from dsocr_cli.models import registry
from dsocr_cli.models.family import FamilyRunner, ModelFamily

PACKAGE = Path(__file__).resolve().parents[1] / "dsocr_cli"
TESTING = Path(__file__).resolve().parents[1] / "dsocr_cli" / "testing"
OFFICIAL_CONFIGS = {"deepseek-ocr": TESTING / "official" / "config.json", "deepseek-ocr-2": TESTING / "official_v2" / "config.json"}
"""The official hub repos' config.json files, packaged with dsocr's test helpers (copies of ../shared/reference/)."""
FAMILY_PACKAGES = sorted(
    f"dsocr_cli.models.{path.name}" for path in (PACKAGE / "models").iterdir() if (path / "__init__.py").is_file()
)


def module_name(path: Path) -> str:
    """``dsocr_cli/a/b.py`` -> ``dsocr_cli.a.b`` (a file outside the package: its stem)."""
    try:
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    except ValueError:
        parts = (path.stem,)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports statically (``import a.b``, ``from a.b import c`` -> a.b and a.b.c),
    relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def modules_under(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def violations(folder: Path, forbidden: list[str]) -> list[str]:
    return [
        f"{module_name(path)} imports {name}"
        for path in modules_under(folder)
        for name in sorted(imported_modules(path))
        if any(name == prefix or name.startswith(prefix + ".") for prefix in forbidden)
    ]


def test_there_is_a_family_package_to_check() -> None:
    assert "dsocr_cli.models.v1" in FAMILY_PACKAGES


def test_the_engine_imports_no_concrete_family() -> None:
    assert not violations(PACKAGE / "engine", FAMILY_PACKAGES)


def test_the_server_imports_no_concrete_family_and_not_the_cli() -> None:
    """``dsocr_cli.server`` sits on the engine: it reaches a family through the runner protocol only, and the
    CLI (``cli/serve.py``) sits on it, never the other way round."""
    assert not violations(PACKAGE / "server", [*FAMILY_PACKAGES, "dsocr_cli.cli"])


def test_nothing_below_the_server_imports_it() -> None:
    for folder in ("engine", "models", "generation", "inputs"):
        assert not violations(PACKAGE / folder, ["dsocr_cli.server"]), folder


def test_families_do_not_import_the_engine() -> None:
    for family in FAMILY_PACKAGES:
        folder = PACKAGE / Path(*family.split(".")[1:])
        assert not violations(folder, ["dsocr_cli.engine"]), family


def test_generation_imports_neither_engine_nor_models() -> None:
    assert not violations(PACKAGE / "generation", ["dsocr_cli.engine", "dsocr_cli.models"])


def test_only_the_models_package_and_test_tooling_name_a_family() -> None:
    """Outside ``dsocr_cli.models`` a family is reached through the registry; ``dsocr_cli.testing`` writes
    v1 checkpoints from v1's layout table and is the one deliberate exception."""
    outside = [
        folder for folder in PACKAGE.iterdir() if folder.is_dir() and folder.name not in ("models", "testing")
    ] + [path for path in PACKAGE.glob("*.py")]
    found = []
    for item in outside:
        for path in modules_under(item) if item.is_dir() else [item]:
            found += [
                f"{module_name(path)} imports {n}"
                for n in imported_modules(path)
                if n.startswith(tuple(f + "." for f in FAMILY_PACKAGES)) or n in FAMILY_PACKAGES
            ]
    assert not found


def test_the_checker_sees_imports_inside_functions(tmp_path: Path) -> None:
    source = tmp_path / "probe.py"
    source.write_text("def f():\n    from dsocr_cli.models.v1 import runner\n    import dsocr_cli.engine.batched\n")
    assert {"dsocr_cli.models.v1", "dsocr_cli.models.v1.runner", "dsocr_cli.engine.batched"} <= imported_modules(source)


def test_official_v1_config_is_v1() -> None:
    config = json.loads(OFFICIAL_CONFIGS["deepseek-ocr"].read_text(encoding="utf-8"))
    family = registry.family_for(config)
    assert family.name == "deepseek-ocr"
    assert isinstance(family, ModelFamily)


def test_family_for_a_directory_reads_its_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_bytes(OFFICIAL_CONFIGS["deepseek-ocr"].read_bytes())
    assert registry.family_for(tmp_path) is registry.DEFAULT_FAMILY


@pytest.mark.parametrize(
    "config",
    [
        {"model_type": "deepseek_vl_v2", "architectures": ["SomethingElseForCausalLM"]},
        {"model_type": "llama", "architectures": ["LlamaForCausalLM"]},
    ],
)
def test_unknown_architectures_are_one_line_model_errors_naming_them(config: dict) -> None:
    with pytest.raises(ModelError) as caught:
        registry.family_for(config)
    message = str(caught.value)
    assert "\n" not in message
    assert config["architectures"][0] in message and repr(config["model_type"]) in message
    assert caught.value.exit_code == ExitCode.MODEL


def test_v2_config_is_not_taken_for_v1() -> None:
    """Both families share ``model_type: deepseek_vl_v2``; v1 must not claim DeepSeek-OCR-2 (v2 does)."""
    config = json.loads(OFFICIAL_CONFIGS["deepseek-ocr-2"].read_text(encoding="utf-8"))
    assert registry.family_for_config(config).name == "deepseek-ocr-2"
    assert registry.family_for_config({**config, "architectures": []}).name == "deepseek-ocr-2"


def test_the_v1_runner_implements_the_runner_protocol() -> None:
    from dsocr_cli.models.v1.runner import V1Runner

    missing = [name for name in dir(FamilyRunner) if not name.startswith("_") and not hasattr(V1Runner, name)]
    assert not missing


@pytest.mark.parametrize(
    ("given", "repo"),
    [
        ("v1", "deepseek-ai/DeepSeek-OCR"),
        ("ocr", "deepseek-ai/DeepSeek-OCR"),
        ("v2", "deepseek-ai/DeepSeek-OCR-2"),
        ("OCR2@abc123", "deepseek-ai/DeepSeek-OCR-2@abc123"),
        ("someone/else", "someone/else"),
    ],
)
def test_short_model_names_resolve_to_the_families_repos(given: str, repo: str) -> None:
    assert registry.expand_model(given) == repo
