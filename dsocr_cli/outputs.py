"""Where each input's results go, decided before any model loads: pure rules over paths, plus the manifest.

``-o`` (``parse_output``):

- none or ``-``: stdout (one input only);
- an existing directory, or a name that does not end with the format's extension: a folder;
- ``NAME<ext>`` (``.md``, ``.html``, ``.txt``, ``.json``, ``_det.mmd``, ``.pdf``, ``.hocr``): that file (one input
  only; with several formats, ``convert.run`` refuses a file).

Whether ``-o`` is a file never depends on how many inputs a run happens to find.

Names inside a folder (``plan_outputs``): an input found in a directory argument keeps its path relative
to that argument (``tree/a/doc.pdf`` -> ``out/a/doc.md``); a file named on the command line, and stdin
(``stdin``), goes to the top of the folder. Inputs that would still share a name (``x.pdf`` and
``x.png`` in one folder, or two ``doc.pdf`` from different places) are all named after their whole
file name instead (``x.pdf.md``, ``x.png.md``), and where even that collides, the second and later
inputs, in command-line order, get ``~2``, ``~3``, ... (``doc.pdf~2.md``). Figures go to
``<output stem>_images/`` and the layout PDF to ``<output stem>_layouts.pdf``, so they follow the same
names. An output (or figure folder, layout PDF or manifest) that is, or resolves to, an input is a usage
error.

Every output has a manifest beside it, ``.<output name>.dsocr.json``, recording how it was made and whether
it is complete; ``--skip-existing`` trusts an output only through it (``skip_reason``), and a directory walk
never takes a file a manifest lists as dsocr's own (``is_own_output``).

While a run converts an input into a folder it holds the input's claim, ``.<output name>.dsocr.lock`` beside the
output (``OutputPlan.claim``; the protocol is ``writers.atomic.Claims``), so that runs sharing the folder never
convert one input at the same time. An output another run finished after this run began (its manifest changed
since ``manifest_state`` was taken, and now lists files made from the same input with the same settings) is that
run's work, complete or not, and is not redone by this one (``made_meanwhile``), even with ``--force``.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePath
from typing import Any

from dsocr_cli.errors import UsageError
from dsocr_cli.inputs.discover import STDIN, InputSource

MANIFEST_SUFFIX = ".dsocr.json"
CLAIM_SUFFIX = ".dsocr.lock"
MANIFEST_VERSION = 1
IMAGES_SUFFIX = "_images"
LAYOUT_SUFFIX = "_layouts.pdf"


@dataclass(frozen=True)
class OutputTarget:
    """Where results go: stdout (``directory`` and ``file`` None), one file, or a directory."""

    directory: Path | None = None
    file: Path | None = None

    @property
    def to_stdout(self) -> bool:
        return self.directory is None and self.file is None


def parse_output(output: str | None, suffix: str, source_count: int, format_name: str) -> OutputTarget:
    """``-o`` as a target (the module docstring's rule); ``suffix`` is the format's file extension."""
    if output is None or output == STDIN:
        if source_count > 1:
            raise UsageError(f"{source_count} inputs would be mixed on stdout; give -o DIR")
        return OutputTarget()
    path = Path(output)
    if path.is_dir() or not output.lower().endswith(suffix.lower()) or output.endswith(os.sep):
        return OutputTarget(directory=path)
    if source_count > 1:
        raise UsageError(
            f"-o {output}: names one {format_name} file, but {source_count} inputs were given; "
            f"give a folder (a name without {suffix})"
        )
    return OutputTarget(file=path)


@dataclass(frozen=True)
class OutputPlan:
    """Every path one input's conversion may write."""

    main: Path
    """The document (Markdown, HTML, ...)."""

    @property
    def stem(self) -> str:
        return self.main.name[: -len(self.suffix)] if self.suffix else self.main.stem

    suffix: str = ""

    @property
    def images(self) -> Path:
        """Figure crops (Markdown)."""
        return self.main.with_name(self.stem + IMAGES_SUFFIX)

    @property
    def layout(self) -> Path:
        """``--layout-pdf``."""
        return self.main.with_name(self.stem + LAYOUT_SUFFIX)

    @property
    def manifest(self) -> Path:
        return manifest_path(self.main)

    @property
    def claim(self) -> Path:
        """Held by the run converting this output (``writers.atomic.Claims``)."""
        return self.main.with_name(f".{self.main.name}{CLAIM_SUFFIX}")


def manifest_path(main: Path) -> Path:
    return main.with_name(f".{main.name}{MANIFEST_SUFFIX}")


def relative_name(source: InputSource) -> PurePath:
    """The input's name below the folder: its path under the directory argument it was found in, else its base name."""
    if source.relative is not None:
        return PurePath(source.relative)
    if source.name == STDIN:
        return PurePath("stdin")
    return PurePath(PurePath(source.name).name or source.stem)


def plan_outputs(sources: Sequence[InputSource], target: OutputTarget, suffix: str) -> list[OutputPlan | None]:
    """One plan per source (None for stdout), distinct for distinct sources; see the module docstring."""
    if target.to_stdout:
        return [None] * len(sources)
    if target.file is not None:
        return [OutputPlan(target.file, suffix) for _ in sources]
    assert target.directory is not None
    names = [relative_name(source) for source in sources]
    # A name stands for the output and every path derived from it; compare them all, case-folded by stem.
    by_short: dict[PurePath, list[int]] = defaultdict(list)
    for index, name in enumerate(names):
        by_short[_derived_key(name.parent / name.stem)].append(index)
    chosen: list[PurePath] = []
    taken: set[PurePath] = set()
    for name in names:
        clash = len(by_short[_derived_key(name.parent / name.stem)]) > 1
        base = name.parent / (name.name if clash else name.stem)
        candidate, n = base, 1
        while _derived_key(candidate) in taken:
            n += 1
            candidate = base.parent / f"{base.name}~{n}"
        taken.add(_derived_key(candidate))
        chosen.append(candidate)
    return [OutputPlan(target.directory / (str(stem) + suffix), suffix) for stem in chosen]


def _derived_key(stem: PurePath) -> PurePath:
    """Stems that would produce clashing outputs produce the same key (an ``x_images`` input vs ``x``'s figures)."""
    text = stem.name
    for tail in (IMAGES_SUFFIX, LAYOUT_SUFFIX.removesuffix(".pdf")):
        text = text.removesuffix(tail)
    return stem.parent / text


def check_not_inputs(
    plans: Iterable[OutputPlan | None], sources: Sequence[InputSource], layout_pdf: bool, target: OutputTarget
) -> None:
    """A usage error when ``-o`` or any path a run may write is, or resolves to, one of its inputs."""
    inputs = {os.path.realpath(source.path): source.name for source in sources if source.path is not None}
    given = target.file or target.directory
    if given is not None and os.path.realpath(given) in inputs:
        raise UsageError(f"-o {given}: is the input {inputs[os.path.realpath(given)]}; choose another output")
    for plan in plans:
        if plan is None:
            continue
        paths = [plan.main, plan.manifest, plan.images]
        if layout_pdf:
            paths.append(plan.layout)
        for path in paths:
            hit = inputs.get(os.path.realpath(path))
            if hit is not None:
                raise UsageError(f"-o: {path} would overwrite the input {hit}; choose another output")
            if path == plan.images:
                for real, name in inputs.items():
                    if real.startswith(os.path.realpath(path) + os.sep):
                        raise UsageError(f"-o: {path} would overwrite the input {name}; choose another output")


# ---------------------------------------------------------------------------------------------- manifest


@dataclass
class Manifest:
    """How one output was made: compared field by field with a new run's to decide whether it is done."""

    settings: dict[str, Any]
    """What shapes the output: model reference, mode, prompt, format, pages, dpi, guard, layout PDF, ..."""
    input: dict[str, Any]
    """The input's name, real path, size and mtime (ns) when it was read."""
    provenance: dict[str, Any] = field(default_factory=dict)
    """Facts of the run that made it (dsocr version, model revision, device, dtype, quant)."""
    pages: list[dict[str, Any]] = field(default_factory=list)
    """Per page: number, finished (EOS), looped."""
    files: list[str] = field(default_factory=list)
    """Every file written, relative to the manifest's folder."""
    complete: bool = False
    version: int = MANIFEST_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, indent=1, sort_keys=True) + "\n"

    @classmethod
    def read(cls, path: Path) -> Manifest | None:
        """The manifest at ``path``; None when missing or unreadable (then the output is not trusted)."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("version") != MANIFEST_VERSION:
                return None
            return cls(**data)
        except (OSError, ValueError, TypeError):
            return None


def input_identity(source: InputSource) -> dict[str, Any]:
    """What tells whether an input changed since an output was made: real path, size, mtime."""
    if source.path is None:
        return {"name": source.name}
    stat = source.path.stat()
    return {
        "name": source.name,
        "path": os.path.realpath(source.path),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
    }


def skip_reason(plan: OutputPlan, source: InputSource, settings: dict[str, Any]) -> tuple[bool, str]:
    """(skip?, why): an output is skipped only when its manifest says it is complete for this input and settings.

    An existing file without a manifest was not made by this dsocr (or by an older one): it is kept, not
    overwritten, unless ``--force``. Anything else (settings or input changed, pages looped or truncated,
    a page subset, a figure or layout PDF missing) is redone.
    """
    main = plan.main
    if main.is_dir():
        return False, f"{main} is a directory"
    manifest = Manifest.read(plan.manifest)
    if not main.exists():
        return False, "no output yet"
    if manifest is None:
        return True, "output exists but was not made by dsocr (--force to overwrite)"
    if source.path is None:
        return False, "stdin cannot be compared with an earlier run"
    try:
        identity = input_identity(source)
    except OSError:
        return False, "input cannot be examined"
    changed = [key for key in ("path", "size", "mtime_ns") if manifest.input.get(key) != identity.get(key)]
    if changed:
        return False, "the input changed since the output was made"
    differing = sorted(key for key in settings.keys() | manifest.settings.keys() if settings.get(key) != manifest.settings.get(key))
    if differing:
        return False, "made with other settings (" + ", ".join(differing) + ")"
    if not manifest.complete:
        looped = sum(1 for page in manifest.pages if page.get("looped"))
        unfinished = sum(1 for page in manifest.pages if not page.get("finished"))
        if looped:
            return False, f"incomplete ({looped} page(s) looped)"
        if unfinished:
            return False, f"incomplete ({unfinished} page(s) truncated)"
        return False, "incomplete (an earlier run did not finish it)"
    missing = [name for name in manifest.files if not (plan.manifest.parent / name).is_file()]
    if missing:
        return False, f"{missing[0]} is missing"
    return True, "complete for the same input and settings"


ManifestState = tuple[int, int, int] | None
"""A manifest file as it was at one moment (inode, size, mtime), or None when there was none."""


def manifest_state(plan: OutputPlan) -> ManifestState:
    """How ``plan``'s manifest is now; a later, different state means some run wrote it in between."""
    try:
        status = plan.manifest.stat()
    except OSError:
        return None
    return status.st_ino, status.st_size, status.st_mtime_ns


