"""Running the graph for a drop through a real Dagster instance (used by the CLI and tests)."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetMaterialization,
    ConfigurableResource,
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    Definitions,
    JobDefinition,
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
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster._core.storage.tags import MAX_RETRIES_TAG
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.utils import make_new_run_id

from audio_platform.definitions import PROJECT_ROOT
from audio_platform.defs.failure_reasons import record_failure_reason
from audio_platform.defs.partitions import SHARDS
from audio_platform.defs.recovery import OWNER_TAG, owner_tag, release_runs_of_dead_processes, worker_started
from audio_platform.defs.registration import PROCESS_SHARD_JOB, REGISTRATION_TAG, register_drop, shards_needing_runs
from audio_platform.observability.progress import DropProgress
from audio_platform.settings import Settings
from audio_platform.storage.drops import DropPlan, mark_platform_home
from audio_platform.storage.lake import Lake
from audio_platform.storage.registration import Registration
from audio_platform.storage.warehouse import query

# The instance configuration shipped with the repository (queued runs, retries, pools).
REPO_INSTANCE_YAML = PROJECT_ROOT / "dagster.yaml"
# The code location as the project's entry points name it (workspace.yaml, [tool.dg.project] for
# `dg dev` behind `audio-platform serve`; Settings.code_location's default, which a deployment that
# names it otherwise sets): runs the CLI makes are filed under it, so the UI shows them with the
# runs it launched (Overview timeline, job page, sparkline) and the daemon can launch or retry them.
CODE_LOCATION = Settings.code_location
DEFINITIONS_MODULE = "audio_platform.definitions"
# A Definitions object loaded from a module is the repository Dagster names `__repository__`.
REPOSITORY = "__repository__"
# The daemon of the run queue (QueuedRunCoordinatorDaemon.daemon_type()) beats every 30 s by
# default: two missed beats mean no daemon dequeues this instance's runs.
QUEUE_DAEMON = "QUEUED_RUN_COORDINATOR"
DAEMON_FRESH_S = 75.0
FOLLOW_POLL_S = 0.5
# Prefix of what run_job itself tells on_log (beside the followed run's own log messages).
RUN_NOTE = "note: "
# Resource fields that may hold credentials, by resource, with the variable that sets them.
SECRET_FIELDS = {"training": {"tracking_uri": "AUDIO_PLATFORM_MLFLOW_TRACKING_URI_OVERRIDE"}}
# How often a CLI waiting on a launched run checks that its worker is alive (see recovery).
RELEASE_EVERY_S = 15.0


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


@dataclass(frozen=True)
class RunOutcome:
    """What a finished run left in the instance's event log (the same for a run this process
    executed and one a daemon's run worker executed)."""

    run_id: str
    success: bool
    check_evaluations: tuple[AssetCheckEvaluation, ...]
    materializations: Mapping[str, tuple[AssetMaterialization, ...]]
    """By asset key (``keyword_champion``)."""

    @classmethod
    def read(cls, instance: DagsterInstance, run_id: str) -> RunOutcome:
        run = instance.get_run_by_id(run_id)
        checks: list[AssetCheckEvaluation] = []
        materializations: dict[str, list[AssetMaterialization]] = {}
        for record in instance.get_records_for_run(
            run_id, of_type={DagsterEventType.ASSET_CHECK_EVALUATION, DagsterEventType.ASSET_MATERIALIZATION}
        ).records:
            event = record.event_log_entry.dagster_event
            if event is None:
                continue
            if event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
                checks.append(event.asset_check_evaluation_data)
            elif (materialization := event.step_materialization_data.materialization) is not None:
                materializations.setdefault(materialization.asset_key.to_user_string(), []).append(materialization)
        return cls(
            run_id,
            run is not None and run.status == DagsterRunStatus.SUCCESS,
            tuple(checks),
            {key: tuple(found) for key, found in materializations.items()},
        )


