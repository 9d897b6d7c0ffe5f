"""`dsocr download`, `models`, `doctor` and first-use downloads by `convert`, against a stand-in hub."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from dsocr_cli.cli.app import main
from dsocr_cli.errors import ExitCode
from dsocr_cli.quant import quantized_entries
from dsocr_cli.testing.checkpoint import SHARD_NAME
from dsocr_cli.testing.images import make_page_image
from tests.hubserver import (
    HubServer,
    StandInRepo,
    serve,
    unreachable_url,
    use_environment,
    write_model_files,
)

REPO = "deepseek-ai/DeepSeek-OCR"
SNAPSHOTS = Path("hub") / "models--deepseek-ai--DeepSeek-OCR" / "snapshots"


@pytest.fixture(scope="module")
def official(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> StandInRepo:
    """The tiny random-weight checkpoint as the hub serves deepseek-ai/DeepSeek-OCR: main, and tag v1 with
    a different tokenizer_config.json, beside the remote code and images dsocr must not fetch."""
    repo = StandInRepo()
    for ref, max_length in (("v1", 4096), ("main", 8192)):
        directory = tmp_path_factory.mktemp(f"official-{ref}")
        for file in tiny_checkpoint.iterdir():
            (directory / file.name).symlink_to(file)
        config = json.loads((tiny_checkpoint / "tokenizer_config.json").read_text())
        (directory / "tokenizer_config.json").unlink()
        (directory / "tokenizer_config.json").write_text(json.dumps({**config, "model_max_length": max_length}))
        (directory / "modeling_deepseekocr.py").write_text("raise RuntimeError('remote code is never fetched')\n")
        (directory / "assets").mkdir()
        (directory / "assets" / "show1.jpg").write_bytes(os.urandom(4000))
        repo.add_revision(directory, ref)
    return repo


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "hf"


@pytest.fixture
def hub(official: StandInRepo, home: Path, monkeypatch: pytest.MonkeyPatch):
    with serve(monkeypatch, home, {REPO: official}) as server:
        yield server


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("page") / "page.png"
    make_page_image(320, 240).save(path)
    return path


def convert(page: Path, *options: str) -> int:
    return main(["convert", str(page), "--mode", "tiny", "--max-tokens", "4", "--model", REPO, *options])


def assert_converted(code: int, out: str) -> None:
    """The random-weight model never emits end-of-text: 2 = the page hit --max-tokens, text was written."""
    assert code == ExitCode.PARTIAL_FAILURE
    assert "<!-- page 1 -->" in out


def test_convert_downloads_the_model_on_first_use(
    hub: HubServer, page: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert_converted(convert(page), capsys.readouterr().out)
    (snapshot,) = (home / SNAPSHOTS).iterdir()
    assert snapshot.name == hub.repos[REPO].refs["main"]
    fetched = {r.filename for r in hub.requests if r.method == "GET" and r.filename}
    assert "modeling_deepseekocr.py" not in fetched and "assets/show1.jpg" not in fetched


def test_download_then_convert_offline_without_the_hub(
    hub: HubServer, page: Path, home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["download"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert Path(out.strip()).parent == home / SNAPSHOTS

    hub.reset_counts()
    assert_converted(convert(page, "--offline"), capsys.readouterr().out)
    assert hub.requests == []

    hub.stop()
    use_environment(monkeypatch, HF_ENDPOINT=hub.url, HF_HOME=str(home), HF_HUB_OFFLINE="1")
    assert_converted(convert(page), capsys.readouterr().out)


def test_download_pins_a_revision(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = StandInRepo()
    v1 = repo.add_revision(write_model_files(tmp_path / "v1", seed=1, weights_size=2000), "v1")
    repo.add_revision(write_model_files(tmp_path / "v2", seed=2, weights_size=2000), "main")
    with serve(monkeypatch, home, {REPO: repo}):
        assert main(["download", f"{REPO}@v1"]) == ExitCode.OK
        assert main(["download", REPO, "--revision", v1]) == ExitCode.OK
    paths = capsys.readouterr().out.split()
    assert paths == [str(home / SNAPSHOTS / v1)] * 2
    assert json.loads(Path(paths[0], "config.json").read_text())["seed"] == 1


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("token", "access denied (private or gated repo, or no such repo): set HF_TOKEN"),
        ("repo", "repository not found on the hub"),
        ("revision", "revision 'v9' not found"),
        ("unreachable", "cannot reach the Hugging Face hub"),
    ],
)
def test_hub_errors_are_one_line_with_exit_code_4(
    case: str,
    message: str,
    official: StandInRepo,
    page: Path,
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    repos = {REPO: StandInRepo(token="hf_secret", commits=official.commits, refs=official.refs)}
    with serve(monkeypatch, home, repos if case == "token" else {REPO: official}):
        if case == "unreachable":
            use_environment(monkeypatch, HF_ENDPOINT=unreachable_url(), HF_HOME=str(home))
        model = {"repo": "deepseek-ai/Missing", "revision": f"{REPO}@v9"}.get(case, REPO)
        for argv in (["download", model], ["convert", str(page), "--model", model]):
            assert main(argv) == ExitCode.MODEL
            captured = capsys.readouterr()
            assert captured.out == ""
            assert captured.err.startswith("error: ") and captured.err.count("\n") == 1
            assert message in captured.err and "Traceback" not in captured.err


@pytest.mark.parametrize(("name", "command"), [(SHARD_NAME, "convert"), ("tokenizer.json", "download")])
def test_corrupted_download_is_refused_and_the_next_run_fetches_it_afresh(
    name: str, command: str, hub: HubServer, page: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The weights are checked against their sha256, tokenizer.json (not in LFS) against its git blob id."""
    stored = hub.repos[REPO].commits[hub.repos[REPO].refs["main"]][name]
    run = {"convert": lambda: convert(page), "download": lambda: main(["download"])}[command]
    hub.corrupt(name)
    assert run() == ExitCode.MODEL
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1
    assert f"{REPO}: the content of {name} did not match the hub's checksum" in captured.err
    assert "run the same command again to download it afresh" in captured.err
    folder = home / "hub" / "models--deepseek-ai--DeepSeek-OCR"
    assert not (folder / "blobs" / stored.etag).exists()
    assert not list(folder.rglob("*.incomplete"))
    assert not list(folder.glob(f"snapshots/*/{name}"))

    hub.heal()
    code = run()
    captured = capsys.readouterr()
    if command == "convert":
        assert_converted(code, captured.out)
    else:
        assert code == ExitCode.OK
    (snapshot,) = (home / SNAPSHOTS).iterdir()
    assert (snapshot / name).read_bytes() == stored.path.read_bytes()


