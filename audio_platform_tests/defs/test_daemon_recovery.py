"""Kill trial of the production path: `audio-platform serve` (webserver + daemon + code server) is
SIGKILLed as a whole process group while shard runs are in flight, then started again. Without a
human, every file of the drop must be processed: the recovery sensor fails the dead runs and frees
their pool slots, the run-retry daemon re-executes them, and the queued run proceeds.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from audio_platform.runs import prepare_instance
from audio_platform.settings import Settings
from audio_platform.storage.lake import Lake
from audio_platform_tests.conftest import CORPUS, requires_corpus, stop_process_group

pytestmark = [pytest.mark.e2e, requires_corpus]

FILES = sorted((CORPUS / "audio/an4").glob("*.wav"))[:6]  # 1-4 s each
SHARD_SIZE = 2  # 3 shard runs: two in flight (max_concurrent_runs), one queued
TIMEOUT_S = 420.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serve(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "a") as out:
        return subprocess.Popen(
            [str(Path(sys.executable).with_name("audio-platform")), "serve", "--port", str(_free_port())],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _runs(instance: DagsterInstance, statuses: list[DagsterRunStatus]) -> int:
    return instance.get_runs_count(RunsFilter(job_name="process_shard", statuses=statuses))


def _files_done(settings: Settings) -> int:
    inventory = Lake(settings.lake_root).read_many("audio_files")
    return 0 if inventory is None else inventory.filter(inventory["status"] == "ok").height


def _wait(predicate, what: str, server: subprocess.Popen[bytes], log: Path, timeout_s: float = TIMEOUT_S) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if server.poll() is not None:
            pytest.fail(f"serve exited ({server.returncode}) while waiting for {what}:\n{log.read_text()[-4000:]}")
        if predicate():
            return time.monotonic() - started
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}:\n{log.read_text()[-6000:]}")


def test_a_killed_serve_is_restarted_and_finishes_every_drop(tmp_path):
    settings = Settings(home=tmp_path / "home", shard_size=SHARD_SIZE)
    instance = prepare_instance(settings)
    env = {
        **os.environ,
        "AUDIO_PLATFORM_HOME": str(settings.home),
        "AUDIO_PLATFORM_SHARD_SIZE": str(SHARD_SIZE),
        "AUDIO_PLATFORM_INBOX_QUIET_PERIOD_S": "5",
        "AUDIO_PLATFORM_ASR_CPU_THREADS": "1",
    }
    staging = tmp_path / "staging"
    staging.mkdir()
    for source in FILES:
        shutil.copyfile(source, staging / source.name)
    (staging / "_READY").write_bytes(b"")
    log = tmp_path / "serve.log"
    server = _serve(env, log)
    try:
        settings.inbox.mkdir(parents=True, exist_ok=True)
        staging.rename(settings.inbox / "drop")
        _wait(lambda: _runs(instance, [DagsterRunStatus.STARTED]) >= 1, "a shard run in flight", server, log)
        time.sleep(1.0)  # let a second run start too, when the machine allows
        in_flight = _runs(instance, [DagsterRunStatus.STARTED])
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
        done_at_kill = _files_done(settings)
        print(f"killed serve with {in_flight} run(s) STARTED and {done_at_kill} of {len(FILES)} files done")
        assert done_at_kill < len(FILES)

        restarted = time.monotonic()
        server = _serve(env, log)
        _wait(lambda: _files_done(settings) == len(FILES), "every file processed after the restart", server, log)
        recovery_s = time.monotonic() - restarted
        print(f"restart -> all {len(FILES)} files processed: {recovery_s:.0f} s")
        _wait(
            lambda: (
                _runs(instance, [DagsterRunStatus.STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.QUEUED]) == 0
            ),
            "no run left in flight or queued",
            server,
            log,
            timeout_s=120,
        )
        failed = instance.get_runs(RunsFilter(job_name="process_shard", statuses=[DagsterRunStatus.FAILURE]))
        # The dead runs were released as such (not as step failures) and retried by the daemon.
        assert len(failed) >= 1
        assert {(r.tags.get("dagster/failure_reason"), r.tags.get("dagster/will_retry")) for r in failed} == {
            ("RUN_WORKER_RESTART", "true")
        }
        shards = {run.tags["dagster/partition"] for run in instance.get_runs(RunsFilter(job_name="process_shard"))}
        succeeded = {
            run.tags["dagster/partition"]
            for run in instance.get_runs(RunsFilter(job_name="process_shard", statuses=[DagsterRunStatus.SUCCESS]))
        }
        assert succeeded == shards and len(shards) == 3
    finally:
        if server.poll() is None:
            stop_process_group(server)
