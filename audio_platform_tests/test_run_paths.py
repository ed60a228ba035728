"""One execution path: the CLI's runs are the runs the UI and the daemon make.

* With `audio-platform serve` running on the home, `audio-platform process` submits each shard run
  to the daemon's queue: the queued run coordinator and the run launcher start it, and the CLI
  waits and prints the run's progress lines.
* Without a daemon, or when the daemon goes away while a run is queued, the CLI executes the
  same run itself: it never waits on a queue nobody serves.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterRunStatus, Definitions, RunsFilter, asset, define_asset_job
from dagster._core.events import DagsterEvent
from dagster._core.system_config.objects import ResolvedRunConfig
from dagster._daemon.types import DaemonHeartbeat

from audio_platform import runs
from audio_platform.definitions import build_definitions
from audio_platform.runs import OWNER_TAG, QUEUE_DAEMON, launch_run_config, prepare_instance, run_job, serving_daemon
from audio_platform.settings import Settings, load_settings
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


def test_a_run_config_carries_every_setting_but_no_secret(tmp_path, monkeypatch):
    """A run a daemon executes gets the CLI's settings, all of them, and no credentials."""
    secret_uri = "postgresql://mlflow:s3cret@db.example/mlflow"
    monkeypatch.setenv("AUDIO_PLATFORM_MLFLOW_TRACKING_URI_OVERRIDE", secret_uri)
    settings = load_settings({**os.environ, "AUDIO_PLATFORM_HOME": str(tmp_path / "home")})
    defs = build_definitions(settings)
    config = launch_run_config(defs, {"resources": {"curation": {"config": {"min_score": 0.8}}}})
    assert "s3cret" not in json.dumps(config)
    training = config["resources"]["training"]["config"]
    assert training["tracking_uri"] == {"env": "AUDIO_PLATFORM_MLFLOW_TRACKING_URI_OVERRIDE"}
    assert set(config["resources"]["asr"]["config"]) == set(type(defs.resources["asr"]).model_fields)
    assert config["resources"]["curation"]["config"]["min_score"] == 0.8
    assert config["resources"]["storage"]["config"]["home"] == str(settings.home)
    for job in ("process_shard", "rescore_shard", "refresh_warehouse", "train_keyword"):
        assert ResolvedRunConfig.build(defs.resolve_job_def(job), config)


def test_a_run_left_starting_by_a_dead_daemon_is_cancelled_and_executed_here(tmp_path, monkeypatch):
    """The daemon dequeued the run (STARTING) and died before a worker started: nobody will ever
    move it on, so the CLI cancels it and runs the shard itself."""
    monkeypatch.setattr(runs, "DAEMON_FRESH_S", 2.0)
    instance = prepare_instance(Settings(home=tmp_path / "home"))
    _beat(instance, time.time())
    original_submit = instance.submit_run

    def submit_then_dequeue_and_die(run_id, workspace):
        submitted = original_submit(run_id, workspace)
        # What the queue daemon writes when it dequeues a run (queued_run_coordinator_daemon).
        starting = DagsterEvent(event_type_value=DagsterEventType.RUN_STARTING.value, job_name=submitted.job_name)
        instance.report_dagster_event(starting, run_id=run_id)
        return submitted

    monkeypatch.setattr(instance, "submit_run", submit_then_dequeue_and_die)
    outcome = run_job(_answer_job(), instance)
    assert outcome.success
    statuses = sorted(run.status.value for run in instance.get_runs(RunsFilter(job_name="answer_job")))
    assert statuses == ["CANCELED", "SUCCESS"]
