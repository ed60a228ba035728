"""Registering a drop: one function for the CLI and the inbox sensor.

Plans the drop's shards against what the lake already holds (:func:`plan_drop`), gives up the
content claims of files that were removed or changed (so a renamed file, or a former duplicate,
becomes the owner of its content), marks for a re-run every shard whose duplicate pointed at such
a file, and records the new assignment in ``shard_files``. Claims are released before anything is
written: a crash in between leaves a registration that the next attempt repeats in full.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from audio_platform.audio.inventory import DUPLICATE, OK, claimant_for
from audio_platform.storage.content_index import INDEX_DIR, ContentIndex
from audio_platform.storage.drops import (
    DropFile,
    DropPlan,
    drop_id_for,
    drop_root_for,
    plan_drop,
    with_new_registration,
)
from audio_platform.storage.lake import Lake
from audio_platform.storage.tables import AUDIO_FILES, SHARD_FILES


@dataclass(frozen=True)
class Registration:
    plan: DropPlan
    # Shards of other drops (or of this drop, unchanged) whose duplicates lost their owner here.
    reopened_shards: list[str]
    registration_ids: dict[str, str]  # every shard above and of the plan -> its current id

    @property
    def shards_to_check(self) -> list[str]:
        """The drop's shards, then the reopened ones: each needs a run unless its id already has one."""
        return list(dict.fromkeys([*self.plan.shards, *self.reopened_shards]))


def known_assignment(lake: Lake, drop_id: str) -> pl.DataFrame | None:
    """The drop's ``shard_files`` rows from earlier registrations (older lakes' rows get the
    columns they lack as nulls, which counts their files as changed once)."""
    shards = [s for s in lake.shards(SHARD_FILES.name) if s.startswith(f"{drop_id}-")]
    frame = lake.read_many(SHARD_FILES.name, shards) if shards else None
    if frame is None:
        return None
    missing = [pl.lit(None, dtype).alias(c) for c, dtype in SHARD_FILES.schema.items() if c not in frame.columns]
    return frame.with_columns(missing).filter(pl.col("drop_id") == drop_id)


def _release_claims(lake: Lake, index: ContentIndex, plan: DropPlan, previous: pl.DataFrame) -> dict[str, str]:
    """Release the claims of files removed or changed since the last registration; returns the
    released content hashes -> the source path that had owned them."""
    before = previous.select("shard", "source_path", "size", "mtime_ns", "inode", "removed_at")
    after = plan.assignment.select("shard", "source_path", "size", "mtime_ns", "inode", "removed_at")
    gone = before.join(after, on=before.columns, how="anti", nulls_equal=True)
    released: dict[str, str] = {}
    for shard in gone["shard"].unique().to_list():
        inventory = lake.read_many(AUDIO_FILES.name, [shard])
        if inventory is None:
            continue  # never processed: nothing was claimed
        paths = set(gone.filter(pl.col("shard") == shard)["source_path"].to_list())
        owners = inventory.filter(pl.col("status").eq(OK) & pl.col("source_path").is_in(paths))
        for file_id, source_path in owners.select("file_id", "source_path").iter_rows():
            if index.release(file_id, claimant_for(shard, source_path)):
                released[file_id] = source_path
    return released


def _shards_with_duplicates_of(lake: Lake, released: dict[str, str]) -> list[str]:
    """Shards holding a file marked duplicate of content whose owner was just released."""
    if not released:
        return []
    inventory = lake.read_many(AUDIO_FILES.name)
    if inventory is None:
        return []
    orphans = inventory.filter(pl.col("status").eq(DUPLICATE) & pl.col("file_id").is_in(list(released)))
    return sorted(orphans["shard"].unique().to_list())


def register_drop_files(
    lake: Lake, folder: Path, shard_size: int, files: list[DropFile] | None = None
) -> Registration:
    """Register ``folder`` (with the listing ``files`` when given) and record it in the lake."""
    index = ContentIndex(str(lake.root / INDEX_DIR))
    drop_id = drop_id_for(drop_root_for(folder))
    previous = known_assignment(lake, drop_id)
    plan = plan_drop(folder, shard_size, previous, files=files)
    released = _release_claims(lake, index, plan, previous) if previous is not None else {}
    reopened = [s for s in _shards_with_duplicates_of(lake, released) if s not in plan.changed_shards]
    ids = plan.registration_ids
    for shard in reopened:
        frame = with_new_registration(
            plan.shard_files(shard) if shard in ids else lake.read(SHARD_FILES.name, shard)
        )
        lake.write_table(SHARD_FILES, shard, frame)
        ids[shard] = frame["registration_id"][0]
    for shard in plan.changed_shards:
        lake.write_table(SHARD_FILES, shard, plan.shard_files(shard))
    return Registration(plan, reopened, ids)
