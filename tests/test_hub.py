"""Model downloads against a stand-in hub on 127.0.0.1: cache layout, resume, revisions, offline, errors."""

from __future__ import annotations

import hashlib
import io
import shutil
from pathlib import Path

import pytest
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import (
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from rich.console import Console

from dsocr_cli import hub
from dsocr_cli.errors import ExitCode, ModelError
from dsocr_cli.progress import DownloadBar, Reporter
from tests.hubserver import (
    WEIGHTS,
    HubServer,
    StandInRepo,
    StoredFile,
    serve,
    unreachable_url,
    use_environment,
    write_model_files,
)

REPO = "deepseek-ai/DeepSeek-OCR"
WEIGHTS_SIZE = 12_000_000
CUT = 11_000_000
"""huggingface_hub writes what it receives in 10 MiB chunks, so a cut here leaves one chunk on disk."""
MODEL_NAMES = {
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "model.safetensors.index.json",
    WEIGHTS,
}


@pytest.fixture(scope="module")
def revisions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two versions of the repo's files: "old" (tag v1) and "new" (main)."""
    root = tmp_path_factory.mktemp("repo")
    return {
        "old": write_model_files(root / "old", seed=1, weights_size=WEIGHTS_SIZE),
        "new": write_model_files(root / "new", seed=2, weights_size=WEIGHTS_SIZE),
    }


@pytest.fixture(scope="module")
def served(revisions: dict[str, Path]) -> StandInRepo:
    """The repo with both revisions, hashed once for the module."""
    repo = StandInRepo()
    repo.add_revision(revisions["old"], "v1")
    repo.add_revision(revisions["new"], "main")
    return repo


def protected(served: StandInRepo, gated: bool = False) -> StandInRepo:
    """The same commits behind a token ("hf_secret")."""
    return StandInRepo(token="hf_secret", gated=gated, commits=served.commits, refs=served.refs)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "hf"


@pytest.fixture
def server(served: StandInRepo, home: Path, monkeypatch: pytest.MonkeyPatch):
    with serve(monkeypatch, home, {REPO: served}) as running:
        yield running


def same_files(directory: Path, source: Path) -> bool:
    return all((directory / name).read_bytes() == (source / name).read_bytes() for name in MODEL_NAMES)


def test_download_fetches_only_model_files_into_the_hf_cache(
    server: HubServer, revisions: dict[str, Path], home: Path
) -> None:
    snapshot = hub.download(REPO)
    assert snapshot.path.is_relative_to(home / "hub" / "models--deepseek-ai--DeepSeek-OCR" / "snapshots")
    assert {p.name for p in snapshot.path.iterdir()} == MODEL_NAMES
    assert same_files(snapshot.path, revisions["new"])
    assert snapshot.fetched == sum((revisions["new"] / name).stat().st_size for name in MODEL_NAMES)
    fetched = {r.filename for r in server.requests if r.method == "GET" and r.filename}
    assert fetched == MODEL_NAMES
    assert not any(r.range for r in server.requests)


def test_second_download_transfers_nothing(server: HubServer) -> None:
    first = hub.download(REPO)
    server.reset_counts()
    again = hub.download(REPO)
    assert again.path == first.path and again.fetched == 0
    assert server.bytes_served(WEIGHTS) == 0
    assert len(server.requests) == 2  # resolve the revision, list its files


def test_download_cut_mid_file_is_resumed_by_the_next_run(
    server: HubServer, revisions: dict[str, Path], home: Path
) -> None:
    server.cut_after(WEIGHTS, CUT, fail_after=True)
    with pytest.raises(ModelError, match=f"download of {WEIGHTS} interrupted .* run the same command again") as err:
        hub.download(REPO)
    assert err.value.exit_code == ExitCode.MODEL
    (partial,) = (home / "hub").rglob("*.incomplete")
    kept = partial.stat().st_size
    assert 0 < kept <= CUT

    server.heal()
    server.reset_counts()
    snapshot = hub.download(REPO)
    assert server.bytes_served(WEIGHTS) == WEIGHTS_SIZE - kept < WEIGHTS_SIZE
    assert [r.range for r in server.file_requests(WEIGHTS)] == [f"bytes={kept}-"]
    assert WEIGHTS_SIZE - kept <= snapshot.fetched < WEIGHTS_SIZE
    assert same_files(snapshot.path, revisions["new"])
    assert not list((home / "hub").rglob("*.incomplete"))


def test_interrupted_download_is_listed_and_can_be_removed(server: HubServer, home: Path) -> None:
    server.cut_after(WEIGHTS, CUT, fail_after=True)
    with pytest.raises(ModelError):
        hub.download(REPO)
    (model,) = hub.cached_models()
    assert model.repo == REPO and model.revisions == () and 0 < model.partial <= CUT
    removal = hub.plan_removal(REPO)
    assert removal.size >= model.partial
    removal.execute()
    assert hub.cached_models() == []
    assert not (home / "hub" / "models--deepseek-ai--DeepSeek-OCR").exists()


def test_connection_dropped_mid_file_resumes_within_the_same_run(
    server: HubServer, revisions: dict[str, Path]
) -> None:
    server.cut_after(WEIGHTS, CUT)
    snapshot = hub.download(REPO)
    assert same_files(snapshot.path, revisions["new"])
    first, second = server.file_requests(WEIGHTS)
    assert first.range is None and first.body_bytes == CUT
    assert second.range is not None and second.body_bytes < WEIGHTS_SIZE
    assert second.range == f"bytes={WEIGHTS_SIZE - second.body_bytes}-"


def test_resumed_download_whose_kept_part_is_corrupt_is_caught(
    server: HubServer, revisions: dict[str, Path], home: Path
) -> None:
    """The first run keeps corrupted bytes; the second resumes with intact ones and must still refuse the file."""
    server.corrupt(WEIGHTS)
    server.cut_after(WEIGHTS, CUT, fail_after=True)
    with pytest.raises(ModelError, match="interrupted"):
        hub.download(REPO)
    (partial,) = (home / "hub").rglob("*.incomplete")
    kept = partial.stat().st_size
    assert 0 < kept < WEIGHTS_SIZE
    server.heal()
    server.reset_counts()
    mismatch = f"{REPO}: the content of {WEIGHTS} did not match the hub's checksum .* download it afresh$"
    with pytest.raises(ModelError, match=mismatch) as err:
        hub.download(REPO)
    assert err.value.exit_code == ExitCode.MODEL
    assert [r.range for r in server.file_requests(WEIGHTS)] == [f"bytes={kept}-"]  # resumed, intact bytes
    assert_nothing_cached(home, served_file(server, WEIGHTS).etag, WEIGHTS)

    server.reset_counts()
    assert same_files(hub.download(REPO).path, revisions["new"])
    assert [r.range for r in server.file_requests(WEIGHTS)] == [None]  # afresh, from the first byte


def test_partial_file_damaged_on_disk_is_caught(server: HubServer, revisions: dict[str, Path], home: Path) -> None:
    server.cut_after(WEIGHTS, CUT, fail_after=True)
    with pytest.raises(ModelError):
        hub.download(REPO)
    (partial,) = (home / "hub").rglob("*.incomplete")
    partial.write_bytes(b"\0" * partial.stat().st_size)
    server.heal()
    with pytest.raises(ModelError, match="did not match the hub's checksum"):
        hub.download(REPO)
    assert not partial.exists()
    assert same_files(hub.download(REPO).path, revisions["new"])


@pytest.mark.parametrize("name", [WEIGHTS, "config.json"])
def test_fresh_download_with_corrupt_bytes_is_refused(
    server: HubServer, revisions: dict[str, Path], home: Path, name: str
) -> None:
    """LFS files are checked against their sha256, the others against their git blob id."""
    stored = served_file(server, name)
    assert (stored.sha256 is not None) == (name == WEIGHTS)
    server.corrupt(name)
    with pytest.raises(ModelError, match=f"the content of {name} did not match the hub's checksum"):
        hub.download(REPO)
    assert_nothing_cached(home, stored.etag, name)
    server.heal()
    assert same_files(hub.download(REPO).path, revisions["new"])


def test_checksum_follows_a_restart_from_zero(tmp_path: Path) -> None:
    """A server that ignores Range resends everything: huggingface_hub truncates what was kept and the
    checksum must then cover only the bytes written afresh."""
    content = b"the whole file"
    partial = tmp_path / "blob.incomplete"
    partial.write_bytes(b"stale kept bytes")
    checksum = hub.Checksum(hashlib.sha256(content).hexdigest(), len(content))
    with hub.CountingFile(partial, hub.NoProgress(), checksum) as out:
        out.seek(0)
        out.truncate()
        out.write(content)
    assert partial.read_bytes() == content and checksum.matches(partial)


def test_git_blob_id_without_a_known_size_is_checked_on_the_finished_file(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(b"{}")
    blob_id = hashlib.sha1(b"blob 2\0{}").hexdigest()
    assert hub.Checksum(blob_id, None).matches(path)
    assert not hub.Checksum(hashlib.sha1(b"blob 2\0[]").hexdigest(), None).matches(path)


def served_file(server: HubServer, name: str) -> StoredFile:
    repo = server.repos[REPO]
    return repo.commits[repo.refs["main"]][name]


def assert_nothing_cached(home: Path, etag: str, name: str) -> None:
    """No blob, no partial file and no snapshot link of the file: nothing a later run could take for it."""
    folder = home / "hub" / "models--deepseek-ai--DeepSeek-OCR"
    assert not (folder / "blobs" / etag).exists()
    assert not list(folder.rglob("*.incomplete"))
    assert not list(folder.glob(f"snapshots/*/{name}"))


@pytest.mark.parametrize("how", ["at", "option", "commit"])
def test_pinned_revision_is_what_lands(server: HubServer, revisions: dict[str, Path], how: str) -> None:
    commit = server.repos[REPO].refs["v1"]
    snapshot = {
        "at": lambda: hub.download(f"{REPO}@v1"),
        "option": lambda: hub.download(REPO, revision="v1"),
        "commit": lambda: hub.download(REPO, revision=commit),
    }[how]()
    assert snapshot.commit == commit and snapshot.path.name == commit
    assert same_files(snapshot.path, revisions["old"])
    assert same_files(hub.download(REPO).path, revisions["new"])


def test_conflicting_revisions_are_a_usage_error(server: HubServer) -> None:
    with pytest.raises(Exception, match="contradicts") as err:
        hub.download(f"{REPO}@v1", revision="main")
    assert err.value.exit_code == ExitCode.USAGE  # type: ignore[attr-defined]


def test_offline_reads_the_cache_without_any_request(
    server: HubServer, revisions: dict[str, Path], monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:
    online = hub.download(f"{REPO}@v1")
    hub.download(REPO)
    server.reset_counts()
    assert hub.download(f"{REPO}@v1", offline=True).path == online.path
    use_environment(monkeypatch, HF_ENDPOINT=server.url, HF_HOME=str(home), HF_HUB_OFFLINE="1")
    assert same_files(hub.download(REPO).path, revisions["new"])
    assert server.requests == []


def test_offline_without_the_model_says_to_download_it(server: HubServer) -> None:
    with pytest.raises(ModelError, match=rf"offline mode is on .* run `dsocr download {REPO}` once while online"):
        hub.download(REPO, offline=True)
    assert server.requests == []


def test_unreachable_hub_without_cache_says_what_to_do(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_environment(monkeypatch, HF_ENDPOINT=unreachable_url(), HF_HOME=str(home))
    unreachable = r"cannot reach the Hugging Face hub at http://127\.0\.0\.1:\d+ .*not in the cache"
    with pytest.raises(ModelError, match=unreachable):
        hub.download(REPO)


def test_unreachable_hub_falls_back_to_the_cached_copy(
    server: HubServer, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cached = hub.download(REPO).path
    server.stop()
    snapshot = hub.download(REPO)
    assert snapshot.path == cached
    assert snapshot.note is not None and "using the cached copy" in snapshot.note


def test_private_repo_needs_hf_token(
    served: StandInRepo, revisions: dict[str, Path], home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serve(monkeypatch, home, {REPO: protected(served)}) as server:
        with pytest.raises(ModelError, match="access denied .*set HF_TOKEN"):
            hub.download(REPO)
        monkeypatch.setenv("HF_TOKEN", "hf_wrong")
        with pytest.raises(ModelError, match="rejected the token; set HF_TOKEN"):
            hub.download(REPO)
        monkeypatch.setenv("HF_TOKEN", "hf_secret")
        assert same_files(hub.download(REPO).path, revisions["new"])
        assert all(r.authorized for r in server.requests if r.status == 200)


def test_gated_repo_says_to_accept_conditions(served: StandInRepo, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with serve(monkeypatch, home, {REPO: protected(served, gated=True)}):
        with pytest.raises(ModelError, match="access denied \\(gated repo\\).*HF_TOKEN"):
            hub.download(REPO)


def test_lfs_files_from_a_cdn_get_no_token(
    served: StandInRepo, revisions: dict[str, Path], home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serve(monkeypatch, home, {REPO: protected(served)}, cdn=True, HF_TOKEN="hf_secret") as server:
        assert same_files(hub.download(REPO).path, revisions["new"])
        (weights,) = server.file_requests(WEIGHTS)
        assert weights.path.startswith("/cdn/") and not weights.authorized


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("deepseek-ai/No-Such-Model", "repository not found on the hub"),
        (f"{REPO}@v9", "revision 'v9' not found"),
        ("not a repo!", "neither a model directory nor a hub repo id"),
    ],
)
def test_missing_repo_or_revision_is_named(server: HubServer, reference: str, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        hub.download(reference)


def test_repo_without_a_tokenizer_is_refused(tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = write_model_files(tmp_path / "broken", seed=3, weights_size=1000)
    (directory / "tokenizer.json").unlink()
    repo = StandInRepo()
    repo.add_revision(directory, "main")
    with serve(monkeypatch, home, {REPO: repo}) as server:
        with pytest.raises(ModelError, match="has no tokenizer.json"):
            hub.download(REPO)
        assert server.file_requests(WEIGHTS) == []


def test_not_enough_disk_space_fails_before_downloading(server: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(ModelError, match=r"needs 12\.\d MB \(\d+ bytes\) .* only 1.0 kB \(1000 bytes\) are free"):
        hub.download(REPO)
    assert server.file_requests(WEIGHTS) == []


def test_local_directory_is_used_as_it_is(tmp_path: Path, server: HubServer) -> None:
    assert hub.download(str(tmp_path)).path == tmp_path
    assert server.requests == []


def test_stand_in_reports_errors_as_the_hub_does(server: HubServer) -> None:
    """huggingface_hub itself maps the stand-in's answers to its usual exceptions."""
    assert Path(hf_hub_download(REPO, "README.md")).read_text() == "# DeepSeek-OCR\n"
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download(REPO, "missing.json")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, "config.json", revision="v9")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("someone/else", "config.json")


def test_download_bar_draws_only_on_a_terminal() -> None:
    for terminal, expected in ((True, "downloading model"), (False, "")):
        out = io.StringIO()
        bar = DownloadBar("downloading model", console=Console(file=out, force_terminal=terminal, width=100))
        bar.start(total=2_000_000, completed=500_000)
        bar.advance(1_000_000)
        bar.stop()
        assert expected in out.getvalue()
        if not terminal:
            assert out.getvalue() == ""


def test_download_bar_waits_for_the_run_display_to_pause() -> None:
    """During `convert` the pages display owns the terminal; the bar draws only once it is paused."""
    console = Console(file=io.StringIO(), force_terminal=True, width=100)
    reporter = Reporter(console=console)
    reporter.start(documents=1)
    hidden = DownloadBar("downloading model", console=console)
    hidden.start(total=10, completed=0)
    assert hidden.progress is None
    with reporter.paused():
        shown = DownloadBar("downloading model", console=console)
        shown.start(total=10, completed=0)
        assert shown.progress is not None
        shown.stop()
    assert reporter.progress is not None and reporter.progress.live.is_started
    reporter.finish("done", failed=False)
