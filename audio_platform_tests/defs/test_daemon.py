"""Zero-touch: a real dagster-daemon picks drops up from the inbox and curated rows appear.

No run is launched by the test: it only copies files into the inbox and polls DuckDB.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from dagster import RunsFilter

from audio_platform.runs import prepare_instance
from audio_platform.settings import Settings
from audio_platform.storage.warehouse import query
from audio_platform_tests.conftest import CORPUS, requires_corpus, stop_process_group

pytestmark = [pytest.mark.e2e, requires_corpus]

FIRST_DROP = [
    "audio/whisper/jfk.flac",
    "audio/librivox/sense_and_sensibility_01_austen_64kb-0870.wav",
    "audio/librivox/sense_and_sensibility_01_austen_64kb-0890.wav",
    "audio/an4/an313-fkai-b.wav",
    "audio/esc50/1-100032-A-0.wav",
]
OVERLAP = FIRST_DROP[:3]
LATE_FILE = "audio/an4/an251-fash-b.wav"
NEW_IN_SECOND = ["audio/ljspeech/LJ050-0164.wav", "audio/deepspeech/new-home-in-the-stars-16k.wav"]
TIMEOUT_S = 480.0


def _copy_drop(inbox: Path, name: str, files: list[str]) -> None:
    staging = inbox.parent / f"staging-{name}"
    for rel in files:
        (staging / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(CORPUS / rel, staging / rel)
    (staging / "_READY").write_bytes(b"")
    staging.rename(inbox / name)  # lands complete, like a producer's final rename


def _wait_for(predicate, what: str, daemon: subprocess.Popen, log: Path) -> float:
    started = time.monotonic()
    while time.monotonic() - started < TIMEOUT_S:
        if daemon.poll() is not None:
            pytest.fail(f"dagster-daemon exited ({daemon.returncode}):\n{log.read_text()[-4000:]}")
        try:
            if predicate():
                return time.monotonic() - started
        except (FileNotFoundError, Exception) as err:  # warehouse not published yet / view missing
            last = err
        time.sleep(2)
    pytest.fail(f"timed out after {TIMEOUT_S:.0f} s waiting for {what} ({last!r}):\n{log.read_text()[-4000:]}")


def _curated_by_drop(settings: Settings) -> dict[str, int]:
    frame = query(
        settings.warehouse_path,
        "SELECT f.drop_id, count(*) AS n FROM curated_segments c JOIN audio_files f USING (file_id) GROUP BY ALL",
    )
    return dict(frame.iter_rows())


def test_daemon_turns_inbox_drops_into_curated_rows(tmp_path):
    settings = Settings(home=tmp_path / "home")
    instance = prepare_instance(settings)

    def _process_shard_runs() -> list:
        return instance.get_runs(RunsFilter(job_name="process_shard"))

    inbox = settings.inbox
    inbox.mkdir(parents=True)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(settings.dagster_home),
        "AUDIO_PLATFORM_HOME": str(settings.home),
        "AUDIO_PLATFORM_SHARD_SIZE": "3",
        "AUDIO_PLATFORM_INBOX_QUIET_PERIOD_S": "5",
        "AUDIO_PLATFORM_ASR_CPU_THREADS": "2",
    }
    log = tmp_path / "daemon.log"
    with open(log, "w") as out:
        daemon = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-m", "audio_platform.definitions"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _copy_drop(inbox, "drop-a", FIRST_DROP)
        latency = _wait_for(lambda: _curated_by_drop(settings), "curated rows of drop-a", daemon, log)
        print(f"drop-a: curated rows queryable {latency:.1f} s after the drop landed")
        files_a = query(settings.warehouse_path, "SELECT status FROM audio_files")
        assert files_a.height == len(FIRST_DROP) and set(files_a["status"]) == {"ok"}

        _copy_drop(inbox, "drop-b", OVERLAP + NEW_IN_SECOND)

        def drop_b_done() -> bool:
            files = query(settings.warehouse_path, "SELECT * FROM audio_files WHERE drop_id LIKE 'drop-b-%'")
            curated = _curated_by_drop(settings)
            return files.height == len(OVERLAP + NEW_IN_SECOND) and any(d.startswith("drop-b") for d in curated)

        latency_b = _wait_for(drop_b_done, "curated rows of drop-b", daemon, log)
        print(f"drop-b: curated rows queryable {latency_b:.1f} s after the drop landed")
        drop_b = query(settings.warehouse_path, "SELECT * FROM audio_files WHERE drop_id LIKE 'drop-b-%'")
        status = dict(zip(drop_b["rel_path"], drop_b["status"], strict=True))
        assert {status[rel] for rel in OVERLAP} == {"duplicate"}
        assert {status[rel] for rel in NEW_IN_SECOND} == {"ok"}
        assert all("drop-a" in d for d in drop_b.filter(pl.col("status") == "duplicate")["duplicate_of"])

        # A late file in a drop that was already processed, copied with its old timestamp
        # (`cp -p`): a follow-up registration processes it; nothing else runs again.
        runs_before = len(_process_shard_runs())
        shutil.copy2(CORPUS / LATE_FILE, inbox / "drop-a" / Path(LATE_FILE).name)

        def late_file_done() -> bool:
            sql = "SELECT rel_path, status FROM audio_files WHERE drop_id LIKE 'drop-a-%'"
            files = query(settings.warehouse_path, sql)
            return dict(files.iter_rows()).get(Path(LATE_FILE).name) == "ok"

        latency_late = _wait_for(late_file_done, "the late file of drop-a", daemon, log)
        print(f"drop-a follow-up: the late file queryable {latency_late:.1f} s after it landed")
        assert len(_process_shard_runs()) == runs_before + 1
    finally:
        stop_process_group(daemon)
