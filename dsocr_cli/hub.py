"""Model references, downloads into the Hugging Face cache, and what that cache holds.

A model reference is a local directory or a hub repo id with an optional ``@revision``. Downloads go
into the standard Hugging Face cache through huggingface_hub, so HF_HOME, HF_HUB_CACHE, HF_ENDPOINT,
HF_TOKEN and HF_HUB_OFFLINE mean what they mean for every other Hugging Face tool, and ``hf cache``
sees dsocr's models. Only the files inference needs are fetched (no remote code, no card images).

dsocr moves the bytes itself, with huggingface_hub's ``http_get``, because huggingface_hub 2.x writes
each download to a randomly named file and deletes it when the download fails: an interrupted 6.7 GB
download would start again from zero. dsocr writes ``blobs/<etag>.incomplete`` instead (the name
huggingface_hub's cache scanner reports as an interrupted download) and continues it with a Range
request on the next run, under huggingface_hub's own per-blob lock. ``snapshot_download`` then finds
every blob in place and only writes the snapshot links and tree listing. Downloads use plain HTTP, not
Xet, for the same reason.

No file enters the cache unverified: before ``<etag>.incomplete`` becomes ``blobs/<etag>`` its content
must hash to that ETag (the sha256 for LFS files, the git blob id for the others), whether it arrived in
one run or over several. The hash is computed while the bytes are written, continuing from the bytes an
earlier run kept, so a 6.7 GB file is read back from disk at most once, and only its kept part. A file
that does not match is deleted and nothing of it is linked; the next run downloads it afresh.

Messages that embed the endpoint or a library's error text go through ``messages.redact``, so a
``user:password@`` in HF_ENDPOINT never reaches a terminal, whatever prints them.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import shutil
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx2
from huggingface_hub import (
    HfApi,
    constants,
    get_hf_file_metadata,
    hf_hub_url,
    scan_cache_dir,
    snapshot_download,
)
from huggingface_hub.errors import (
    CacheNotFound,
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    IncompleteSnapshotError,
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
    RevisionResolutionError,
)
from huggingface_hub.file_download import http_get, repo_folder_name
from huggingface_hub.hf_api import ModelInfo
from huggingface_hub.utils import (
    DeleteCacheStrategy,
    OfflineModeIsEnabled,
    WeakFileLock,
    build_hf_headers,
    disable_progress_bars,
    filter_repo_objects,
    validate_repo_id,
)

from dsocr_cli.defaults import DEFAULT_MODEL
from dsocr_cli.errors import ModelError, UsageError
from dsocr_cli.messages import redact
from dsocr_cli.progress import DownloadBar

MODEL_FILES = [
    "config.json",
    "*.safetensors",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "processor_config.json",
]
"""What inference reads; the official repo also holds remote code, a README and images, never fetched."""
REQUIRED_FILES = ("config.json", "tokenizer.json")
UNREACHABLE = (httpx2.HTTPError, OfflineModeIsEnabled, RevisionResolutionError)
"""The hub did not answer (no network, DNS, proxy, timeout); catch ``HfHubHTTPError``, a subclass, first."""
SHA256 = re.compile(r"[0-9a-f]{64}")
GIT_SHA1 = re.compile(r"[0-9a-f]{40}")
READ_CHUNK = 8 << 20
"""Bytes read at a time when hashing the part of a file an earlier run kept."""


@dataclass(frozen=True)
class ModelRef:
    """A hub model: repo id and, optionally, a branch, tag or commit."""

    repo: str
    revision: str | None = None

    def __str__(self) -> str:
        return f"{self.repo}@{self.revision}" if self.revision else self.repo

    @classmethod
    def parse(cls, reference: str, revision: str | None = None) -> ModelRef:
        """``owner/name[@revision]``; ``revision`` (from ``--revision``) must agree with an ``@revision``."""
        repo, _, pinned = reference.partition("@")
        if revision and pinned and revision != pinned:
            raise UsageError(f"{redact(reference)}: --revision {revision} contradicts @{pinned}")
        try:
            validate_repo_id(repo)
        except HFValidationError:
            raise ModelError(
                f"{redact(reference)}: neither a model directory nor a hub repo id (owner/name[@revision])"
            ) from None
        return cls(repo, revision or pinned or None)


class TransferProgress(Protocol):
    """Where a download reports bytes: ``start`` once with the totals, ``advance`` per write, then ``stop``."""

    def start(self, total: int, completed: int) -> None: ...

    def advance(self, count: int) -> None: ...

    def stop(self) -> None: ...


class NoProgress:
    """A ``TransferProgress`` that shows nothing (library use, tests)."""

    def start(self, total: int, completed: int) -> None:
        pass

    def advance(self, count: int) -> None:
        pass

    def stop(self) -> None:
        pass


@dataclass(frozen=True)
class Snapshot:
    """A model directory ready to load, and how this call obtained it."""

    path: Path
    commit: str | None = None
    fetched: int = 0
    """Bytes transferred by this call (0 when everything was cached)."""
    note: str | None = None
    """Set when the hub could not be asked and the cached copy was used as it is."""


@dataclass(frozen=True)
class RemoteFile:
    """A file of the repo at the resolved commit, as the hub's file listing describes it."""

    name: str
    size: int
    etag: str | None
    """sha256 for LFS files, git blob id otherwise: the blob's name in the cache."""


