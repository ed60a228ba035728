"""Drops and shards: a drop (a folder of audio) is split into shards of at most N files.

Shard keys are deterministic and readable: ``<drop-slug>-<path-hash6>-<index:04d>``. The same
folder always yields the same keys and the same file-to-shard assignment (files sorted by
relative path), so registering a drop twice is a no-op rather than a second copy of the data.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from audio_platform.storage.tables import SHARD_FILES

# Marker files a producer writes to say "this drop is complete"; they are not inputs.
READY_MARKERS = frozenset({"_READY", "_SUCCESS", ".ready"})


@dataclass(frozen=True)
class DropPlan:
    drop_id: str
    root: Path
    shards: dict[str, list[str]]  # shard key -> relative paths

    @property
    def file_count(self) -> int:
        return sum(len(paths) for paths in self.shards.values())

    def shard_files(self, shard: str) -> pl.DataFrame:
        rel_paths = self.shards[shard]
        return SHARD_FILES.conform(
            pl.DataFrame(
                {
                    "shard": [shard] * len(rel_paths),
                    "drop_id": [self.drop_id] * len(rel_paths),
                    "drop_root": [storable_path(str(self.root))] * len(rel_paths),
                    "rel_path": [storable_path(p) for p in rel_paths],
                    "source_path": [storable_path(str(self.root / p)) for p in rel_paths],
                    "position": list(range(len(rel_paths))),
                },
                schema=SHARD_FILES.schema,
            )
        )


def drop_id_for(folder: Path) -> str:
    resolved = Path(folder).resolve()
    slug = re.sub(r"[^a-z0-9]+", "-", resolved.name.lower()).strip("-")[:40] or "drop"
    digest = hashlib.sha1(str(resolved).encode("utf-8", "surrogateescape")).hexdigest()[:6]
    return f"{slug}-{digest}"


def iter_drop_files(folder: Path) -> Iterator[str]:
    """Relative paths of every candidate input under ``folder``, hidden entries and markers excluded.

    Symlinks are listed (never followed into directories) so that the inventory can reject them
    with a reason instead of silently skipping them; that includes a symlink to a directory,
    which os.walk would otherwise leave out without a trace.
    """
    root = Path(folder)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        linked_dirs = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        for name in [*filenames, *linked_dirs]:
            if name.startswith(".") or name in READY_MARKERS:
                continue
            yield os.path.relpath(os.path.join(dirpath, name), root)


# A byte that is not UTF-8, as storable_path writes it.
_ESCAPED_BYTE = re.compile(rb"\\x([0-9a-f]{2})")


def storable_path(path: str) -> str:
    """``path`` as text that Parquet and DuckDB can hold (UTF-8): a file name byte that is not
    UTF-8 (it reaches Python as a lone surrogate) is written ``\\xNN``, as ``ls -b`` shows it."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def undecodable_original(stored: str) -> str | None:
    """The real path a :func:`storable_path` result stands for when that path is not UTF-8, else None."""
    raw = _ESCAPED_BYTE.sub(lambda m: bytes([int(m[1], 16)]), stored.encode("utf-8"))
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return os.fsdecode(raw)
    return None


def plan_drop(folder: Path, shard_size: int) -> DropPlan:
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    root = Path(folder).resolve()
    if not root.is_dir():
        raise NotADirectoryError(f"drop folder {folder} does not exist or is not a directory")
    drop_id = drop_id_for(root)
    rel_paths = sorted(iter_drop_files(root))
    shards = {
        f"{drop_id}-{index:04d}": rel_paths[start : start + shard_size]
        for index, start in enumerate(range(0, len(rel_paths), shard_size))
    }
    return DropPlan(drop_id=drop_id, root=root, shards=shards)
