"""A stand-in for the Hugging Face hub: a real HTTP server on 127.0.0.1 for download tests.

Nothing where dsocr is tested can reach huggingface.co, so the tests point ``HF_ENDPOINT`` at this
server. It speaks the part of the hub's HTTP interface that huggingface_hub 2.4 uses to download:

- ``GET /api/models/{repo}`` and ``GET /api/models/{repo}/revision/{revision}`` (``HfApi.model_info``,
  ``repo_info``, ``resolve_revision``): ``sha`` and ``siblings``; with ``?blobs=true`` each sibling also
  carries ``size``, ``blobId`` and, for LFS files, ``lfs: {sha256, size, pointerSize}``.
- ``GET /api/models/{repo}/tree/{revision}[/{path}]?recursive=`` (``list_repo_tree``, which
  ``snapshot_download`` calls): ``[{type, oid, size, path, lfs: {oid, size, pointerSize}}]``.
- ``HEAD`` and ``GET /{repo}/resolve/{revision}/{filename}`` (``get_hf_file_metadata``, ``http_get``):
  ``X-Repo-Commit``, ``ETag`` (git blob id, or the sha256 for LFS files), ``X-Linked-Etag`` and
  ``X-Linked-Size`` for LFS files, ``Content-Length``, ``Accept-Ranges``; ``Range: bytes=a-[b]`` gets
  ``206`` with ``Content-Range`` (``416`` when unsatisfiable). With ``cdn=True`` LFS files answer ``302``
  with the ``X-Linked-*`` headers and a ``Location`` on another origin (``localhost`` instead of
  ``127.0.0.1``), as the real hub sends LFS downloads to its CDN; that URL needs no token.
- Errors as the hub reports them, in ``X-Error-Code`` / ``X-Error-Message``: unknown repo ``404
  RepoNotFound``; unknown revision ``404 RevisionNotFound``; unknown file ``404 EntryNotFound`` (with
  ``X-Repo-Commit``); a repo with a token and no ``Authorization: Bearer`` header ``401 RepoNotFound``
  (``401 GatedRepo`` when gated); a wrong token ``401 "Invalid credentials in Authorization header"``.

``POST /api/models/{repo}/paths-info/{revision}`` is not served: huggingface_hub 2.4 does not call it to
download. No response carries ``X-Xet-Hash``, ``X-Xet-Refresh-Route`` or a ``xet-auth`` link, and tree entries
have no ``xetHash``, so huggingface_hub never switches to Xet storage and downloads over plain HTTP
even with ``hf_xet`` installed. Every request is logged; body bytes sent are counted per file; a GET
can be cut after N bytes (the connection drops mid-body, as on a flaky network), optionally followed
by ``503`` answers until ``heal()``, so that a download fails and must be resumed by a later run; and
a file can be served with corrupted bytes (same length, same ETag and sha256) to every GET without a
``Range`` until ``heal()``, as a bad proxy or disk would, so that a fresh download gets wrong content.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import random
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest
from huggingface_hub import constants as hf_constants

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".png", ".jpg", ".pdf")
LFS_MIN_SIZE = 10 << 20
"""Files the real repos keep in LFS: weights and images by ``.gitattributes``, anything over 10 MiB."""


@dataclass(frozen=True)
class StoredFile:
    """One file of one revision, with the identifiers the hub reports for it."""

    path: Path
    size: int
    git_oid: str
    sha256: str | None
    """Set for LFS files: their ETag and blob name in the cache are the content's sha256."""

    @classmethod
    def read(cls, path: Path, name: str) -> StoredFile:
        stat = path.stat()
        git_oid, sha256 = digests(path.resolve(), stat.st_size, stat.st_mtime_ns)
        lfs = name.endswith(LFS_SUFFIXES) or stat.st_size >= LFS_MIN_SIZE
        return cls(path, stat.st_size, git_oid, sha256 if lfs else None)

    @property
    def etag(self) -> str:
        return self.sha256 or self.git_oid

    def pointer_size(self) -> int:
        """Length of the git-lfs pointer file git stores instead of the content."""
        return len(f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {self.size}\n")


@functools.lru_cache(maxsize=None)
def digests(path: Path, size: int, mtime_ns: int) -> tuple[str, str]:
    """Git blob id and sha256 of a file, computed once per content (revisions often share weights)."""
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % size + data).hexdigest(), hashlib.sha256(data).hexdigest()


