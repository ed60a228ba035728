"""Running the graph for a drop through a real Dagster instance (used by the CLI and tests)."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dagster import (
    DagsterInstance,
    DagsterRunStatus,
    Definitions,
    JobDefinition,
    JobExecutionResult,
    RunsFilter,
    in_process_executor,
)
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.execution.api import execute_run
from dagster._core.remote_origin import (
    ManagedGrpcPythonEnvCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from audio_platform.defs.failure_reasons import record_failure_reason
from audio_platform.defs.partitions import SHARDS
from audio_platform.defs.recovery import OWNER_TAG, owner_tag, release_runs_of_dead_processes
from audio_platform.defs.registration import PROCESS_SHARD_JOB, REGISTRATION_TAG, register_drop, shards_needing_runs
from audio_platform.observability.progress import DropProgress
from audio_platform.settings import Settings
from audio_platform.storage.drops import DropPlan, mark_platform_home
from audio_platform.storage.lake import Lake
from audio_platform.storage.registration import Registration
from audio_platform.storage.warehouse import query

# The instance configuration shipped with the repository (queued runs, retries, pools).
PROJECT_ROOT = Path(__file__).resolve().parents[1]
REPO_INSTANCE_YAML = PROJECT_ROOT / "dagster.yaml"
# The code location as every entry point names it (workspace.yaml, [tool.dg.project] for `dg dev`
# behind `audio-platform serve`): runs the CLI executes are filed under it, so the UI shows them
# with the runs it launched (Overview timeline, job page, sparkline) and the run-retry daemon can
# re-execute a crashed one from the code location.
CODE_LOCATION = "audio_platform"
DEFINITIONS_MODULE = "audio_platform.definitions"
# A Definitions object loaded from a module is the repository Dagster names `__repository__`.
REPOSITORY = "__repository__"


def prepare_instance(settings: Settings) -> DagsterInstance:
    """The SQLite-backed instance under AUDIO_PLATFORM_HOME/dagster (created on first use)."""
    mark_platform_home(settings.home)
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if REPO_INSTANCE_YAML.is_file() and not target.is_file():
        # Copied atomically: a process killed mid-copy must not leave a torn config that, being a
        # file, would never be replaced.
        temp = home / f".dagster.yaml.{uuid.uuid4().hex}.tmp"
        shutil.copyfile(REPO_INSTANCE_YAML, temp)
        os.replace(temp, target)
    return DagsterInstance.from_config(str(home))


def run_like_a_launched_run(
    job: JobDefinition,
    instance: DagsterInstance,
    *,
    partition_key: str | None = None,
    run_config: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
) -> JobExecutionResult:
    """Create ``job``'s run in ``instance`` as the UI's launch does (the code location's job origin,
    the job's and the partition's tags, its execution plan) and execute it here, in this process,
    as a run worker would: the CLI's runs are the same runs as those of the UI and the daemon.

    Steps run in this process whatever executor the definitions name (a k8s or multiprocess
    executor is a deployment's choice for launched runs, not for a command in a terminal)."""
    if job.executor_def is not in_process_executor:
        job = job.with_executor_def(in_process_executor)
    partition_tags = job.get_tags_for_partition_key(partition_key, None) if partition_key is not None else {}
    location = ManagedGrpcPythonEnvCodeLocationOrigin(
        LoadableTargetOrigin(module_name=DEFINITIONS_MODULE, attribute="defs"), CODE_LOCATION
    )
    code = ReconstructableRepository.for_module(DEFINITIONS_MODULE, "defs", working_directory=str(PROJECT_ROOT))
    run = instance.create_run_for_job(
        job,
        run_config=run_config,
        tags={**job.run_tags, **partition_tags, **(tags or {})},
        remote_job_origin=RemoteJobOrigin(RemoteRepositoryOrigin(location, REPOSITORY), job.name),
        job_code_origin=code.get_reconstructable_job(job.name).get_python_origin(),
    )
    return execute_run(InMemoryJob(job), run, instance)


def run_status_counts(instance: DagsterInstance) -> dict[str, int]:
    """How many runs the instance holds in each status (the metrics exporter's view of failures)."""
    return {status.value: instance.get_runs_count(RunsFilter(statuses=[status])) for status in DagsterRunStatus}


@dataclass
class ShardJobReport:
    failed_shards: list[str] = field(default_factory=list)
    failed_checks: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class DropRunReport(ShardJobReport):
    registration: Registration
    processed_shards: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    summary: dict[str, float] = field(default_factory=dict)

    @property
    def plan(self) -> DropPlan:
        return self.registration.plan

    @property
    def real_time_factor(self) -> float:
        return self.summary.get("audio_seconds", 0.0) / self.wall_s if self.wall_s else 0.0


SUMMARY_SQL = """
SELECT
  (SELECT count(*) FROM audio_files WHERE drop_id = $1) AS files,
  (SELECT count(*) FROM audio_files WHERE drop_id = $1 AND status = 'ok') AS ok,
  (SELECT count(*) FROM audio_files WHERE drop_id = $1 AND status = 'quarantined') AS quarantined,
  (SELECT count(*) FROM audio_files WHERE drop_id = $1 AND status = 'duplicate') AS duplicate,
  (SELECT count(*) FROM audio_files WHERE drop_id = $1 AND status = 'removed') AS removed,
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


def _run_each_shard(
    job: JobDefinition,
    shards: Iterable[str],
    instance: DagsterInstance,
    report: ShardJobReport,
    *,
    run_config: dict[str, Any] | None,
    tags: dict[str, str],
    shard_tags: dict[str, dict[str, str]] | None = None,
    after_shard: Callable[[str], None] | None = None,
) -> None:
    """``job`` for each shard in turn, in this process (``tags`` on every run, ``shard_tags`` on
    each shard's); failed runs and checks go into ``report``."""
    for shard in shards:
        result = run_like_a_launched_run(
            job,
            instance,
            partition_key=shard,
            run_config=run_config,
            tags={**tags, **(shard_tags or {}).get(shard, {})},
        )
        if not result.success:
            record_failure_reason(instance, result.run_id)
            report.failed_shards.append(shard)
        report.failed_checks.extend(
            f"{shard}: {evaluation.asset_check_key.to_user_string()}"
            for evaluation in result.get_asset_check_evaluations()
            if not evaluation.passed
        )
        if after_shard is not None:
            after_shard(shard)


def process_drop(
    settings: Settings,
    defs: Definitions,
    folder: Path,
    instance: DagsterInstance,
    *,
    on_progress: Callable[[DropProgress], None] | None = None,
    console_log_level: str | None = None,
) -> DropRunReport:
    """Register ``folder`` as a drop, run the graph of every shard that is new, changed or not yet
    processed (see :mod:`audio_platform.storage.drops`), refresh the warehouse.

    ``on_progress`` is called before the first shard and after each one. ``console_log_level``
    (e.g. ``WARNING``) quiets the Dagster events these in-process runs print on stderr; the run
    logs in the instance keep everything.
    """
    started = time.perf_counter()
    release_runs_of_dead_processes(instance)
    registration = register_drop(instance, Lake(settings.lake_root), folder, settings.shard_size)
    plan = registration.plan
    to_run = shards_needing_runs(instance, registration)
    report = DropRunReport(registration=registration, processed_shards=to_run)
    sizes = {shard: len(paths) for shard, paths in plan.shards.items()}
    owner = {OWNER_TAG: owner_tag()}
    run_config = {"loggers": {"console": {"config": {"log_level": console_log_level}}}} if console_log_level else None
    shards_done = files_done = 0

    def progress() -> None:
        if on_progress is not None:
            failed = len(report.failed_shards)
            total_files = sum(sizes.get(shard, 0) for shard in to_run)
            on_progress(DropProgress(shards_done, len(to_run), files_done, total_files, failed))

    def shard_done(shard: str) -> None:
        nonlocal shards_done, files_done
        shards_done += 1
        files_done += sizes.get(shard, 0)
        progress()

    progress()
    _run_each_shard(
        defs.resolve_job_def(PROCESS_SHARD_JOB),
        to_run,
        instance,
        report,
        run_config=run_config,
        tags={"drop_id": plan.drop_id, **owner},
        shard_tags={shard: {REGISTRATION_TAG: registration.registration_ids[shard]} for shard in to_run},
        after_shard=shard_done,
    )
    run_like_a_launched_run(defs.resolve_job_def("refresh_warehouse"), instance, run_config=run_config, tags=owner)
    report.wall_s = time.perf_counter() - started
    report.summary = drop_summary(settings, plan.drop_id)
    return report


def run_shard_job(
    defs: Definitions,
    instance: DagsterInstance,
    job_name: str,
    shards: list[str],
    run_config: dict[str, Any] | None = None,
) -> ShardJobReport:
    """Run ``job_name`` (``process_shard`` or ``rescore_shard``) for each of ``shards`` with
    ``run_config`` (what the launchpad would send), then refresh the warehouse: an operator
    reprocessing or re-scoring shards that are already registered. Raises ``ValueError`` naming
    any shard that is not a registered partition, before running anything."""
    unknown = sorted(set(shards) - set(instance.get_dynamic_partitions(SHARDS)))
    if unknown:
        raise ValueError(f"not registered shard partitions: {', '.join(unknown)}")
    release_runs_of_dead_processes(instance)
    owner = {OWNER_TAG: owner_tag()}
    report = ShardJobReport()
    _run_each_shard(defs.resolve_job_def(job_name), shards, instance, report, run_config=run_config, tags=owner)
    run_like_a_launched_run(defs.resolve_job_def("refresh_warehouse"), instance, tags=owner)
    return report
