"""Running the graph for a drop through a real Dagster instance (used by the CLI and tests)."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from dagster import DagsterInstance, Definitions

from audio_platform.defs.registration import register_drop
from audio_platform.settings import Settings
from audio_platform.storage.drops import DropPlan
from audio_platform.storage.lake import Lake
from audio_platform.storage.warehouse import query

# The instance configuration shipped with the repository (queued runs, retries, pools).
REPO_INSTANCE_YAML = Path(__file__).resolve().parents[1] / "dagster.yaml"


def prepare_instance(settings: Settings) -> DagsterInstance:
    """The SQLite-backed instance under AUDIO_PLATFORM_HOME/dagster (created on first use)."""
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if REPO_INSTANCE_YAML.is_file() and not target.is_file():
        shutil.copyfile(REPO_INSTANCE_YAML, target)
    return DagsterInstance.from_config(str(home))


@dataclass
class DropRunReport:
    plan: DropPlan
    failed_shards: list[str] = field(default_factory=list)
    failed_checks: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    summary: dict[str, float] = field(default_factory=dict)

    @property
    def real_time_factor(self) -> float:
        return self.summary.get("audio_seconds", 0.0) / self.wall_s if self.wall_s else 0.0


SUMMARY_SQL = """
SELECT
  (SELECT count(*) FROM audio_files WHERE drop_id = $1) AS files,
  (SELECT count(*) FROM audio_files WHERE drop_id = $1 AND status = 'ok') AS ok,
  (SELECT count(*) FROM audio_files WHERE drop_id = $1 AND status = 'quarantined') AS quarantined,
  (SELECT count(*) FROM audio_files WHERE drop_id = $1 AND status = 'duplicate') AS duplicate,
  (SELECT coalesce(sum(duration_s), 0) FROM audio_files WHERE drop_id = $1 AND status = 'ok') AS audio_seconds,
  (SELECT count(*) FROM segments s JOIN shard_ids USING (shard)) AS segments,
  (SELECT coalesce(sum(duration_s), 0) FROM segments s JOIN shard_ids USING (shard)) AS speech_seconds,
  (SELECT count(*) FROM curated_segments c JOIN shard_ids USING (shard)) AS curated,
  (SELECT coalesce(sum(duration_s), 0) FROM curated_segments c JOIN shard_ids USING (shard)) AS curated_seconds
"""


def drop_summary(settings: Settings, drop_id: str) -> dict[str, float]:
    sql = "WITH shard_ids AS (SELECT DISTINCT shard FROM audio_files WHERE drop_id = $1) " + SUMMARY_SQL.strip()
    row = query(settings.warehouse_path, sql, [drop_id]).row(0, named=True)
    return {k: float(v) for k, v in row.items()}


def process_drop(settings: Settings, defs: Definitions, folder: Path, instance: DagsterInstance) -> DropRunReport:
    """Register ``folder`` as a drop, run every shard's graph, refresh the warehouse."""
    started = time.perf_counter()
    plan = register_drop(instance, Lake(settings.lake_root), folder, settings.shard_size)
    report = DropRunReport(plan=plan)
    shard_job = defs.resolve_job_def("process_shard")
    for shard in plan.shards:
        result = shard_job.execute_in_process(
            partition_key=shard, instance=instance, raise_on_error=False, tags={"drop_id": plan.drop_id}
        )
        if not result.success:
            report.failed_shards.append(shard)
        report.failed_checks.extend(
            f"{shard}: {evaluation.asset_check_key.to_user_string()}"
            for evaluation in result.get_asset_check_evaluations()
            if not evaluation.passed
        )
    defs.resolve_job_def("refresh_warehouse").execute_in_process(instance=instance)
    report.wall_s = time.perf_counter() - started
    report.summary = drop_summary(settings, plan.drop_id)
    return report