@dataclass
class StandInRepo:
    """A model repo: commits (each a directory of files) and refs (branch or tag -> commit)."""

    token: str | None = None
    gated: bool = False
    commits: dict[str, dict[str, StoredFile]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)

    def add_revision(self, directory: str | Path, *refs: str) -> str:
        """Serve ``directory`` as a new commit, pointed at by ``refs`` (e.g. "main", "v1"); returns its sha."""
        directory = Path(directory)
        files = {
            p.relative_to(directory).as_posix(): StoredFile.read(p, p.name)
            for p in sorted(directory.rglob("*"))
            if p.is_file()
        }
        listing = "".join(f"{name} {f.etag}\n" for name, f in files.items())
        commit = hashlib.sha1(f"{len(self.commits)}\n{listing}".encode()).hexdigest()
        self.commits[commit] = files
        for ref in refs:
            self.refs[ref] = commit
        return commit

    def resolve(self, revision: str) -> str | None:
        if revision in self.commits:
            return revision
        return self.refs.get(revision)

    def lfs_object(self, sha256: str) -> tuple[str, StoredFile] | None:
        """The LFS file with this content hash, in any commit (what the CDN serves)."""
        for files in self.commits.values():
            for name, stored in files.items():
                if stored.sha256 == sha256:
                    return name, stored
        return None


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    status: int
    range: str | None
    authorized: bool
    body_bytes: int
    filename: str | None


@dataclass
class Cut:
    after: int
    fail_after: bool


