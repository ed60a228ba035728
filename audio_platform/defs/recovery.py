"""Run recovery: runs whose process died are failed, their pool slots freed, and retried.

A run whose process is killed (SIGKILL, OOM, a crashed ``serve``, power loss) stays STARTED
forever: nothing is left to report its end. With ``max_concurrent_runs`` and pools, such runs hold
the queue's places and the ``audio_models`` slot, so every later run would wait forever. Dagster's
run monitoring notices dead workers only for launchers that can check them (Kubernetes); the
local launcher cannot. So the platform checks itself, for two kinds of runs:

* a run carries an owner tag (host, pid and process start time): the CLI sets it when it
  executes a run in its own process, a launched run sets it from its first stage;
* before its first stage, a run launched through the instance by the local launcher (UI,
  sensors, retries) is known by its worker's pid in the "Started process for run" engine event.

A run is released only when its process provably no longer exists (a pid reused by a later
process does not count as alive), so a live run is never touched. Released runs are marked failed
with reason ``RUN_WORKER_RESTART``, which the run-retry daemon retries (``run_retries`` in
dagster.yaml). The ``run_recovery_sensor`` does this every 30 s inside the daemon; the CLI does it
before it starts work.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from dagster import (
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunsFilter,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)
from dagster._core.events import JobFailureData, RunFailureReason
from dagster._core.launcher import DefaultRunLauncher

# Tag on every run the CLI executes in-process (and set by a launched run's first stage): which
# process runs it, as ``owner_tag(run_id)``.
OWNER_TAG = "audio_platform/owner"
# Statuses of a run that is (or was, until its process died) executing.
_RUNNING = [
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]
_WORKER_STARTED = "Started process for run"
# A process that started this much after the event naming its pid is another process (pid reuse).
_START_TOLERANCE_S = 2.0


def _proc_stat(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # After the parenthesised command name (which may hold spaces): field 3 is the state,
    # field 22 the start time in clock ticks since boot.
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else fields


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot), which tells a reused pid from the
    original; None when no such process is running. Without /proc: "" for any live pid."""
    if Path("/proc/self/stat").is_file():
        fields = _proc_stat(pid)
        return None if fields is None else fields[19]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, owned by another user
    return ""


def _process_started_at(pid: int) -> float | None:
    """Epoch seconds at which process ``pid`` started; None when it is not running. Without /proc,
    0.0 for any live pid (it then always counts as the original)."""
    start = _process_start(pid)
    if not start:
        return None if start is None else 0.0
    boot = next(
        float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime")
    )
    return boot + int(start) / os.sysconf("SC_CLK_TCK")


def owner_tag(run_id: str) -> str:
    """host:pid:start of the current process, @ the run it executes. The run id matters: Dagster
    copies a run's tags onto its retries, and a retry is not executed by its parent's process."""
    return f"{socket.gethostname()}:{os.getpid()}:{_process_start(os.getpid())}@{run_id}"


def _own_owner(run: DagsterRun) -> str | None:
    """The run's owner tag when it names this run (not one copied from the run it retries)."""
    owner = run.tags.get(OWNER_TAG)
    if owner is None or "@" not in owner:
        return owner  # a tag from before run ids were part of it names its own run
    process, _, run_id = owner.rpartition("@")
    return owner if process and run_id == run.run_id else None


def record_run_owner(instance: DagsterInstance, run: DagsterRun) -> None:
    """Tag ``run`` with the process executing it, unless it already is (the CLI tags its own).
    Only the run worker tags: a step subprocess (multiprocess executor) ends before its run does."""
    if _own_owner(run) is not None:
        return
    worker = worker_started(instance, run)
    if worker is not None and worker[0] == os.getpid():
        instance.add_run_tags(run.run_id, {OWNER_TAG: owner_tag(run.run_id)})


def _owner_is_gone(owner: str) -> bool:
    host, pid, start = owner.split("@", 1)[0].rsplit(":", 2)
    # Another machine's process cannot be checked from here: assume it is alive.
    return host == socket.gethostname() and _process_start(int(pid)) != start


def worker_started(instance: DagsterInstance, run: DagsterRun) -> tuple[int, float] | None:
    """(pid, when) of the run worker, from its "Started process for run" event; None before it."""
    records = instance.get_records_for_run(run.run_id, of_type=DagsterEventType.ENGINE_EVENT).records
    for record in reversed(records):
        event = record.event_log_entry.dagster_event
        if event is None or not (event.message or "").startswith(_WORKER_STARTED):
            continue
        pid_value = event.engine_event_data.metadata.get("pid")
        return None if pid_value is None else (int(str(pid_value.value)), record.event_log_entry.timestamp)
    return None


def _worker_is_gone(instance: DagsterInstance, run: DagsterRun) -> bool:
    """For a run of the local launcher: whether the worker process its events name has died."""
    worker = worker_started(instance, run)
    if worker is None:
        return False  # not started yet: run monitoring's start timeout covers a launch that never began
    pid, logged_at = worker
    started_at = _process_started_at(pid)
    return started_at is None or started_at > logged_at + _START_TOLERANCE_S


def release_runs_of_dead_processes(instance: DagsterInstance) -> list[str]:
    """Mark failed (to be retried) the runs whose process died mid-run and free their pool slots.
    Returns the run ids released."""
    local_launcher = isinstance(instance.run_launcher, DefaultRunLauncher)
    released = []
    for record in instance.get_run_records(RunsFilter(statuses=_RUNNING)):
        run = record.dagster_run
        owner = _own_owner(run)
        if owner is not None:
            gone = _owner_is_gone(owner)
            who = f"the process that ran it ({owner})"
        else:
            gone = local_launcher and _worker_is_gone(instance, run)
            who = "its run worker process"
        if not gone:
            continue
        current = instance.get_run_by_id(run.run_id)
        if current is None or current.status not in _RUNNING:
            continue  # it ended (and its process exited) while we looked
        instance.report_run_failed(
            run,
            f"released: {who} is gone (killed or crashed); its pool slots are freed and the run is retried",
            JobFailureData(error=None, failure_reason=RunFailureReason.RUN_WORKER_RESTART),
        )
        if instance.event_log_storage.supports_global_concurrency_limits:
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        released.append(run.run_id)
    return released


@sensor(
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="Fails (for retry) runs whose process died — a killed `serve`, an OOM-killed run "
    "worker — and frees their pool slots, so the queue never waits on a dead run.",
)
def run_recovery_sensor(context: SensorEvaluationContext) -> SkipReason:
    released = release_runs_of_dead_processes(context.instance)
    for run_id in released:
        context.log.warning(f"released run {run_id}: its process is gone; it will be retried")
    return SkipReason(f"released {len(released)} run(s) of dead processes" if released else "no dead runs")