def hub_cache() -> Path:
    """The hub cache huggingface_hub uses: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub.

    Passed explicitly to every huggingface_hub call: its cache scanner keeps its own copy of the default.
    """
    return Path(constants.HF_HUB_CACHE).expanduser()


def repo_dir(repo: str) -> Path:
    return hub_cache() / repo_folder_name(repo_id=repo, repo_type="model")


def offline_requested(offline: bool) -> bool:
    """``--offline``, or HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE in the environment."""
    return offline or constants.is_offline_mode()


def human_size(count: float) -> str:
    """Bytes in decimal units, as download tools and disk tools print them (6.7 GB)."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(count) < 1000:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"


def resolve_model(reference: str = DEFAULT_MODEL, offline: bool = False, quiet: bool = False) -> Path:
    """A local directory as is; otherwise the hub model's cached snapshot, downloaded first when missing."""
    return download(reference, offline=offline, progress=DownloadBar(f"downloading {reference}", quiet=quiet)).path


def expand_model(reference: str) -> str:
    """``v1``/``ocr``/``v2``/``ocr2`` -> the family's hub repo (``models.registry.expand_model``)."""
    from dsocr_cli.models.registry import expand_model as expand

    return expand(reference)


def download(
    reference: str,
    revision: str | None = None,
    offline: bool = False,
    progress: TransferProgress | None = None,
) -> Snapshot:
    """Make ``reference`` available locally and return its directory.

    Offline (``offline`` or HF_HUB_OFFLINE) only the cache is read and no connection is attempted. Online,
    the revision is resolved on the hub and whatever the cache lacks is fetched, continuing partial
    files; when the hub cannot be reached the cached copy is used if there is one. Every failure is a
    one-line ``ModelError`` that says what to do.
    """
    local = Path(reference).expanduser()
    if revision is None and local.is_dir():
        return Snapshot(local)
    ref = ModelRef.parse(expand_model(reference), revision)
    if offline_requested(offline):
        return Snapshot(cached_snapshot(ref))
    try:
        return fetch(ref, progress or NoProgress())
    except HfHubHTTPError as exc:
        if exc.response.status_code < 500:
            raise hub_error(ref, exc) from None
        failure = first_line(exc)
    except UNREACHABLE as exc:
        failure = first_line(exc)
    except (HFValidationError, OSError) as exc:
        raise hub_error(ref, exc) from None
    path = cached_snapshot(ref, unreachable=failure)
    return Snapshot(path, note=f"cannot reach {endpoint()} ({failure}); using the cached copy of {ref}")


def cached_snapshot(ref: ModelRef, unreachable: str | None = None) -> Path:
    """The complete cached snapshot of ``ref``, found without any network access."""
    try:
        path = snapshot_download(
            ref.repo, revision=ref.revision, allow_patterns=MODEL_FILES, cache_dir=hub_cache(), local_files_only=True
        )
    except IncompleteSnapshotError:
        raise ModelError(
            f"{ref}: the cached copy is incomplete (an interrupted download); run `dsocr download {ref}` while "
            "online to finish it"
        ) from None
    except LocalEntryNotFoundError:
        if unreachable is None:
            raise ModelError(
                f"{ref}: not in the model cache ({hub_cache()}) and offline mode is on (--offline or HF_HUB_OFFLINE); "
                f"run `dsocr download {ref}` once while online, or pass --model DIR"
            ) from None
        raise ModelError(
            f"{ref}: cannot reach the Hugging Face hub at {endpoint()} ({unreachable}) and the model is not "
            f"in the cache ({hub_cache()}); check the network or HF_ENDPOINT and run `dsocr download {ref}`, "
            "or pass --model DIR"
        ) from None
    return Path(path)


