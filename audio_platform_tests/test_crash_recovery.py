"""Crash recovery: ``audio-platform process`` killed with SIGKILL at several points, then re-run,
ends with exactly the warehouse of a run that was never interrupted.

A small real drop (six short corpus files in five formats plus a byte-identical copy, three
shards of three) is processed twice from scratch into separate homes: once uninterrupted, and
once as a chain of runs where each run is killed at the next point of the pipeline and the last
one runs to completion. Kill points are events, not delays: the kill comes as soon as this run
(re)writes a given file, so the trial is the same on a slow or a busy machine:

1. the Dagster instance folder appears (the SQLite instance is being created),
2. shard 0's ``audio_files`` is written (inventory, claims and decode cache done; VAD next),
3. shard 1's ``transcripts`` is written (ASR done; its ``words``, scores and curation not yet),
4. shard 2's ``curation_decisions`` is written (the lake is complete; the warehouse is stale).

After every kill, each Parquet file a reader can see must be whole, and the killed writers' hidden
temp files must stay invisible to DuckDB's lake globs. No column is excluded from the comparison:
every stage is deterministic for the same inputs and shard layout (ONNX VAD, CTranslate2 on CPU
with the same thread count and batch composition, and one ASR decoder: with several, a piece
decoded again with sampling may differ between runs), and timings live in Dagster metadata, not
in the tables.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

import duckdb
import polars as pl
import pytest
from dagster import DagsterRun, DagsterRunStatus

from audio_platform.defs.vad import MODEL_POOL
from audio_platform.runs import OWNER_TAG, owner_tag, prepare_instance, release_runs_of_dead_processes
from audio_platform.settings import Settings
from audio_platform.storage.drops import drop_id_for
from audio_platform.storage.lake import Lake
from audio_platform.storage.tables import DROPS, LAKE_TABLES, STAGE_RUNS
from audio_platform.storage.warehouse import query
from audio_platform_tests.conftest import CORPUS, requires_corpus

AUDIO_PLATFORM = Path(sys.executable).with_name("audio-platform")
FILES = [
    "audio/an4/an326-ftal-b.sph",
    "audio/pocketsphinx/goforward.wav",
    "audio/librispeech/1034-121119-0046.flac",
    "audio/silero/test.mp3",
    "audio/deepspeech/LDC93S1_pcms16le_1_8000.wav",
    "audio/ljspeech/LJ050-0197.wav",
]
SHARD_SIZE = 3
RUN_TIMEOUT_S = 240.0
# stage_runs records each run (its id, times, CPU seconds), so it is compared by its keys only.
TABLES = [table.name for table in LAKE_TABLES if table not in (STAGE_RUNS, DROPS)] + ["segment_scores"]
STAGE_RUN_KEYS = "SELECT stage, partition_key FROM stage_runs ORDER BY ALL"
# drops records when and what each registration found (the re-runs found nothing new): compared by
# what the drop is.
DROP_KEYS = "SELECT drop_id, state, files, shards FROM drops ORDER BY ALL"


def _build_drop(folder: Path) -> None:
    folder.mkdir()
    for rel in FILES:
        shutil.copyfile(CORPUS / rel, folder / Path(rel).name)
    # Same content in the last shard: its claim must survive the kills without changing owner.
    shutil.copyfile(CORPUS / FILES[0], folder / "zz_copy.sph")


def _start(drop: Path, home: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(AUDIO_PLATFORM), "process", str(drop), "--shard-size", str(SHARD_SIZE)],
        env={**os.environ, "AUDIO_PLATFORM_HOME": str(home), "AUDIO_PLATFORM_ASR_WORKERS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, so the kill reaches anything it started
    )


def _finish(process: subprocess.Popen[bytes]) -> None:
    _, stderr = process.communicate(timeout=RUN_TIMEOUT_S)
    assert process.returncode == 0, stderr.decode(errors="replace")[-3000:]


@dataclass(frozen=True)
class KillPoint:
    name: str
    path: Callable[[Path, str], Path]  # (home, drop_id) -> the file whose (re)write triggers the kill


def _lake_file(table: str, shard_index: int) -> Callable[[Path, str], Path]:
    return lambda home, drop_id: Lake(home / "lake").shard_path(table, f"{drop_id}-{shard_index:04d}")


KILL_POINTS = [
    KillPoint("instance being created", lambda home, _: home / "dagster"),
    KillPoint("shard 0 inventoried", _lake_file("audio_files", 0)),
    KillPoint("shard 1 transcribed", _lake_file("transcripts", 1)),
    KillPoint("lake complete, warehouse stale", _lake_file("curation_decisions", 2)),
]


def _kill_when_written(process: subprocess.Popen[bytes], path: Path, since_ns: int) -> None:
    """SIGKILL the run as soon as ``path`` is written by it (mtime after ``since_ns``)."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if path.stat().st_mtime_ns > since_ns:
                break
        except FileNotFoundError:
            pass
        if process.poll() is not None:
            pytest.fail(f"the run ended (rc {process.returncode}) before it wrote {path}")
        time.sleep(0.02)
    else:
        pytest.fail(f"{path} was not written within {RUN_TIMEOUT_S} s")
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL


def _assert_nothing_partial_is_visible(home: Path) -> int:
    """Every data file a reader can see is whole, and DuckDB's lake globs skip the temp files of
    killed writers. Returns how many such temp files there are (left for the 1-hour sweep)."""
    lake = Lake(home / "lake")
    temps = [p for p in lake.root.rglob(".tmp-*")] if lake.root.is_dir() else []
    with duckdb.connect() as con:
        for table in lake.tables():
            if not lake.shards(table):
                continue
            glob = lake.glob(table)
            assert not [t for t in temps if fnmatch(str(t.resolve()), glob)], f"{table}: glob matches a temp file"
            for path in sorted(lake.table_dir(table).glob("*/data.parquet")):
                pl.read_parquet(path)  # raises on a torn file
            con.execute(f"SELECT count(*) FROM read_parquet('{glob}', union_by_name=true)").fetchone()
    return len(temps)


def _warehouse(home: Path) -> dict[str, pl.DataFrame]:
    tables = {}
    for table in TABLES:
        frame = query(home / "warehouse.duckdb", f'SELECT * FROM "{table}"')
        # A registration id is random by nature (like a run id): equal shards, different ids.
        frame = frame.drop("registration_id", strict=False)
        tables[table] = frame.sort(frame.columns, nulls_last=True)
    return tables


@pytest.mark.e2e
@requires_corpus
def test_killed_runs_resume_to_the_uninterrupted_result(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    _build_drop(drop)
    drop_id = drop_id_for(drop)
    # The reference run shares the machine with the trials (both are I/O and model bound).
    clean_home, crash_home = tmp_path / "clean", tmp_path / "crashed"
    clean = _start(drop, clean_home)

    trials = []
    for point in KILL_POINTS:
        started_ns = time.time_ns()
        _kill_when_written(_start(drop, crash_home), point.path(crash_home, drop_id), started_ns)
        trials.append((point.name, _assert_nothing_partial_is_visible(crash_home)))
    _finish(_start(drop, crash_home))
    _finish(clean)
    print(f"kill trials (point, temp files left by the killed writer): {trials}")

    _assert_nothing_partial_is_visible(crash_home)
    expected, resumed = _warehouse(clean_home), _warehouse(crash_home)
    assert expected["audio_files"].height == len(FILES) + 1
    assert expected["segments"].height > 0 and expected["curated_segments"].height > 0
    for table in TABLES:
        assert resumed[table].equals(expected[table]), f"{table} differs after the crashes"
    drops = [query(home / "warehouse.duckdb", DROP_KEYS) for home in (clean_home, crash_home)]
    assert drops[0].height == 1 and drops[1].equals(drops[0]), "one drops row, the same drop"
    stage_runs = [query(home / "warehouse.duckdb", STAGE_RUN_KEYS) for home in (clean_home, crash_home)]
    assert stage_runs[0].height > 0 and stage_runs[1].equals(stage_runs[0]), "one stage_runs row per stage and shard"


def test_runs_of_a_killed_process_are_failed_and_free_their_pool_slot(tmp_path: Path) -> None:
    """The unit under the end-to-end test above: without it the resumed run waits forever for the
    `audio_models` slot that a killed run still holds."""
    instance = prepare_instance(Settings(home=tmp_path / "home"))
    storage = instance.event_log_storage
    storage.set_concurrency_slots(MODEL_POOL, 1)
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = owner_tag("x").rsplit(":", 2)[0]
    owners = {
        "killed": f"{host}:{finished.stdout.strip()}:1@killed",
        "alive": owner_tag("alive"),
        "other-host": "elsewhere.example:1:1@other-host",
        "untagged": None,
        # A retry carries its parent's tags: a dead parent's owner says nothing about the retry.
        "retry-of-killed": f"{host}:{finished.stdout.strip()}:1@killed",
        # Written before owner tags named their run: still its own run's.
        "legacy-killed": f"{host}:{finished.stdout.strip()}:1",
    }
    for run_id, owner in owners.items():
        tags = {OWNER_TAG: owner} if owner else {}
        instance.add_run(
            DagsterRun(job_name="process_shard", run_id=run_id, status=DagsterRunStatus.STARTED, tags=tags)
        )
    assert storage.claim_concurrency_slot(MODEL_POOL, "killed", "vad_segments").is_claimed
    assert not storage.claim_concurrency_slot(MODEL_POOL, "alive", "vad_segments").is_claimed

    assert sorted(release_runs_of_dead_processes(instance)) == ["killed", "legacy-killed"]
    statuses = {run_id: instance.get_run_by_id(run_id).status for run_id in owners}  # type: ignore[union-attr]
    assert statuses == {
        "killed": DagsterRunStatus.FAILURE,
        "alive": DagsterRunStatus.STARTED,
        "other-host": DagsterRunStatus.STARTED,
        "untagged": DagsterRunStatus.STARTED,
        "retry-of-killed": DagsterRunStatus.STARTED,
        "legacy-killed": DagsterRunStatus.FAILURE,
    }
    assert storage.claim_concurrency_slot(MODEL_POOL, "alive", "vad_segments").is_claimed
    assert release_runs_of_dead_processes(instance) == []
