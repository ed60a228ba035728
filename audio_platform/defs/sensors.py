"""Sensors: new and changed drops in the inbox become shard partitions and shard runs, with no click."""

import json
import time
from dataclasses import replace
from pathlib import Path

from dagster import (
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)
from pydantic import Field

from audio_platform.config_fields import described_fields
from audio_platform.defs.config import declared_fields_resource
from audio_platform.defs.partitions import SHARDS, shard_partitions
from audio_platform.defs.registration import PROCESS_SHARD_JOB, REGISTRATION_TAG, is_processed
from audio_platform.defs.resources import PlatformStorage
from audio_platform.settings import Settings
from audio_platform.storage.drops import drop_id_for
from audio_platform.storage.inbox import DropWatch, inbox_drops, inspect_drop
from audio_platform.storage.registration import WAITING, record_drop_state, register_drop_files

_INBOX_SETTINGS = declared_fields_resource(described_fields(Settings, include=("inbox_quiet_period_s", "shard_size")))


class InboxResource(_INBOX_SETTINGS):  # type: ignore[misc,valid-type]  # fields generated from Settings
    """Where drops land and when a drop counts as complete."""

    root: str = Field(description="The inbox folder: each sub-folder is a drop (default <home>/inbox).")
    # Bounds one tick's work so a burst of drops cannot stall the daemon; the rest wait a tick.
    max_drops_per_tick: int = Field(default=20, description="Drops registered per sensor tick at most.")


def _load_cursor(raw: str | None) -> dict[str, DropWatch]:
    return {name: DropWatch.from_json(watch) for name, watch in json.loads(raw)["drops"].items()} if raw else {}


def _dump_cursor(watches: dict[str, DropWatch]) -> str:
    return json.dumps({"drops": {name: watch.as_json() for name, watch in watches.items()}}, sort_keys=True)


@sensor(
    job_name=PROCESS_SHARD_JOB,
    minimum_interval_seconds=10,
    default_status=DefaultSensorStatus.RUNNING,
    description="Watches every drop folder in the inbox; a drop that is complete (ready marker and an "
    "unchanged listing, or unchanged for the quiet period) is registered as shard partitions, with one "
    "process_shard run per new or changed shard. Files added to a drop later register it again.",
)
def inbox_sensor(
    context: SensorEvaluationContext, storage: PlatformStorage, inbox: InboxResource
) -> SensorResult | SkipReason:
    previously = _load_cursor(context.cursor)
    watches = dict(previously)
    now = time.time()
    run_requests: list[RunRequest] = []
    new_partitions: list[str] = []
    waiting: list[str] = []
    registered = 0
    known_partitions = set(context.instance.get_dynamic_partitions(SHARDS))
    for folder in inbox_drops(Path(inbox.root)):
        try:
            status = inspect_drop(folder, inbox.inbox_quiet_period_s, now, watches.get(folder.name))
        except OSError as err:  # the folder vanished or turned unreadable while it was listed
            waiting.append(f"{folder.name}: cannot be listed ({err})")
            continue
        watches[folder.name] = status.watch
        if not status.complete:
            if status.watch.registered != status.watch.listing:
                waiting.append(f"{folder.name}: {status.reason}")
                # Visible in the drops table (and `audio-platform drops`) while it waits.
                record_drop_state(
                    storage.lake, drop_id_for(folder), folder.resolve(), WAITING, status.reason, len(status.files)
                )
            continue
        if registered >= inbox.max_drops_per_tick:
            waiting.append(f"{folder.name}: complete; registered on a later tick (max_drops_per_tick)")
            continue
        try:
            registration = register_drop_files(storage.lake, folder, inbox.shard_size, status.files)
        except (OSError, ValueError) as err:
            # One drop that cannot be registered must not stop the others: it is retried next tick.
            context.log.error(f"drop {folder.name} could not be registered: {err}")
            continue
        registered += 1
        plan = registration.plan
        ids = registration.registration_ids
        to_check = registration.shards_to_check
        # Every shard of the drop is a partition, also when an earlier tick wrote the lake and died.
        new_partitions.extend(shard for shard in to_check if shard not in known_partitions)
        # One run per shard and registration id (Dagster skips a run key it has seen), and none for
        # a shard already processed at its id (e.g. by `audio-platform process`).
        run_requests.extend(
            RunRequest(
                partition_key=shard,
                run_key=f"{shard}@{ids[shard]}",
                tags={"drop_id": plan.drop_id, REGISTRATION_TAG: ids[shard]},
            )
            for shard in to_check
            if not is_processed(context.instance, shard, ids[shard])
        )
        watches[folder.name] = replace(status.watch, registered=status.watch.listing, drop_id=plan.drop_id)
        kind = "follow-up registration of drop" if status.follow_up else "drop"
        context.log.info(f"{kind} {folder.name} ({status.reason}): {plan.change_summary}")
    for line in waiting:
        context.log.info(f"waiting for {line}")
    if not run_requests and watches == previously:
        return SkipReason("no complete new or changed drop" + (f"; waiting for {len(waiting)}" if waiting else ""))
    return SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=[shard_partitions.build_add_request(sorted(set(new_partitions)))]
        if new_partitions
        else [],
        cursor=_dump_cursor(watches),
    )


# Evaluates the declarative automation conditions (the warehouse, later the models) every 15 s
# instead of the default 30 s, so curated rows show up soon after a shard finishes.
automation_sensor = AutomationConditionSensorDefinition(
    "automation_sensor",
    target="*",
    minimum_interval_seconds=15,
    default_status=DefaultSensorStatus.RUNNING,
)