def fetch(ref: ModelRef, progress: TransferProgress) -> Snapshot:
    """Resolve ``ref`` on the hub, fetch the files the cache lacks, and link the snapshot."""
    api = HfApi()
    revision = api.resolve_revision(ref.repo, revision=ref.revision, cache_dir=hub_cache())
    commit = revision.resolved
    files = model_files(ref, api.model_info(ref.repo, revision=commit, files_metadata=True))
    snapshot = repo_dir(ref.repo) / "snapshots" / commit
    if all((snapshot / f.name).is_file() for f in files):
        return Snapshot(snapshot, commit)
    missing: dict[str, RemoteFile] = {}  # one fetch per blob: files with the same content share it
    for file in files:
        blob = blob_path(ref, file)
        if not (snapshot / file.name).is_file() and (blob is None or not blob.is_file()):
            missing.setdefault(file.etag or file.name, file)
    check_free_space(ref, list(missing.values()))
    fetched = transfer(ref, commit, list(missing.values()), progress)
    with disable_progress_bars():
        path = snapshot_download(
            ref.repo, revision=revision, allow_patterns=[f.name for f in files], cache_dir=hub_cache()
        )
    return Snapshot(Path(path), commit, fetched)


def model_files(ref: ModelRef, info: ModelInfo) -> list[RemoteFile]:
    """The files of ``MODEL_FILES`` the repo has, with sizes; a repo lacking what inference needs is an error."""
    siblings = {s.rfilename: s for s in info.siblings or []}
    names = list(filter_repo_objects(siblings, allow_patterns=MODEL_FILES))
    lacking = [name for name in REQUIRED_FILES if name not in names]
    if not any(name.endswith(".safetensors") for name in names):
        lacking.append("*.safetensors weights")
    if lacking:
        raise ModelError(
            f"{ref}: the repository has no {', '.join(lacking)} at {info.sha or ref.revision}; "
            "not a DeepSeek-OCR checkpoint in the hub layout"
        )
    files = []
    for name in names:
        sibling = siblings[name]
        if sibling.lfs is not None:
            files.append(RemoteFile(name, sibling.lfs.size, sibling.lfs.sha256))
        else:
            files.append(RemoteFile(name, sibling.size or 0, sibling.blob_id))
    return files


def blob_path(ref: ModelRef, file: RemoteFile) -> Path | None:
    """Where the cache keeps the file's content; None when the listing gave no etag (it is fetched then)."""
    return repo_dir(ref.repo) / "blobs" / file.etag if file.etag else None


def partial_path(blob: Path) -> Path:
    return blob.with_name(f"{blob.name}.incomplete")


def partial_size(ref: ModelRef, file: RemoteFile) -> int:
    """Bytes an earlier run already fetched of ``file``."""
    blob = blob_path(ref, file)
    if blob is None or not partial_path(blob).is_file():
        return 0
    return min(partial_path(blob).stat().st_size, file.size)


def free_space(path: Path) -> int:
    """Free bytes on the disk that holds ``path`` (or would hold it, for a directory yet to be created)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return shutil.disk_usage(candidate).free
    return shutil.disk_usage(Path.cwd()).free


def check_free_space(ref: ModelRef, files: list[RemoteFile]) -> None:
    """Fail before the first byte when the files still to fetch do not fit on the cache's disk."""
    needed = sum(f.size - partial_size(ref, f) for f in files)
    free = free_space(hub_cache())
    if needed > free:
        raise ModelError(
            f"{ref}: the download needs {human_size(needed)} ({needed} bytes) in {hub_cache()} but only "
            f"{human_size(free)} ({free} bytes) are free; free some space or set HF_HUB_CACHE (or HF_HOME) "
            "to a bigger disk"
        )


def transfer(ref: ModelRef, commit: str, files: list[RemoteFile], progress: TransferProgress) -> int:
    """Fetch ``files`` one after the other into the cache's blobs; returns the bytes transferred."""
    if not files:
        return 0
    progress.start(total=sum(f.size for f in files), completed=sum(partial_size(ref, f) for f in files))
    fetched = 0
    try:
        with disable_progress_bars():
            for file in files:
                fetched += fetch_blob(ref, commit, file, progress)
    finally:
        progress.stop()
    return fetched


