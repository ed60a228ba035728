"""One execution path: the CLI's runs are the runs the UI and the daemon make.

* With `audio-platform serve` running on the home, `audio-platform process` submits each shard run
  to the daemon's queue: the queued run coordinator and the run launcher start it, and the CLI
  waits and prints the run's progress lines.
* Without a daemon, or when the daemon goes away while a run is queued, the CLI executes the
  same run itself: it never waits on a queue nobody serves.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterRunStatus, Definitions, RunsFilter, asset, define_asset_job
from dagster._daemon.types import DaemonHeartbeat

from audio_platform import runs
from audio_platform.runs import OWNER_TAG, QUEUE_DAEMON, prepare_instance, run_job, serving_daemon
from audio_platform.settings import Settings
from audio_platform_tests.conftest import CORPUS, requires_corpus, stop_process_group
from audio_platform_tests.defs.test_daemon_recovery import _serve, _wait


@asset
def answer() -> None:
    return None


def _answer_job():
    return Definitions(assets=[answer], jobs=[define_asset_job("answer_job", selection=[answer])]).resolve_job_def(
        "answer_job"
    )


def _beat(instance, at: float) -> None:
    instance.add_daemon_heartbeat(DaemonHeartbeat(at, QUEUE_DAEMON, "test-daemon", None))


def test_without_a_daemon_the_cli_executes_the_run_itself(tmp_path):
    instance = prepare_instance(Settings(home=tmp_path / "home"))
    assert not serving_daemon(instance)
    _beat(instance, time.time() - 10 * runs.DAEMON_FRESH_S)  # a daemon that died long ago
    assert not serving_daemon(instance)
    job = _answer_job()
    outcome = run_job(job, instance)
    assert outcome.success and "answer" in outcome.materializations
    (run,) = instance.get_runs(RunsFilter(job_name="answer_job"))
    assert run.status == DagsterRunStatus.SUCCESS and run.remote_job_origin is not None


def test_a_queued_run_nobody_dequeues_is_cancelled_and_executed_here(tmp_path, monkeypatch):
    """The daemon beat when the run was submitted, then stopped: the CLI does not wait forever."""
    monkeypatch.setattr(runs, "DAEMON_FRESH_S", 2.0)
    instance = prepare_instance(Settings(home=tmp_path / "home"))
    _beat(instance, time.time())
    assert serving_daemon(instance)
    job = _answer_job()
    started = time.monotonic()
    outcome = run_job(job, instance)
    assert outcome.success and time.monotonic() - started < 60
    by_id = {run.run_id: run for run in instance.get_runs(RunsFilter(job_name="answer_job"))}
    assert sorted(run.status.value for run in by_id.values()) == ["CANCELED", "SUCCESS"]
    assert by_id[outcome.run_id].status == DagsterRunStatus.SUCCESS


@pytest.mark.e2e
@requires_corpus
def test_with_serve_running_the_cli_submits_to_the_daemons_queue(tmp_path):
    home = tmp_path / "home"
    drop = tmp_path / "drop"
    drop.mkdir()
    for path in sorted((CORPUS / "audio/an4").glob("*.wav"))[:3]:
        shutil.copyfile(path, drop / path.name)
    env = {**os.environ, "AUDIO_PLATFORM_HOME": str(home), "AUDIO_PLATFORM_ASR_CPU_THREADS": "2"}
    instance = prepare_instance(Settings(home=home))
    log = tmp_path / "serve.log"
    server = _serve(env, log)
    try:
        _wait(lambda: serving_daemon(instance), "the daemon's first heartbeat", server, log)
        cli = subprocess.run(
            [str(Path(sys.executable).with_name("audio-platform")), "process", str(drop)],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        stop_process_group(server)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "progress: ASR" in cli.stderr, cli.stderr
    (run,) = instance.get_runs(RunsFilter(job_name="process_shard"))
    assert run.status == DagsterRunStatus.SUCCESS
    # Through the queue and the launcher: enqueued by the CLI, started by the daemon's launcher in
    # a run worker, which names itself the run's owner (recovery), not the CLI.
    records = instance.get_records_for_run(run.run_id).records
    events = {record.event_log_entry.dagster_event_type for record in records}
    assert {DagsterEventType.RUN_ENQUEUED, DagsterEventType.RUN_STARTING} <= events
    launched = [r for r in records if (r.event_log_entry.message or "").startswith("Started process for run")]
    assert launched
    owner = run.tags[OWNER_TAG]
    assert (
        owner.endswith(f"@{run.run_id}")
        and f":{launched[0].event_log_entry.dagster_event.engine_event_data.metadata['pid'].value}:" in owner
    )
    assert run.tags["drop_id"] and run.tags["dagster/partition"]