@pytest.mark.parametrize("case", ["unreachable", "missing repo", "interrupted", "cached copy"])
def test_credentials_in_hf_endpoint_are_never_printed(
    case: str, hub: HubServer, home: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """HF_ENDPOINT=http://user:secret@host names the hub in messages, without the password."""
    port = int(unreachable_url().rsplit(":", 1)[1]) if case == "unreachable" else hub.port
    use_environment(monkeypatch, HF_ENDPOINT=f"http://user:secret@127.0.0.1:{port}", HF_HOME=str(home))
    model, expected = REPO, ExitCode.MODEL
    if case == "missing repo":
        model = "deepseek-ai/Missing"
    elif case == "interrupted":
        hub.cut_after(SHARD_NAME, 1000, fail_after=True)
    elif case == "cached copy":
        assert main(["download"]) == ExitCode.OK
        hub.stop()
        expected = ExitCode.OK
    capfd.readouterr()
    assert main(["download", model]) == expected
    captured = capfd.readouterr()
    assert "secret" not in captured.out + captured.err
    line = {
        "unreachable": "cannot reach the Hugging Face hub at http://***@127.0.0.1:",
        "missing repo": "repository not found on the hub (http://***@127.0.0.1:",
        "interrupted": f"download of {SHARD_NAME} interrupted (HTTP 503)",
        "cached copy": "cannot reach http://***@127.0.0.1:",
    }[case]
    assert line in captured.err


def test_models_lists_and_rm_removes(
    hub: HubServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    main_commit, v1_commit = hub.repos[REPO].refs["main"], hub.repos[REPO].refs["v1"]
    assert main(["models"]) == ExitCode.OK
    assert "no models in the cache" in capsys.readouterr().err
    assert main(["download", "--quant", "nf4"]) == main(["download", f"{REPO}@v1"]) == ExitCode.OK
    capsys.readouterr()

    assert main(["models"]) == ExitCode.OK
    table = capsys.readouterr().out
    assert REPO in table and main_commit[:12] in table and v1_commit[:12] in table and "main" in table
    assert "nf4" in table

    assert main(["models", "--json"]) == ExitCode.OK
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["repo"] == REPO
    assert {r["commit"]: r["quantized"] for r in listed["revisions"]} == {main_commit: ["nf4"], v1_commit: []}
    assert {r["family"] for r in listed["revisions"]} == {"deepseek-ocr"}
    assert "FAMILY" in table and "deepseek-ocr" in table

    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert main(["models", "rm", f"{REPO}@v1"]) == ExitCode.USAGE
    assert "pass --yes" in capsys.readouterr().err
    assert main(["models", "rm", f"{REPO}@v1", "--yes"]) == ExitCode.OK
    assert "deleted" in capsys.readouterr().err
    main(["models", "--json"])
    (listed,) = json.loads(capsys.readouterr().out)
    assert [r["commit"] for r in listed["revisions"]] == [main_commit]

    assert main(["models", "rm", REPO, "--yes"]) == ExitCode.OK
    assert "1 quantized variant" in capsys.readouterr().err
    main(["models", "--json"])
    assert json.loads(capsys.readouterr().out) == []
    assert quantized_entries() == []
    assert main(["models", "rm", REPO, "--yes"]) == ExitCode.MODEL


def test_doctor_reports_the_device_and_never_the_token(
    hub: HubServer, home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_do_not_print_me")
    assert main(["doctor", "--json"]) == ExitCode.OK
    out = capsys.readouterr().out
    report = json.loads(out)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert report["device"].startswith(expected) and report["ok"] is True
    assert report["packages"]["torch"] == torch.__version__
    assert report["environment"]["HF_ENDPOINT"] == hub.url and report["environment"]["token"] == "set (HF_TOKEN)"
    assert report["models"] == [] and report["cache_dir"] == str(home / "hub")
    assert any("no model in the cache" in p["message"] for p in report["problems"])

    assert main(["doctor"]) == ExitCode.OK
    table = capsys.readouterr().out
    assert expected in table and str(home / "hub") in table
    assert "hf_do_not_print_me" not in out + table


def test_v2_downloads_by_short_name_in_both_hub_layouts_and_converts_offline(
    v2_eos_checkpoint: Path,
    v2_converted_checkpoint: Path,
    page: Path,
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`dsocr download v2` fetches deepseek-ai/DeepSeek-OCR-2 (official layout); the transformers-converted
    deepseek-community repo downloads too; both convert offline from the cache and `dsocr models` names
    their family."""
    official, converted = StandInRepo(), StandInRepo()
    official.add_revision(v2_eos_checkpoint, "main")
    converted.add_revision(v2_converted_checkpoint, "main")
    repos = {"deepseek-ai/DeepSeek-OCR-2": official, "deepseek-community/DeepSeek-OCR-2": converted}
    with serve(monkeypatch, home, repos) as server:
        assert main(["download", "v2"]) == ExitCode.OK
        assert main(["download", "deepseek-community/DeepSeek-OCR-2"]) == ExitCode.OK
        capsys.readouterr()
        server.reset_counts()
        base = ["convert", str(page), "--mode", "base", "--offline", "--no-provenance"]
        assert main([*base, "--model", "ocr2"]) == ExitCode.OK  # the EOS checkpoint finishes every page
        assert capsys.readouterr().out.startswith("<!-- page 1 -->")
        assert main([*base, "--model", "deepseek-community/DeepSeek-OCR-2", "--max-tokens", "2"]) == (
            ExitCode.PARTIAL_FAILURE  # the random converted model runs to the limit: truncated, text kept
        )
        assert "<!-- page 1 -->" in capsys.readouterr().out
        assert server.requests == []  # offline: the cache only
        assert main(["models", "--json"]) == ExitCode.OK
        listed = {m["repo"]: {r["family"] for r in m["revisions"]} for m in json.loads(capsys.readouterr().out)}
    assert listed == {"deepseek-ai/DeepSeek-OCR-2": {"deepseek-ocr-2"}, "deepseek-community/DeepSeek-OCR-2": {"deepseek-ocr-2"}}