class Checksum:
    """The content hash an ETag names, fed a download's bytes in file order as they reach the disk.

    A 64-hex ETag (LFS files) is the content's sha256. A 40-hex one (every other file) is its git blob id,
    the sha1 of ``blob <size>\\0`` and then the content, so streaming it needs the final size up front (the
    metadata's); without it the finished file is read back, which is cheap as such files are small. An
    ETag of neither form names no checksum: that file (from a server that is not the hub) is taken as it
    is, as huggingface_hub takes it.
    """

    def __init__(self, etag: str, size: int | None) -> None:
        self.etag = etag
        self.initial: Any = None
        if SHA256.fullmatch(etag):
            self.initial = hashlib.sha256()
        elif GIT_SHA1.fullmatch(etag) and size is not None:
            self.initial = hashlib.sha1(b"blob %d\0" % size)
        self.hasher = self.initial.copy() if self.initial is not None else None

    @staticmethod
    def names_one(etag: str | None) -> bool:
        return etag is not None and bool(SHA256.fullmatch(etag) or GIT_SHA1.fullmatch(etag))

    def update(self, data: bytes | memoryview) -> None:
        if self.hasher is not None:
            self.hasher.update(data)

    def restart(self, path: Path, length: int) -> None:
        """Hash afresh, from the first ``length`` bytes of ``path``: what the file holds when writing resumes."""
        if self.initial is None:
            return
        self.hasher = self.initial.copy()
        if length <= 0:
            return
        with path.open("rb") as f:
            while length > 0 and (chunk := f.read(min(length, READ_CHUNK))):
                self.hasher.update(chunk)
                length -= len(chunk)

    def matches(self, path: Path) -> bool:
        """Whether the bytes fed (``path``'s content) are what the ETag names."""
        if self.hasher is not None:
            return self.hasher.hexdigest() == self.etag
        if GIT_SHA1.fullmatch(self.etag):
            data = path.read_bytes()
            return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest() == self.etag
        return True


class CountingFile(io.FileIO):
    """A partial download opened for appending that reports each byte written, or truncated, to the progress.

    Every byte the file holds goes through ``checksum`` in order: the bytes already there when it is opened
    (an earlier run's), then each write; a truncation re-hashes the bytes that remain.
    """

    def __init__(self, path: Path, progress: TransferProgress, checksum: Checksum) -> None:
        super().__init__(path, "ab")
        self.path = path
        self.progress = progress
        self.checksum = checksum
        self.written = 0
        checksum.restart(path, self.tell())

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):
            done += super().write(view[done:]) or 0
        self.checksum.update(view)
        self.written += done
        self.progress.advance(done)
        return done

    def truncate(self, size: int | None = None) -> int:
        """huggingface_hub truncates when a server ignores the Range header and resends everything."""
        before = os.fstat(self.fileno()).st_size
        after = super().truncate(size)
        self.checksum.restart(self.path, after)
        self.written += after - before
        self.progress.advance(after - before)
        return after


