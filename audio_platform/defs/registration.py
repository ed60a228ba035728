"""Registering a drop: plan its shards, record their file lists in the lake, add the partitions."""

from pathlib import Path

from dagster import DagsterInstance

from audio_platform.defs.partitions import SHARDS
from audio_platform.storage.drops import DropPlan, plan_drop
from audio_platform.storage.lake import Lake
from audio_platform.storage.tables import SHARD_FILES


def register_drop(instance: DagsterInstance, lake: Lake, folder: Path, shard_size: int) -> DropPlan:
    """Idempotent: the same folder gives the same shard keys and file lists every time."""
    plan = plan_drop(folder, shard_size)
    for shard in plan.shards:
        lake.write_table(SHARD_FILES, shard, plan.shard_files(shard))
    existing = set(instance.get_dynamic_partitions(SHARDS))
    new_keys = [key for key in plan.shards if key not in existing]
    if new_keys:
        instance.add_dynamic_partitions(SHARDS, new_keys)
    return plan