def made_meanwhile(plan: OutputPlan, source: InputSource, settings: dict[str, Any], before: ManifestState) -> str | None:
    """Why this run need not convert ``source``: another run finished its output since ``before``
    (``manifest_state`` when this run began) from the same input with the same settings; None otherwise.

    "Finished" includes pages that looped or were truncated: that run's outcome is this round's, and a later
    run redoes it as usual. An "incomplete" note without files (a run that is converting it or failed) is not.
    """
    if manifest_state(plan) == before or not plan.main.is_file():
        return None
    manifest = Manifest.read(plan.manifest)
    if manifest is None or not manifest.files:
        return None
    try:
        identity = input_identity(source)
    except OSError:
        return None
    if any(manifest.input.get(key) != identity.get(key) for key in ("path", "size", "mtime_ns")):
        return None
    if any(settings.get(key) != manifest.settings.get(key) for key in settings.keys() | manifest.settings.keys()):
        return None
    if manifest.complete:
        return "converted by another run meanwhile"
    return "converted by another run meanwhile, with looped or truncated pages (its manifest has them)"


def is_own_output(path: Path) -> bool:
    """Whether a manifest in ``path``'s folder, or in the folder above a figures folder, lists ``path``.

    Directory walks use this so that dsocr never reads its own outputs (layout PDFs, figure crops) back as inputs.
    """
    for folder in (path.parent, path.parent.parent):
        try:
            relative = str(path.relative_to(folder))
        except ValueError:
            continue
        for manifest in _manifests(folder):
            if relative in manifest.files:
                return True
    return False


_MANIFEST_CACHE: dict[str, tuple[float, list[Manifest]]] = {}


def _manifests(folder: Path) -> list[Manifest]:
    """The manifests in ``folder`` (cached per folder and its mtime: a walk asks once per file)."""
    key = str(folder)
    try:
        mtime = folder.stat().st_mtime
    except OSError:
        return []
    cached = _MANIFEST_CACHE.get(key)
    if cached is not None and cached[0] == mtime:
        return cached[1]
    found = []
    try:
        names = [entry.name for entry in os.scandir(folder) if entry.name.startswith(".") and entry.name.endswith(MANIFEST_SUFFIX)]
    except OSError:
        names = []
    for name in names:
        manifest = Manifest.read(folder / name)
        if manifest is not None:
            found.append(manifest)
    _MANIFEST_CACHE[key] = (mtime, found)
    return found