def serving_daemon(instance: DagsterInstance) -> bool:
    """Whether a `dagster-daemon` (`audio-platform serve`) dequeues this instance's runs: its run
    queue has reported a heartbeat within ``DAEMON_FRESH_S``."""
    if not isinstance(instance.run_coordinator, QueuedRunCoordinator):
        return False
    beat = instance.get_daemon_heartbeats().get(QUEUE_DAEMON)
    return beat is not None and time.time() - beat.timestamp < DAEMON_FRESH_S


def _create_run(
    job: JobDefinition,
    instance: DagsterInstance,
    partition_key: str | None,
    run_config: Mapping[str, Any] | None,
    tags: Mapping[str, str] | None,
    *,
    executed_here: bool,
    code_location: str,
) -> DagsterRun:
    """``job``'s run as the UI's launch creates it: the code location's job origin, the job's and
    the partition's tags, its execution plan. A run ``executed_here`` names this process as its
    owner (recovery; a submitted run's worker names itself). No CLI run is retried by the daemon."""
    run_id = make_new_run_id()
    partition_tags = job.get_tags_for_partition_key(partition_key, None) if partition_key is not None else {}
    # The CLI re-runs an unfinished shard itself: a daemon retry beside it would run it twice.
    own_tags = {MAX_RETRIES_TAG: "0", **({OWNER_TAG: owner_tag(run_id)} if executed_here else {})}
    location = ManagedGrpcPythonEnvCodeLocationOrigin(
        LoadableTargetOrigin(module_name=DEFINITIONS_MODULE, attribute="defs"), code_location
    )
    code = ReconstructableRepository.for_module(DEFINITIONS_MODULE, "defs", working_directory=str(PROJECT_ROOT))
    return instance.create_run_for_job(
        job,
        run_id=run_id,
        run_config=run_config,
        tags={**job.run_tags, **partition_tags, **(tags or {}), **own_tags},
        remote_job_origin=RemoteJobOrigin(RemoteRepositoryOrigin(location, REPOSITORY), job.name),
        job_code_origin=code.get_reconstructable_job(job.name).get_python_origin(),
    )


def _follow_queued(run_id: str, instance: DagsterInstance, on_log: Callable[[str], None] | None) -> bool:
    """Wait for a submitted run to finish, handing its log messages to ``on_log`` as they arrive.

    Returns True when the run finished after a worker started it (its outcome is the run's), and
    False when no worker will: the daemon stopped beating before one started it (the run is
    cancelled: a worker that starts later refuses a cancelled run) or the daemon failed it before
    starting it (e.g. its workspace lacks the code location); the caller then executes it itself
    instead of waiting forever. A run whose worker dies is failed by the dead-process check (every
    ``RELEASE_EVERY_S``), so this always ends."""
    cursor: str | None = None
    released = time.monotonic()
    while True:
        run = instance.get_run_by_id(run_id)
        connection = instance.get_records_for_run(run_id, cursor=cursor)
        cursor = connection.cursor
        for record in connection.records:
            if record.event_log_entry.dagster_event is None and on_log is not None:
                on_log(record.event_log_entry.user_message)
        if run is None:
            return False
        # The worker's start event is looked up only when it decides something (not every poll).
        if run.is_finished:
            return run.status == DagsterRunStatus.SUCCESS or worker_started(instance, run) is not None
        if not serving_daemon(instance) and worker_started(instance, run) is None:
            if run.status == DagsterRunStatus.QUEUED:
                instance.run_coordinator.cancel_run(run_id)
            else:  # STARTING or CANCELING with no worker and no daemon left to finish it
                instance.report_run_canceled(run, message="no daemon is serving the queue any more")
            return False
        if time.monotonic() - released >= RELEASE_EVERY_S:
            release_runs_of_dead_processes(instance)
            released = time.monotonic()
        time.sleep(FOLLOW_POLL_S)