class HubServer:
    """The stand-in hub, started on a free port of 127.0.0.1 (``with HubServer(...) as hub``)."""

    def __init__(self, repos: dict[str, StandInRepo] | None = None, cdn: bool = False) -> None:
        self.repos: dict[str, StandInRepo] = dict(repos or {})
        self.cdn = cdn
        self.requests: list[Request] = []
        self.cuts: dict[str, Cut] = {}
        self.failing: set[str] = set()
        self.corrupted: set[str] = set()
        self.lock = threading.Lock()
        self.connections: set[socket.socket] = set()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.hub = self  # type: ignore[attr-defined]
        self.thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HubServer:
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="stand-in hub", daemon=True
        )
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, drop open keep-alive connections too, and free the port."""
        if self.thread is None:
            return
        self.httpd.shutdown()
        with self.lock:
            for conn in list(self.connections):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self.httpd.server_close()
        self.thread.join()
        self.thread = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add_repo(self, repo_id: str, repo: StandInRepo | None = None) -> StandInRepo:
        self.repos[repo_id] = repo or StandInRepo()
        return self.repos[repo_id]

    def cut_after(self, filename: str, nbytes: int, fail_after: bool = False) -> None:
        """The next GET of ``filename`` drops the connection after ``nbytes`` body bytes.

        With ``fail_after`` every later GET of it answers 503 until ``heal()``: the hub "went away" and
        the download in progress cannot finish in this run.
        """
        with self.lock:
            self.cuts[filename] = Cut(nbytes, fail_after)

    def corrupt(self, filename: str) -> None:
        """Every GET of ``filename`` without a ``Range`` (a fresh download, not a resumed one) gets its bytes
        with ``CORRUPT_OFFSETS`` flipped, until ``heal()``; length, ETag and sha256 stay as advertised."""
        with self.lock:
            self.corrupted.add(filename)

    def heal(self) -> None:
        """Undo ``cut_after`` and ``corrupt``: every file is served whole and intact again."""
        with self.lock:
            self.cuts.clear()
            self.failing.clear()
            self.corrupted.clear()

    def reset_counts(self) -> None:
        with self.lock:
            self.requests.clear()

    def bytes_served(self, filename: str) -> int:
        """Body bytes sent for ``filename`` (any repo or revision) since the last ``reset_counts``."""
        with self.lock:
            return sum(r.body_bytes for r in self.requests if r.filename == filename)

    def file_requests(self, filename: str, method: str = "GET") -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.filename == filename and r.method == method]

    def record(self, request: Request) -> None:
        with self.lock:
            self.requests.append(request)

    def take_cut(self, filename: str) -> Cut | None:
        with self.lock:
            cut = self.cuts.pop(filename, None)
            if cut is not None and cut.fail_after:
                self.failing.add(filename)
            return cut

    def is_failing(self, filename: str) -> bool:
        with self.lock:
            return filename in self.failing

    def is_corrupted(self, filename: str) -> bool:
        with self.lock:
            return filename in self.corrupted


class _HubError(Exception):
    def __init__(self, status: int, code: str | None, message: str, commit: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.commit = commit


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "dsocr-stand-in-hub"

    @property
    def hub(self) -> HubServer:
        return self.server.hub  # type: ignore[attr-defined]

    def setup(self) -> None:
        super().setup()
        with self.hub.lock:
            self.hub.connections.add(self.connection)

    def finish(self) -> None:
        with self.hub.lock:
            self.hub.connections.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the request log is ``HubServer.requests``."""

    def do_HEAD(self) -> None:
        self.dispatch(head=True)

    def do_GET(self) -> None:
        self.dispatch(head=False)

    def dispatch(self, head: bool) -> None:
        self.status = 500
        self.body_bytes = 0
        self.filename: str | None = None
        split = urlsplit(self.path)
        parts = [unquote(p) for p in split.path.split("/")[1:]]
        query = parse_qs(split.query)
        try:
            if parts[:2] == ["api", "models"] and len(parts) >= 4 and not head:
                self.api(parts[2:], query)
            elif len(parts) >= 5 and parts[2] == "resolve":
                self.resolve(f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]), head)
            elif len(parts) >= 4 and parts[0] == "cdn":
                self.cdn_file(f"{parts[1]}/{parts[2]}", parts[3], head)
            else:
                raise _HubError(404, None, "Not Found")
        except _HubError as err:
            self.send_error_response(err)
        finally:
            self.hub.record(
                Request(
                    method=self.command,
                    path=self.path,
                    status=self.status,
                    range=self.headers.get("Range"),
                    authorized=self.headers.get("Authorization") is not None,
                    body_bytes=self.body_bytes,
                    filename=self.filename,
                )
            )

    def repo(self, repo_id: str) -> StandInRepo:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            raise _HubError(404, "RepoNotFound", "Repository not found")
        if repo.token is not None:
            given = self.headers.get("Authorization")
            if given is None:
                code = "GatedRepo" if repo.gated else "RepoNotFound"
                raise _HubError(401, code, f"Access to model {repo_id} is restricted. You must be authenticated.")
            if given != f"Bearer {repo.token}":
                raise _HubError(401, None, "Invalid credentials in Authorization header")
        return repo

    def commit(self, repo: StandInRepo, revision: str) -> str:
        commit = repo.resolve(revision)
        if commit is None:
            raise _HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return commit

    def api(self, parts: list[str], query: dict[str, list[str]]) -> None:
        repo_id, rest = f"{parts[0]}/{parts[1]}", parts[2:]
        repo = self.repo(repo_id)
        if not rest or rest[0] == "revision":
            commit = self.commit(repo, "/".join(rest[1:]) if rest else "main")
            blobs = query.get("blobs", ["false"])[0].lower() == "true"
            self.send_json(self.model_info(repo_id, repo, commit, blobs))
        elif rest[0] == "tree" and len(rest) >= 2:
            commit = self.commit(repo, rest[1])
            recursive = query.get("recursive", ["false"])[0].lower() == "true"
            self.send_json(list(self.tree(repo.commits[commit], "/".join(rest[2:]), recursive)))
        else:
            raise _HubError(404, None, "Not Found")

    @staticmethod
    def model_info(repo_id: str, repo: StandInRepo, commit: str, blobs: bool) -> dict:
        siblings = []
        for name, f in repo.commits[commit].items():
            sibling: dict = {"rfilename": name}
            if blobs:
                sibling.update(size=f.size, blobId=f.git_oid)
                if f.sha256 is not None:
                    sibling["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": f.pointer_size()}
            siblings.append(sibling)
        return {
            "_id": hashlib.md5(repo_id.encode()).hexdigest()[:24],
            "id": repo_id,
            "modelId": repo_id,
            "author": repo_id.split("/")[0],
            "sha": commit,
            "lastModified": "2025-10-20T00:00:00.000Z",
            "private": repo.token is not None and not repo.gated,
            "gated": "auto" if repo.gated else False,
            "disabled": False,
            "tags": [],
            "siblings": siblings,
        }

    @staticmethod
    def tree(files: dict[str, StoredFile], prefix: str, recursive: bool) -> Iterator[dict]:
        base = f"{prefix.rstrip('/')}/" if prefix else ""
        folders: set[str] = set()
        for name, f in files.items():
            if not name.startswith(base):
                continue
            rest = name[len(base) :]
            for depth in range(rest.count("/") if recursive else min(rest.count("/"), 1)):
                folders.add(base + "/".join(rest.split("/")[: depth + 1]))
            if recursive or "/" not in rest:
                entry: dict = {"type": "file", "oid": f.git_oid, "size": f.size, "path": name}
                if f.sha256 is not None:
                    entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": f.pointer_size()}
                yield entry
        for folder in sorted(folders):
            yield {"type": "directory", "oid": hashlib.sha1(folder.encode()).hexdigest(), "size": 0, "path": folder}

    def resolve(self, repo_id: str, revision: str, filename: str, head: bool) -> None:
        self.filename = filename
        repo = self.repo(repo_id)
        commit = self.commit(repo, revision)
        stored = repo.commits[commit].get(filename)
        if stored is None:
            raise _HubError(404, "EntryNotFound", f"{filename} does not exist on {revision}", commit=commit)
        headers = {"X-Repo-Commit": commit, "ETag": f'"{stored.etag}"'}
        if stored.sha256 is not None:
            headers.update({"X-Linked-Etag": f'"{stored.sha256}"', "X-Linked-Size": str(stored.size)})
            if self.hub.cdn:
                location = f"http://localhost:{self.hub.port}/cdn/{quote(repo_id)}/{stored.sha256}"
                self.status = 302
                self.send_response(302)
                self.send_headers({**headers, "Location": location, "Content-Length": "0"})
                return
        self.send_file(stored, headers, head)

    def cdn_file(self, repo_id: str, sha256: str, head: bool) -> None:
        repo = self.hub.repos.get(repo_id)
        found = repo.lfs_object(sha256) if repo is not None else None
        if found is None:
            raise _HubError(404, None, "Not Found")
        self.filename, stored = found
        self.send_file(stored, {"ETag": f'"{sha256}"'}, head)

    def send_file(self, stored: StoredFile, headers: dict[str, str], head: bool) -> None:
        assert self.filename is not None
        if not head and self.hub.is_failing(self.filename):
            raise _HubError(503, None, "Service Unavailable")
        start, end = 0, stored.size - 1
        requested = self.headers.get("Range")
        if requested is not None and not head:
            span = parse_range(requested, stored.size)
            if span is None:
                self.status = 416
                self.send_response(416)
                self.send_headers({"Content-Range": f"bytes */{stored.size}", "Content-Length": "0"})
                return
            start, end = span
        partial = requested is not None and not head
        self.status = 206 if partial else 200
        self.send_response(self.status)
        headers = {
            **headers,
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
            "Content-Length": str(end - start + 1),
        }
        if partial:
            headers["Content-Range"] = f"bytes {start}-{end}/{stored.size}"
        self.send_headers(headers)
        if head:
            return
        cut = self.hub.take_cut(self.filename)
        limit = end - start + 1 if cut is None else min(cut.after, end - start + 1)
        if not partial and self.hub.is_corrupted(self.filename):
            self.wfile.write(corrupted(stored.path.read_bytes())[:limit])
            self.body_bytes = limit
        else:
            with stored.path.open("rb") as f:
                self.body_bytes = self.connection.sendfile(f, start, limit)  # zero-copy, without holding the GIL
        if cut is not None:
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)

    def send_headers(self, headers: dict[str, str]) -> None:
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    def send_json(self, data: object) -> None:
        body = json.dumps(data).encode()
        self.status = 200
        self.send_response(200)
        self.send_headers({"Content-Type": "application/json", "Content-Length": str(len(body))})
        self.wfile.write(body)

    def send_error_response(self, err: _HubError) -> None:
        body = json.dumps({"error": err.message}).encode()
        self.status = err.status
        self.send_response(err.status)
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body)), "X-Error-Message": err.message}
        if err.code is not None:
            headers["X-Error-Code"] = err.code
        if err.commit is not None:
            headers["X-Repo-Commit"] = err.commit
        self.send_headers(headers)
        if self.command != "HEAD":
            self.wfile.write(body)


