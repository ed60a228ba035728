"""Drops and shards: a drop (a folder of audio) is split into shards of at most N files.

A file's shard never depends on its neighbours. The first registration of a folder sorts its
files by relative path and cuts them into shards ``<drop-slug>-<path-hash6>-<index:04d>``; every
later registration keeps each known file in the shard it was given, puts new files into new
shards (the next indices), and records what changed:

* a file whose size, modification time or inode changed (or that came back after removal) is
  updated in place, and its shard gets a new ``registration_id``;
* a file that is gone keeps its row with ``removed_at`` set, so the inventory reports it as
  ``removed`` instead of leaving stale rows or losing track of it;
* a shard nothing happened to keeps its ``registration_id``: its rows stay as they are.

A shard whose ``registration_id`` has no successful run is what needs processing, so a re-run of
a folder processes only what is new or changed (and anything an earlier, interrupted run left).
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from audio_platform.storage.metadata import METADATA_FILES
from audio_platform.storage.tables import SHARD_FILES

# Marker files a producer writes to say "this drop is complete"; they are not inputs.
READY_MARKERS = frozenset({"_READY", "_SUCCESS", ".ready"})
# Written into every platform home: a folder holding it is never read as input, so a drop that
# contains a home (or the home itself) cannot ingest the platform's own state.
HOME_MARKER = ".audio_platform_home"
_SHARD_INDEX = re.compile(r"-(\d{4,})$")


@dataclass(frozen=True)
class DropFile:
    """One candidate input as the file system showed it: its identity for change detection."""

    rel_path: str
    size: int
    mtime_ns: int
    inode: int


@dataclass(frozen=True)
class DropPlan:
    """The drop's shards after a registration.

    ``assignment`` holds every ``shard_files`` row of the drop (removed files included);
    ``changed_shards`` the shards whose files changed in this registration (new shards first
    registered included); ``counts`` how many files were new, changed, removed, unchanged."""

    drop_id: str
    root: Path
    assignment: pl.DataFrame
    changed_shards: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    # Shards left with no file (an earlier version's stale shards): run once, empty, to clear their rows.
    emptied: dict[str, str] = field(default_factory=dict)  # shard -> registration id

    @property
    def shards(self) -> dict[str, list[str]]:
        """shard key -> relative paths (removed files included), in shard order."""
        grouped: dict[str, list[str]] = {}
        for shard, rel_path in self.assignment.sort("shard", "position").select("shard", "rel_path").iter_rows():
            grouped.setdefault(shard, []).append(rel_path)
        return grouped

    @property
    def registration_ids(self) -> dict[str, str]:
        return {**self.emptied, **dict(self.assignment.select("shard", "registration_id").unique("shard").iter_rows())}

    @property
    def change_summary(self) -> str:
        """What this registration found, e.g. "2 new, 1 removed, 5 unchanged" ("no files" when empty)."""
        return ", ".join(f"{n} {kind}" for kind, n in self.counts.items() if n) or "no files"

    @property
    def file_count(self) -> int:
        return self.assignment.height

    def shard_files(self, shard: str) -> pl.DataFrame:
        return self.assignment.filter(pl.col("shard") == shard).sort("position")


def drop_id_for(folder: Path) -> str:
    resolved = Path(folder).resolve()
    slug = re.sub(r"[^a-z0-9]+", "-", resolved.name.lower()).strip("-")[:40] or "drop"
    digest = hashlib.sha1(str(resolved).encode("utf-8", "surrogateescape")).hexdigest()[:6]
    return f"{slug}-{digest}"


def is_platform_home(folder: Path | str) -> bool:
    return os.path.lexists(os.path.join(folder, HOME_MARKER))


def mark_platform_home(home: Path) -> None:
    """Write the marker that keeps ``home`` out of every drop (idempotent)."""
    home.mkdir(parents=True, exist_ok=True)
    marker = home / HOME_MARKER
    if not marker.exists():
        marker.write_text("audio_platform home: never read as input\n", encoding="utf-8")


def iter_drop_files(folder: Path) -> Iterator[str]:
    """Relative paths of every candidate input under ``folder``.

    Hidden folders and platform homes are skipped (they are never inputs); hidden *files* are
    listed, so the inventory accounts for them with a reason. Ready markers and audiofolder
    metadata files (``storage.metadata``) are not inputs.
    Symlinks are listed (never followed into directories) so that the inventory can reject them
    with a reason instead of silently skipping them; that includes a symlink to a directory,
    which os.walk would otherwise leave out without a trace.
    """
    root = Path(folder)
    unreadable: list[str] = []
    # A folder that cannot be listed is an entry itself (the inventory gives it a row and a reason)
    # instead of silently hiding its files; the root itself must be listable.
    walk = os.walk(root, followlinks=False, onerror=lambda err: unreadable.append(err.filename))
    for dirpath, dirnames, filenames in walk:
        dirnames[:] = [
            d for d in dirnames if not d.startswith(".") and not is_platform_home(os.path.join(dirpath, d))
        ]
        linked_dirs = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        for name in [*filenames, *linked_dirs]:
            if name in READY_MARKERS or name == HOME_MARKER or name in METADATA_FILES:
                continue
            yield os.path.relpath(os.path.join(dirpath, name), root)
    for path in unreadable:
        if os.path.abspath(path) == os.path.abspath(root):
            raise PermissionError(f"drop folder {root} cannot be listed")
        yield os.path.relpath(path, root)


def scan_drop(folder: Path) -> list[DropFile]:
    """Every candidate input of ``folder`` with its size, modification time and inode, sorted by
    relative path. A file that vanishes while it is listed is left out: it is not there."""
    files = []
    for rel_path in iter_drop_files(folder):
        try:
            info = os.lstat(os.path.join(folder, rel_path))
        except FileNotFoundError:
            continue
        except OSError:
            files.append(DropFile(rel_path, -1, -1, -1))  # listed but not stat-able: the inventory says why
            continue
        files.append(DropFile(rel_path, info.st_size, info.st_mtime_ns, info.st_ino))
    return sorted(files, key=lambda f: f.rel_path)


def fingerprint(files: list[DropFile]) -> str:
    """One digest of the listing: any file added, removed, renamed, grown, touched or replaced changes it."""
    digest = hashlib.sha1()
    for f in files:
        digest.update(f"{storable_path(f.rel_path)}\0{f.size}\0{f.mtime_ns}\0{f.inode}\n".encode())
    return digest.hexdigest()


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


def drop_root_for(folder: Path) -> Path:
    """``folder`` resolved, after checking that it can be a drop."""
    root = Path(folder).resolve()
    if not root.is_dir():
        raise NotADirectoryError(f"drop folder {folder} does not exist or is not a directory")
    if is_platform_home(root):
        raise ValueError(f"{folder} is an audio_platform home (it holds {HOME_MARKER}): it is never an input")
    return root


def _file_row(shard: str, drop_id: str, root: Path, f: DropFile, position: int, registration_id: str) -> dict:
    return {
        "shard": shard,
        "drop_id": drop_id,
        "drop_root": storable_path(str(root)),
        "rel_path": storable_path(f.rel_path),
        "source_path": storable_path(str(root / f.rel_path)),
        "position": position,
        "size": f.size,
        "mtime_ns": f.mtime_ns,
        "inode": f.inode,
        "removed_at": None,
        "registration_id": registration_id,
    }


def _new_registration_id() -> str:
    return uuid.uuid4().hex[:16]


def plan_drop(
    folder: Path,
    shard_size: int,
    previous: pl.DataFrame | None = None,
    *,
    files: list[DropFile] | None = None,
    now: datetime | None = None,
) -> DropPlan:
    """Assign the files of ``folder`` to shards, keeping the assignment ``previous`` (the drop's
    ``shard_files`` rows from earlier registrations, or None) for every file it knows.

    ``files`` is the listing to use (default: :func:`scan_drop` now), so a caller that judged the
    drop complete from one listing registers exactly that listing."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    root = drop_root_for(folder)
    drop_id = drop_id_for(root)
    listing = scan_drop(root) if files is None else sorted(files, key=lambda f: f.rel_path)
    current = {storable_path(f.rel_path): f for f in listing}
    stamp = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    counts = {"new": 0, "changed": 0, "removed": 0, "unchanged": 0}
    rows: list[dict] = []
    changed: set[str] = set()
    known = SHARD_FILES.conform(previous) if previous is not None and previous.height else SHARD_FILES.empty()
    known = known.filter(pl.col("drop_id") == drop_id).sort("shard", "position")
    # Earlier versions cut shards from the sorted listing and left trailing shards behind when a
    # folder shrank, so a path may be known twice: its first shard keeps it.
    known_once = known.unique("rel_path", keep="first", maintain_order=True)
    stale = sorted(set(known["shard"]) - set(known_once["shard"]))
    for row in known_once.iter_rows(named=True):
        f = current.pop(row["rel_path"], None)
        if f is None:
            if row["removed_at"] is None:
                row = {**row, "removed_at": stamp}
                counts["removed"] += 1
                changed.add(row["shard"])
            else:
                counts["unchanged"] += 1
        elif row["removed_at"] is not None or (row["size"], row["mtime_ns"], row["inode"]) != (
            f.size,
            f.mtime_ns,
            f.inode,
        ):
            row = {**row, "size": f.size, "mtime_ns": f.mtime_ns, "inode": f.inode, "removed_at": None}
            counts["changed"] += 1
            changed.add(row["shard"])
        else:
            counts["unchanged"] += 1
        rows.append(row)
    next_index = 1 + max(
        (int(m[1]) for shard in known["shard"].unique() if (m := _SHARD_INDEX.search(shard))), default=-1
    )
    new_files = sorted(current.values(), key=lambda f: f.rel_path)
    for start in range(0, len(new_files), shard_size):
        shard = f"{drop_id}-{next_index:04d}"
        next_index += 1
        registration_id = _new_registration_id()
        rows.extend(
            _file_row(shard, drop_id, root, f, position, registration_id)
            for position, f in enumerate(new_files[start : start + shard_size])
        )
        counts["new"] += len(new_files[start : start + shard_size])
        changed.add(shard)
    assignment = pl.DataFrame(rows, schema=SHARD_FILES.schema) if rows else SHARD_FILES.empty()
    # A shard that changed gets a new registration id: its earlier runs no longer count as done.
    renewed = {shard: _new_registration_id() for shard in changed if shard in set(known["shard"])}
    if renewed:
        assignment = assignment.with_columns(
            pl.col("shard").replace_strict(renewed, default=pl.col("registration_id")).alias("registration_id")
        )
    emptied = {shard: _new_registration_id() for shard in stale}
    return DropPlan(drop_id, root, assignment, sorted({*changed, *stale}), counts, emptied)


def with_new_registration(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` (one shard's ``shard_files`` rows) marked as needing a new run, files unchanged."""
    return frame.with_columns(pl.lit(_new_registration_id()).alias("registration_id"))