def run_job(
    job: JobDefinition,
    instance: DagsterInstance,
    *,
    partition_key: str | None = None,
    run_config: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    on_log: Callable[[str], None] | None = None,
    code_location: str = CODE_LOCATION,
) -> RunOutcome:
    """Run ``job`` (for ``partition_key``) as the UI does and wait for it.

    With a daemon serving the instance (`audio-platform serve`), the run is submitted to its queue,
    so the run coordinator's limits, the pools and the run launcher apply to it as to any run of
    the UI or the sensors, and ``on_log`` receives its log messages while the CLI waits. Without
    one (or if it goes away while the run is queued), the same run is executed here, in this
    process, as a run worker would, with every step in this process whatever executor the
    definitions name (a k8s or multiprocess executor is a deployment's choice for launched runs,
    not for a command in a terminal). Either way the run has the code location's job origin and
    the UI's tags, so it shows on the Overview timeline and the job page."""
    if serving_daemon(instance):
        queued = _create_run(
            job, instance, partition_key, run_config, tags, executed_here=False, code_location=code_location
        )
        # The queued run coordinator only enqueues; it needs no workspace.
        instance.submit_run(queued.run_id, workspace=None)  # type: ignore[arg-type]
        try:
            followed = _follow_queued(queued.run_id, instance, on_log)
        except KeyboardInterrupt:
            # Ctrl-C stops the work, as it does for a run executed here (and a later `process`
            # does not find it still running beside the run it starts for the same shard).
            instance.run_coordinator.cancel_run(queued.run_id)
            raise
        if followed:
            return RunOutcome.read(instance, queued.run_id)
        if on_log is not None:
            on_log(f"{RUN_NOTE}run {queued.run_id} was not started by the daemon (see it in the UI); executing it here")
    local = job if job.executor_def is in_process_executor else job.with_executor_def(in_process_executor)
    run = _create_run(local, instance, partition_key, run_config, tags, executed_here=True, code_location=code_location)
    execute_run(InMemoryJob(local), run, instance)
    return RunOutcome.read(instance, run.run_id)


def launch_run_config(defs: Definitions, run_config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``run_config`` (what the launchpad's editor would hold) over every field of every resource as
    this process's settings bound it, so a run a daemon's worker executes is decided by this
    process's settings alone, as one it executes itself (a resource's section in a run config
    replaces all its bound values, so each section holds every field). A field whose value came
    from a variable that may hold credentials (:data:`SECRET_FIELDS`) is given as that variable
    (``{"env": ...}``), so the secret never lands in the run's stored config or the UI."""
    config = dict(run_config or {})
    given = {key: dict(section or {}) for key, section in (config.get("resources") or {}).items()}
    resources: dict[str, Any] = dict(given)
    for key, bound in (defs.resources or {}).items():
        if not isinstance(bound, ConfigurableResource):
            continue
        values = {name: getattr(bound, name) for name in type(bound).model_fields}
        for field_name, variable in SECRET_FIELDS.get(key, {}).items():
            if os.environ.get(variable) and os.environ[variable] == values.get(field_name):
                values[field_name] = {"env": variable}
        resources[key] = {"config": values | ((given.get(key) or {}).get("config") or {})}
    if resources:
        config["resources"] = resources
    return config


def run_status_counts(instance: DagsterInstance) -> dict[str, int]:
    """How many runs the instance holds in each status (the metrics exporter's view of failures)."""
    return {status.value: instance.get_runs_count(RunsFilter(statuses=[status])) for status in DagsterRunStatus}


@dataclass
class ShardJobReport:
    failed_shards: list[str] = field(default_factory=list)
    # "<shard>: <asset>:<check>: <the check's description>", for checks that did not pass, by
    # severity (a warning does not stop the shard's downstream assets).
    failed_checks: list[str] = field(default_factory=list)
    check_warnings: list[str] = field(default_factory=list)


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
    run_config: Mapping[str, Any],
    tags: dict[str, str],
    shard_tags: dict[str, dict[str, str]] | None = None,
    after_shard: Callable[[str], None] | None = None,
    on_log: Callable[[str], None] | None = None,
    code_location: str,
) -> None:
    """``job`` for each shard in turn (see :func:`run_job`; ``tags`` on every run, ``shard_tags`` on
    each shard's); failed runs and checks go into ``report``."""
    for shard in shards:
        result = run_job(
            job,
            instance,
            partition_key=shard,
            run_config=run_config,
            tags={**tags, **(shard_tags or {}).get(shard, {})},
            on_log=on_log,
            code_location=code_location,
        )
        if not result.success:
            record_failure_reason(instance, result.run_id)
            report.failed_shards.append(shard)
        for evaluation in result.check_evaluations:
            if evaluation.passed:
                continue
            said = f"{shard}: {evaluation.asset_check_key.to_user_string()}"
            if evaluation.description:
                said += f": {evaluation.description}"
            warned = evaluation.severity == AssetCheckSeverity.WARN
            (report.check_warnings if warned else report.failed_checks).append(said)
        if after_shard is not None:
            after_shard(shard)


