"""Registering a drop: one function for the CLI and the inbox sensor.

Plans the drop's shards against what the lake already holds (:func:`plan_drop`), gives up the
content claims of files that were removed or changed (so a renamed file, or a former duplicate,
becomes the owner of its content), marks for a re-run every shard whose duplicate pointed at such
a file, and records the new assignment in ``shard_files``. Claims are released before anything is
written, and the shards to reopen are found again from the lake on every registration (any
duplicate of a file that is recorded removed), so a crash at any point loses neither.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from audio_platform.audio.inventory import DUPLICATE, claimant_for
from audio_platform.storage.content_index import INDEX_DIR, ContentIndex
from audio_platform.storage.drops import (
    DropFile,
    DropPlan,
    drop_id_for,
    drop_root_for,
    plan_drop,
    storable_path,
    with_new_registration,
)
from audio_platform.storage.lake import Lake
from audio_platform.storage.tables import AUDIO_FILES, DROPS, SHARD_FILES

# Beside the lake's tables (Lake.tables() skips names starting with "_").
LOCK_DIR = "_locks"
# States of a row of the drops table.
WAITING, REGISTERED = "waiting", "registered"


@dataclass(frozen=True)
class Registration:
    plan: DropPlan
    # Shards of other drops (or of this drop, unchanged) whose duplicates lost their owner here.
    reopened_shards: list[str]
    registration_ids: dict[str, str]  # every shard above and of the plan -> its current id

    @property
    def shards_to_check(self) -> list[str]:
        """The drop's shards (an emptied one included), then the reopened ones: each needs a run
        unless its registration id already has a successful one."""
        return list(dict.fromkeys([*self.plan.shards, *self.plan.changed_shards, *self.reopened_shards]))


def known_assignment(lake: Lake, drop_id: str) -> pl.DataFrame | None:
    """The drop's ``shard_files`` rows from earlier registrations (older lakes' rows get the
    columns they lack as nulls, which counts their files as changed once)."""
    shards = [s for s in lake.shards(SHARD_FILES.name) if s.startswith(f"{drop_id}-")]
    frame = lake.read_many(SHARD_FILES.name, shards) if shards else None
    if frame is None:
        return None
    missing = [pl.lit(None, dtype).alias(c) for c, dtype in SHARD_FILES.schema.items() if c not in frame.columns]
    return frame.with_columns(missing).filter(pl.col("drop_id") == drop_id)


def _gone_files(previous: pl.DataFrame, plan: DropPlan) -> pl.DataFrame:
    """(shard, source_path) of the files removed or changed since the last registration."""
    columns = ["shard", "source_path", "size", "mtime_ns", "inode", "removed_at"]
    before, after = previous.select(columns), plan.assignment.select(columns)
    return before.join(after, on=columns, how="anti", nulls_equal=True).select("shard", "source_path")


def _release_claims(lake: Lake, index: ContentIndex, gone: pl.DataFrame) -> None:
    """Give up the content claims that files removed or changed since the last registration hold
    (whatever their status: a file quarantined after hashing holds its claim too)."""
    for shard in gone["shard"].unique().to_list():
        inventory = lake.read_many(AUDIO_FILES.name, [shard])
        if inventory is None:
            continue  # never processed: nothing was claimed
        paths = gone.filter(pl.col("shard") == shard)["source_path"]
        holders = inventory.filter(pl.col("source_path").is_in(paths) & pl.col("file_id").is_not_null())
        for file_id, source_path in holders.select("file_id", "source_path").iter_rows():
            index.release(file_id, claimant_for(shard, source_path))


def _shards_with_duplicates_of(lake: Lake, paths: list[str]) -> list[str]:
    """Shards holding a file marked duplicate of one of ``paths`` (files that left the drop or
    changed): they must run again so that one of them owns the content. Recomputed from the lake on
    every registration, so a crash anywhere in between never loses them."""
    if not paths:
        return []
    inventory = lake.read_many(AUDIO_FILES.name)
    if inventory is None:
        return []
    orphans = inventory.filter(pl.col("status").eq(DUPLICATE) & pl.col("duplicate_of").is_in(paths))
    return sorted(orphans["shard"].unique().to_list())


def register_drop_files(
    lake: Lake, folder: Path, shard_size: int, files: list[DropFile] | None = None
) -> Registration:
    """Register ``folder`` (with the listing ``files`` when given) and record it in the lake."""
    drop_id = drop_id_for(drop_root_for(folder))
    with _registration_lock(lake, drop_id):
        return _register(lake, folder, shard_size, files, drop_id)


@contextmanager
def _registration_lock(lake: Lake, drop_id: str) -> Iterator[None]:
    """One registration of a drop at a time (the CLI and the inbox sensor may race): both would
    otherwise give new files the same next shard index. A file lock in a local lake; on an object
    store, registrations of one drop must come from one place (the sensor)."""
    if lake.remote:
        yield
        return
    folder = Path(lake.root.path) / LOCK_DIR
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{drop_id}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _register(lake: Lake, folder: Path, shard_size: int, files: list[DropFile] | None, drop_id: str) -> Registration:
    index = ContentIndex(str(lake.root / INDEX_DIR))
    previous = known_assignment(lake, drop_id)
    plan = plan_drop(folder, shard_size, previous, files=files)
    gone = _gone_files(previous, plan) if previous is not None else None
    if gone is not None:
        _release_claims(lake, index, gone)
    removed = plan.assignment.filter(pl.col("removed_at").is_not_null())["source_path"].to_list()
    owners_gone = sorted({*(gone["source_path"].to_list() if gone is not None else []), *removed})
    reopened = [s for s in _shards_with_duplicates_of(lake, owners_gone) if s not in plan.changed_shards]
    ids = plan.registration_ids
    for shard in reopened:
        frame = with_new_registration(
            plan.shard_files(shard) if shard in ids else lake.read(SHARD_FILES.name, shard)
        )
        lake.write_table(SHARD_FILES, shard, frame)
        ids[shard] = frame["registration_id"][0]
    for shard in plan.changed_shards:
        lake.write_table(SHARD_FILES, shard, plan.shard_files(shard))
    reason = f"registered: {plan.change_summary}"
    record_drop_state(lake, drop_id, plan.root, REGISTERED, reason, plan.file_count, len(plan.shards))
    return Registration(plan, reopened, ids)


def record_drop_state(
    lake: Lake, drop_id: str, root: Path, state: str, reason: str, files: int, shards: int = 0
) -> None:
    """Write the drop's row of the ``drops`` table (keeping when it was first seen)."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    previous = lake.read_many(DROPS.name, [drop_id])
    if previous is not None and previous.height:
        first_seen = previous["first_seen_at"][0]
        shards = shards or int(previous["shards"][0])  # a registered drop waiting again keeps its shards
    else:
        first_seen = now
    row = {
        "drop_id": drop_id,
        "drop_root": storable_path(str(root)),
        "state": state,
        "reason": reason,
        "files": files,
        "shards": shards,
        "first_seen_at": first_seen,
        "updated_at": now,
    }
    lake.write_table(DROPS, drop_id, pl.DataFrame([row], schema=DROPS.schema))
