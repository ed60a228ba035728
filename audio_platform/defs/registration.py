"""Registering a drop from Dagster's side: the lake records (one function for the CLI and the
sensor, :func:`register_drop_files`) plus the shard partitions and which shards still need a run."""

from pathlib import Path

from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from audio_platform.defs.partitions import SHARDS
from audio_platform.storage.lake import Lake
from audio_platform.storage.registration import Registration, register_drop_files

PROCESS_SHARD_JOB = "process_shard"
# Tag of every process_shard run: the shard's registration id it processed (see storage.drops).
REGISTRATION_TAG = "audio_platform/registration_id"
PARTITION_TAG = "dagster/partition"


def register_drop(instance: DagsterInstance, lake: Lake, folder: Path, shard_size: int) -> Registration:
    """Register ``folder`` and add its new shard partitions to the instance."""
    registration = register_drop_files(lake, folder, shard_size)
    existing = set(instance.get_dynamic_partitions(SHARDS))
    new_keys = [key for key in registration.plan.shards if key not in existing]
    if new_keys:
        instance.add_dynamic_partitions(SHARDS, new_keys)
    return registration


def is_processed(instance: DagsterInstance, shard: str, registration_id: str) -> bool:
    """Whether a process_shard run of ``shard`` at ``registration_id`` succeeded."""
    records = instance.get_run_records(
        RunsFilter(
            job_name=PROCESS_SHARD_JOB,
            statuses=[DagsterRunStatus.SUCCESS],
            tags={PARTITION_TAG: shard, REGISTRATION_TAG: registration_id},
        ),
        limit=1,
    )
    return bool(records)


def shards_needing_runs(instance: DagsterInstance, registration: Registration) -> list[str]:
    """The shards of ``registration`` whose current registration id has no successful run."""
    ids = registration.registration_ids
    return [shard for shard in registration.shards_to_check if not is_processed(instance, shard, ids[shard])]