def process_drop(
    settings: Settings,
    defs: Definitions,
    folder: Path,
    instance: DagsterInstance,
    *,
    on_progress: Callable[[DropProgress], None] | None = None,
    on_log: Callable[[str], None] | None = None,
    console_log_level: str | None = None,
) -> DropRunReport:
    """Register ``folder`` as a drop, run the graph of every shard that is new, changed or not yet
    processed (see :mod:`audio_platform.storage.drops`), refresh the warehouse.

    ``on_progress`` is called before the first shard and after each one; ``on_log`` with the log
    messages of runs a daemon executes (see :func:`run_job`). ``console_log_level`` (e.g.
    ``WARNING``) quiets the Dagster events runs executed here print on stderr; the run logs in the
    instance keep everything.
    """
    started = time.perf_counter()
    release_runs_of_dead_processes(instance)
    registration = register_drop(instance, Lake(settings.lake_root), folder, settings.shard_size)
    plan = registration.plan
    to_run = shards_needing_runs(instance, registration)
    report = DropRunReport(registration=registration, processed_shards=to_run)
    sizes = {shard: len(paths) for shard, paths in plan.shards.items()}
    run_config = launch_run_config(
        defs, {"loggers": {"console": {"config": {"log_level": console_log_level}}}} if console_log_level else None
    )
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
        tags={"drop_id": plan.drop_id},
        shard_tags={shard: {REGISTRATION_TAG: registration.registration_ids[shard]} for shard in to_run},
        after_shard=shard_done,
        on_log=on_log,
        code_location=settings.code_location,
    )
    run_job(
        defs.resolve_job_def("refresh_warehouse"), instance, run_config=run_config, code_location=settings.code_location
    )
    report.wall_s = time.perf_counter() - started
    report.summary = drop_summary(settings, plan.drop_id)
    return report


def run_shard_job(
    defs: Definitions,
    instance: DagsterInstance,
    job_name: str,
    shards: list[str],
    run_config: Mapping[str, Any] | None = None,
    *,
    code_location: str = CODE_LOCATION,
) -> ShardJobReport:
    """Run ``job_name`` (``process_shard`` or ``rescore_shard``) for each of ``shards`` with
    ``run_config`` (what the launchpad would send), then refresh the warehouse: an operator
    reprocessing or re-scoring shards that are already registered. Raises ``ValueError`` naming
    any shard that is not a registered partition, before running anything."""
    unknown = sorted(set(shards) - set(instance.get_dynamic_partitions(SHARDS)))
    if unknown:
        raise ValueError(f"not registered shard partitions: {', '.join(unknown)}")
    release_runs_of_dead_processes(instance)
    report = ShardJobReport()
    config = launch_run_config(defs, run_config)
    _run_each_shard(
        defs.resolve_job_def(job_name),
        shards,
        instance,
        report,
        run_config=config,
        tags={},
        code_location=code_location,
    )
    run_job(
        defs.resolve_job_def("refresh_warehouse"),
        instance,
        run_config=launch_run_config(defs),
        code_location=code_location,
    )
    return report