def fetch_blob(ref: ModelRef, commit: str, file: RemoteFile, progress: TransferProgress) -> int:
    """Fetch one file into ``blobs/<etag>``, continuing what an earlier run left in ``<etag>.incomplete``.

    The file becomes ``blobs/<etag>`` only once its whole content, kept part included, hashes to the ETag
    (or, should the ETag name no checksum, to the listing's sha256 or blob id). Otherwise the partial file
    is deleted and a ``ModelError`` says to run again: the next run starts from zero.
    """
    url = hf_hub_url(ref.repo, file.name, revision=commit)
    try:
        meta = get_hf_file_metadata(url)
    except RemoteEntryNotFoundError:
        raise ModelError(f"{ref}: file {file.name} not found in the repository at commit {commit[:12]}") from None
    if meta.etag is None or meta.commit_hash is None:
        raise ModelError(
            f"{ref}: {endpoint()} did not answer like a Hugging Face hub (no ETag or X-Repo-Commit for "
            f"{file.name}); check HF_ENDPOINT and any proxy"
        )
    folder = repo_folder_name(repo_id=ref.repo, repo_type="model")
    blob = hub_cache() / folder / "blobs" / meta.etag
    partial = partial_path(blob)
    lock = hub_cache() / ".locks" / folder / f"{meta.etag}.lock"
    blob.parent.mkdir(parents=True, exist_ok=True)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with WeakFileLock(lock):
        if blob.is_file():
            return 0
        resumed = partial.stat().st_size if partial.is_file() else 0
        if meta.size is not None and resumed > meta.size:
            partial.unlink()
            resumed = 0
        headers = build_hf_headers()
        if origin(meta.location) != origin(url):
            headers.pop("authorization", None)  # a CDN's signed URL; the token stays with the hub
        expected = next((e for e in (meta.etag, file.etag) if Checksum.names_one(e)), meta.etag)
        checksum = Checksum(expected, meta.size)
        with CountingFile(partial, progress, checksum) as out:
            try:
                http_get(
                    meta.location,
                    out,
                    resume_size=resumed,
                    headers=headers,
                    expected_size=meta.size,
                    displayed_filename=file.name,
                )
            except (httpx2.HTTPError, HfHubHTTPError) as exc:
                raise interrupted(ref, file, partial, exc) from None
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise ModelError(
                        f"{ref}: the disk holding {hub_cache()} is full; free some space and run the same command "
                        f"again to resume ({human_size(partial.stat().st_size)} of {file.name} are kept)"
                    ) from None
                raise interrupted(ref, file, partial, exc) from None
        if not checksum.matches(partial):
            partial.unlink()
            raise ModelError(
                f"{ref}: the content of {file.name} did not match the hub's checksum and was discarded; run the "
                "same command again to download it afresh"
            )
        os.replace(partial, blob)
        return out.written


def interrupted(ref: ModelRef, file: RemoteFile, partial: Path, exc: Exception) -> ModelError:
    kept = partial.stat().st_size if partial.is_file() else 0
    return ModelError(
        f"{ref}: download of {file.name} interrupted ({first_line(exc)}); {human_size(kept)} are kept in the "
        "cache, run the same command again to resume"
    )


def origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


def first_line(exc: BaseException) -> str:
    """A short reason for an error message: the HTTP status, or the exception's first line, redacted (a
    library's error text may quote a URL with its credentials)."""
    if isinstance(exc, HfHubHTTPError):
        return f"HTTP {exc.response.status_code}"
    text = str(exc).strip()
    return redact(text.splitlines()[0]) if text else type(exc).__name__


def endpoint() -> str:
    """HF_ENDPOINT as messages show it: redacted, so a ``user:password@`` in it stays private."""
    return redact(constants.ENDPOINT)


def hub_error(ref: ModelRef, exc: Exception) -> ModelError:
    """One line that names what the hub refused and what to do about it."""
    if isinstance(exc, GatedRepoError):
        return ModelError(
            f"{ref}: access denied (gated repo): accept its conditions on the model page, then set HF_TOKEN to a "
            "token of that account"
        )
    if isinstance(exc, RepositoryNotFoundError):
        if exc.response.status_code == 401:
            return ModelError(
                f"{ref}: access denied (private or gated repo, or no such repo): set HF_TOKEN to a token with read "
                "access"
            )
        return ModelError(f"{ref}: repository not found on the hub ({endpoint()}) and not a local directory")
    if isinstance(exc, RevisionNotFoundError):
        return ModelError(f"{ref}: revision {ref.revision!r} not found in {ref.repo}")
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code
        if status == 401:
            return ModelError(f"{ref}: access denied: the hub rejected the token; set HF_TOKEN to a valid token")
        if status == 403:
            return ModelError(f"{ref}: access denied: the token may not read this repo; set HF_TOKEN to one that can")
        return ModelError(f"{ref}: the hub refused the request (HTTP {status})")
    if isinstance(exc, HFValidationError):
        return ModelError(f"{ref}: {first_line(exc)}")
    return ModelError(f"{ref}: cannot write to the model cache {hub_cache()} ({first_line(exc)})")


@dataclass(frozen=True)
class CachedRevision:
    commit: str
    refs: tuple[str, ...]
    size: int
    path: Path
    family: str = ""
    """The model family that runs it (``deepseek-ocr``, ``deepseek-ocr-2``)."""