def corrupted(data: bytes) -> bytes:
    """``data`` with the bytes at ``CORRUPT_OFFSETS`` (those within it) inverted."""
    spoiled = bytearray(data)
    for offset in CORRUPT_OFFSETS:
        if offset < len(spoiled):
            spoiled[offset] ^= 0xFF
    return bytes(spoiled)


CORRUPT_OFFSETS = (0, 1000)
"""Where ``HubServer.corrupt`` flips bytes: within every file the tests serve, and within the first chunk
huggingface_hub writes, so a corrupted download cut short keeps corrupted bytes."""


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` -> inclusive (start, end); None when unsatisfiable."""
    unit, _, spec = header.partition("=")
    if unit.strip() != "bytes" or "," in spec:
        return None
    first, _, last = spec.strip().partition("-")
    if not first:
        start, end = max(size - int(last), 0), size - 1
    else:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    return (start, end) if start <= end and start < size else None


ENVIRONMENT = (
    "DSOCR_MODEL",
    "DSOCR_CACHE",
    "HF_ENDPOINT",
    "HF_HOME",
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "XDG_CACHE_HOME",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_TOKEN_PATH",
    "HF_OIDC_RESOURCE",
    "HF_HUB_DISABLE_XET",
    "HF_HUB_ETAG_TIMEOUT",
    "HF_HUB_DOWNLOAD_TIMEOUT",
)
"""What decides which model is fetched, from where, into which cache, with which token."""


def use_environment(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    """Set the ``ENVIRONMENT`` variables to exactly ``env``, as if the process had started with them.

    huggingface_hub reads most of these variables once, when ``huggingface_hub.constants`` is imported
    (ENDPOINT and the URL template, HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE, the token file path, ...).
    A fresh copy of that module is executed under the new environment and every constant that
    differs is patched onto the real module, so the rest of the test run is unaffected. HF_TOKEN is
    read on every request and needs no patching.
    """
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location("_hf_constants_under_test", hf_constants.__file__)
    assert spec is not None and spec.loader is not None
    fresh = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fresh)
    for name, value in vars(fresh).items():
        if name.isupper() and getattr(hf_constants, name, None) != value:
            monkeypatch.setattr(hf_constants, name, value)


@contextmanager
def serve(
    monkeypatch: pytest.MonkeyPatch, home: Path, repos: dict[str, StandInRepo], cdn: bool = False, **env: str
) -> Iterator[HubServer]:
    """A running stand-in with HF_ENDPOINT pointing at it and the HF cache under ``home``."""
    with HubServer(repos, cdn=cdn) as server:
        use_environment(monkeypatch, HF_ENDPOINT=server.url, HF_HOME=str(home), **env)
        yield server


def unreachable_url() -> str:
    """A loopback URL nothing listens on: connections are refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


WEIGHTS = "model-00001-of-000001.safetensors"


def write_model_files(directory: Path, seed: int, weights_size: int) -> Path:
    """A small stand-in for the official repo's files: its names and layout, random weight bytes (not
    loadable, for download tests), and the remote code and images a download must skip."""
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps({"model_type": "deepseek_vl_v2", "seed": seed}))
    (directory / "tokenizer.json").write_text(json.dumps({"version": "1.0", "seed": seed}))
    (directory / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 8192}))
    (directory / "special_tokens_map.json").write_text(json.dumps({"bos_token": "<s>"}))
    (directory / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"w": WEIGHTS}}))
    (directory / WEIGHTS).write_bytes(random.Random(seed).randbytes(weights_size))
    (directory / "README.md").write_text("# DeepSeek-OCR\n")
    (directory / "modeling_deepseekocr.py").write_text("raise RuntimeError('remote code is never fetched')\n")
    (directory / "assets").mkdir()
    (directory / "assets" / "fig1.png").write_bytes(random.Random(-seed).randbytes(5000))
    return directory
