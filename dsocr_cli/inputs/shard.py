"""``--shard K/N``: a stable split of a run's inputs, so N machines given the same inputs share the work.

Each input belongs to exactly one of the N shards, decided by its own name alone (``shard_key``), never by
the rest of the list or by where the files are mounted: the first 8 bytes of the SHA-256 of the key (UTF-8,
NFC), as a big-endian number, modulo N, plus one. The key is what the input's output is named after:

- a file found in a directory argument: its path below that argument, with ``/`` separators
  (``scans/2024/a.pdf`` found in ``scans`` is ``2024/a.pdf``, whether ``scans`` is ``/mnt/nas/scans`` here
  or ``/data/scans`` on the next machine);
- a file named on the command line (or a pipe, or an argument that does not exist): its base name.

So ``dsocr convert scans -o out --shard K/N`` run for K = 1..N converts every input exactly once in all, on
any mix of machines, and the key never changes between dsocr versions (tests pin it). Stdin cannot be
split: ``-`` with ``--shard`` is a usage error (``check_shardable``).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import TypeVar

from dsocr_cli.errors import UsageError
from dsocr_cli.inputs.discover import STDIN, InputSource

__all__ = ["Shard", "check_shardable", "parse_shard", "shard_key", "shard_of"]

T = TypeVar("T")

_SPEC = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (1-based) of ``count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.index <= self.count:
            raise ValueError(f"shard {self.index}/{self.count}")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, source: InputSource) -> bool:
        return shard_of(shard_key(source), self.count) == self.index

    def select(self, items: Iterable[T], sources: Sequence[InputSource] | None = None) -> list[T]:
        """The items of this shard, in their order: ``items`` are the sources themselves, or run parallel to
        ``sources`` (plans, documents)."""
        items = list(items)
        keys = items if sources is None else list(sources)
        return [item for item, source in zip(items, keys, strict=True) if self.owns(source)]  # type: ignore[arg-type]


def parse_shard(text: str, option: str = "--shard") -> Shard:
    """``K/N`` with 1 <= K <= N; anything else is a one-line UsageError naming ``option``."""
    match = _SPEC.fullmatch(text)
    if match is not None:
        index, count = int(match[1]), int(match[2])
        if 1 <= index <= count:
            return Shard(index, count)
    raise UsageError(f"{option} {text!r}: expected K/N with 1 <= K <= N, e.g. 2/3")


def check_shardable(args: Iterable[str], shard: Shard | None, option: str = "--shard") -> None:
    """A UsageError when stdin is among the inputs of a sharded run (checked before stdin is read)."""
    if shard is not None and any(arg == STDIN for arg in args):
        raise UsageError(
            f"{option} splits files and directories between machines; stdin (-) is one machine's own input: "
            f"convert it without {option}"
        )


def shard_key(source: InputSource) -> str:
    """The name an input is assigned to a shard by (the module docstring): its path below its directory
    argument, else its base name; ``/``-separated, Unicode NFC."""
    if source.relative is not None:
        key = PurePath(source.relative).as_posix()
    else:
        name = source.name.rstrip("/\\")
        key = PurePath(name).name or name
    return unicodedata.normalize("NFC", key)


def shard_of(key: str, count: int) -> int:
    """The 1-based shard of ``count`` that ``key`` belongs to."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % count + 1