@dataclass(frozen=True)
class CachedModel:
    """A model in the cache: its dsocr-runnable revisions and any interrupted download."""

    repo: str
    revisions: tuple[CachedRevision, ...]
    size: int
    partial: int
    """Bytes of interrupted downloads that the next ``dsocr download`` continues."""

    def to_json(self) -> dict[str, Any]:
        return {
            "repo": self.repo,
            "size_bytes": self.size,
            "partial_bytes": self.partial,
            "revisions": [
                {"commit": r.commit, "refs": list(r.refs), "size_bytes": r.size, "path": str(r.path), "family": r.family}
                for r in self.revisions
            ],
        }


def cached_models() -> list[CachedModel]:
    """Cached models whose config dsocr runs, plus repos holding only an interrupted download."""
    try:
        info = scan_cache_dir(hub_cache())
    except CacheNotFound:
        return []
    partial: dict[Path, int] = defaultdict(int)
    for incomplete in info.incomplete_files:
        partial[incomplete.file_path.parent.parent] += incomplete.size_on_disk
    models = []
    for repo in info.repos:
        if repo.repo_type != "model":
            continue
        revisions = tuple(
            CachedRevision(rev.commit_hash, tuple(sorted(rev.refs)), rev.size_on_disk, rev.snapshot_path, family)
            for rev in sorted(repo.revisions, key=lambda r: r.last_modified, reverse=True)
            if (family := snapshot_family(rev.snapshot_path))
        )
        if revisions or repo.repo_path in partial:
            models.append(CachedModel(repo.repo_id, revisions, repo.size_on_disk, partial.pop(repo.repo_path, 0)))
    for folder, size in partial.items():
        prefix = f"models{constants.REPO_ID_SEPARATOR}"
        if folder.name.startswith(prefix):
            repo_id = folder.name.removeprefix(prefix).replace(constants.REPO_ID_SEPARATOR, "/")
            models.append(CachedModel(repo_id, (), 0, size))
    return sorted(models, key=lambda m: m.repo.lower())


def snapshot_family(snapshot: Path) -> str | None:
    """The name of the model family (``dsocr_cli.models.registry``) that recognises the snapshot's config.json."""
    try:
        config = json.loads((snapshot / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    from dsocr_cli.models.registry import family_for_config

    family = family_for_config(config)
    return family.name if family is not None else None



@dataclass(frozen=True)
class Removal:
    """What ``dsocr models rm`` will delete, worked out before asking for confirmation."""

    repo: str
    commits: tuple[str, ...]
    description: str
    size: int
    strategy: DeleteCacheStrategy | None
    folder: Path | None
    """A repo folder with no complete revision (an interrupted first download), removed as a whole."""

    def execute(self) -> None:
        if self.strategy is not None:
            self.strategy.execute()
        if self.folder is not None and self.folder.exists():
            shutil.rmtree(self.folder)


def plan_removal(reference: str) -> Removal:
    """The revisions ``repo[@revision]`` names (a ref or a commit prefix), or the whole repo."""
    ref = ModelRef.parse(expand_model(reference))
    folder = repo_dir(ref.repo)
    try:
        info = scan_cache_dir(hub_cache())
    except CacheNotFound:
        raise ModelError(f"{ref}: not in the model cache ({hub_cache()})") from None
    repo = next((r for r in info.repos if r.repo_type == "model" and r.repo_id == ref.repo), None)
    if repo is None:
        if ref.revision is None and folder.is_dir():
            size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
            return Removal(ref.repo, (), f"{ref.repo} (interrupted download)", size, None, folder)
        raise ModelError(f"{ref}: not in the model cache ({hub_cache()})")
    revisions = [
        rev
        for rev in repo.revisions
        if ref.revision is None or ref.revision in rev.refs or rev.commit_hash.startswith(ref.revision)
    ]
    if not revisions:
        cached = sorted({name for rev in repo.revisions for name in (*rev.refs, rev.commit_hash[:12])})
        raise ModelError(f"{ref}: no such revision in the cache (cached: {', '.join(cached)})")
    strategy = info.delete_revisions(*(rev.commit_hash for rev in revisions))
    partial = 0
    if len(revisions) == len(repo.revisions):  # the whole repo folder goes, interrupted downloads included
        partial = sum(f.size_on_disk for f in info.incomplete_files if f.file_path.parent.parent == repo.repo_path)
    names = ", ".join(sorted(" ".join((*rev.refs, rev.commit_hash[:12])) for rev in revisions))
    commits = tuple(rev.commit_hash for rev in revisions)
    return Removal(ref.repo, commits, f"{ref.repo} ({names})", strategy.expected_freed_size + partial, strategy, None)
