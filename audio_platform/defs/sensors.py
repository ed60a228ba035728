"""Sensors: new drops in the inbox become shard partitions and shard runs, with no click."""

import json
import time
from pathlib import Path

from dagster import (
    AutomationConditionSensorDefinition,
    ConfigurableResource,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)
from pydantic import Field

from audio_platform.defs.partitions import shard_partitions
from audio_platform.defs.resources import PlatformStorage
from audio_platform.storage.drops import plan_drop
from audio_platform.storage.inbox import inspect_drop, pending_drops
from audio_platform.storage.tables import SHARD_FILES

PROCESS_SHARD_JOB = "process_shard"


class InboxResource(ConfigurableResource):
    """Where drops land and when a drop counts as complete."""

    root: str = Field(description="The inbox folder: each sub-folder is a drop (default <home>/inbox).")
    quiet_period_s: float = Field(
        default=60.0, description="AUDIO_PLATFORM_INBOX_QUIET_PERIOD_S: unchanged this long, a drop is complete."
    )
    shard_size: int = Field(default=500, description="AUDIO_PLATFORM_SHARD_SIZE: files per shard of a new drop.")
    # Bounds one tick's work so a burst of drops cannot stall the daemon; the rest wait a tick.
    max_drops_per_tick: int = Field(default=20, description="Drops registered per sensor tick at most.")


def _load_cursor(raw: str | None) -> dict[str, str]:
    return dict(json.loads(raw)["drops"]) if raw else {}


@sensor(
    job_name=PROCESS_SHARD_JOB,
    minimum_interval_seconds=10,
    default_status=DefaultSensorStatus.RUNNING,
    description="Registers each complete drop in the inbox as shard partitions and requests one "
    "process_shard run per shard. The cursor remembers processed drops across daemon restarts.",
)
def inbox_sensor(
    context: SensorEvaluationContext, storage: PlatformStorage, inbox: InboxResource
) -> SensorResult | SkipReason:
    previously = _load_cursor(context.cursor)
    processed = dict(previously)
    now = time.time()
    run_requests: list[RunRequest] = []
    new_partitions: list[str] = []
    waiting: list[str] = []
    for folder in pending_drops(Path(inbox.root), set(processed)):
        if len(processed) - len(previously) >= inbox.max_drops_per_tick:
            break
        status = inspect_drop(folder, inbox.quiet_period_s, now)
        if not status.complete:
            waiting.append(f"{folder.name}: {status.reason}")
            continue
        plan = plan_drop(folder, inbox.shard_size)
        for shard in plan.shards:
            storage.lake.write_table(SHARD_FILES, shard, plan.shard_files(shard))
        new_partitions.extend(plan.shards)
        run_requests.extend(
            RunRequest(partition_key=shard, run_key=shard, tags={"drop_id": plan.drop_id}) for shard in plan.shards
        )
        processed[folder.name] = plan.drop_id
        context.log.info(f"drop {folder.name} ({status.reason}): {status.files} files → {len(plan.shards)} shard(s)")
    for line in waiting:
        context.log.info(f"waiting for {line}")
    if processed == previously:
        return SkipReason("no complete new drop" + (f"; waiting for {len(waiting)}" if waiting else ""))
    return SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=[shard_partitions.build_add_request(new_partitions)] if new_partitions else [],
        cursor=json.dumps({"drops": processed}, sort_keys=True),
    )


# Evaluates the declarative automation conditions (the warehouse, later the models) every 15 s
# instead of the default 30 s, so curated rows show up soon after a shard finishes.
automation_sensor = AutomationConditionSensorDefinition(
    "automation_sensor",
    target="*",
    minimum_interval_seconds=15,
    default_status=DefaultSensorStatus.RUNNING,
)
