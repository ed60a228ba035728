"""The inbox sensor judges drops by watching them: ticks are driven here with a controlled clock."""

import os
import shutil
import time

import polars as pl
import pytest
from dagster import DagsterInstance, SensorResult, SkipReason, build_sensor_context

from audio_platform.defs import sensors
from audio_platform.defs.partitions import SHARDS
from audio_platform.defs.resources import PlatformStorage
from audio_platform.defs.sensors import InboxResource, inbox_sensor
from audio_platform.storage.inbox import inspect_drop
from audio_platform.storage.lake import Lake

QUIET_S = 30.0


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def env(tmp_path, monkeypatch):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    instance = DagsterInstance.ephemeral()
    clock = Clock()
    monkeypatch.setattr(sensors.time, "time", lambda: clock.now)
    resources = {
        "storage": PlatformStorage(home=str(tmp_path / "home")),
        "inbox": InboxResource(root=str(inbox), inbox_quiet_period_s=QUIET_S, shard_size=2),
    }
    state = {"cursor": None}

    def tick(seconds: float = 10.0, cursor="keep"):
        """One sensor evaluation ``seconds`` after the previous one, with the cursor it left."""
        clock.advance(seconds)
        context = build_sensor_context(
            instance=instance, cursor=state["cursor"] if cursor == "keep" else cursor, resources=resources
        )
        result = inbox_sensor(context)
        if isinstance(result, SensorResult) and result.cursor is not None:
            state["cursor"] = result.cursor
        return result

    return inbox, tmp_path / "home", tick


def _write(folder, name, data=b"RIFF" + b"x" * 64, mtime=None):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def _drop(inbox, name, files, marker=False):
    folder = inbox / name
    folder.mkdir()
    for index in range(files):
        _write(folder, f"clip_{index}.wav", b"RIFF" + bytes([index]) * 64)
    if marker:
        (folder / "_READY").write_bytes(b"")
    return folder


def _requested(result):
    return [r.partition_key for r in result.run_requests] if isinstance(result, SensorResult) else []


def test_a_drop_is_complete_only_after_it_was_seen_unchanged(env):
    inbox, home, tick = env
    _drop(inbox, "quiet", files=3)
    _drop(inbox, "marked", files=1, marker=True)
    first = tick()
    assert _requested(first) == []  # first sight: nothing is known to have stopped changing
    second = tick()
    assert len(_requested(second)) == 1  # marked and unchanged since the last tick
    third = tick(QUIET_S)
    keys = _requested(third)
    assert len(keys) == 2  # 'quiet': 3 files / 2 per shard, after the quiet period as observed
    assert all(r.run_key.startswith(f"{r.partition_key}@") for r in third.run_requests)
    (request,) = third.dynamic_partitions_requests
    assert request.partitions_def_name == SHARDS and sorted(request.partition_keys) == sorted(keys)
    assert len(Lake(home / "lake").shards("shard_files")) == 3
    # Nothing changes: nothing is registered again, also from a fresh context (a daemon restart).
    assert isinstance(tick(QUIET_S), SkipReason)


def test_old_timestamps_do_not_make_a_slow_copy_complete(env):
    inbox, _, tick = env
    folder = inbox / "slowcopy"
    folder.mkdir()
    long_ago = time.time() - 86400
    _write(folder, "a.wav", mtime=long_ago)  # `cp -p`: the file says it is a day old
    tick()
    tick(QUIET_S - 15)
    _write(folder, "b.wav", b"RIFFb" * 10, mtime=long_ago)  # arrives 45 s later, also "old"
    assert _requested(tick(20)) == []  # the listing changed: the quiet period starts again
    result = tick(QUIET_S)
    assert len(_requested(result)) == 1
    # Files arriving after registration: a follow-up registration, never silence.
    _write(folder, "c.wav", b"RIFFc" * 10, mtime=long_ago)
    assert _requested(tick()) == []
    follow_up = tick(QUIET_S)
    shards = _requested(follow_up)
    assert len(shards) == 2  # run keys are per registration: only the new shard gets a new run
    new_keys = {r.run_key for r in follow_up.run_requests} - {r.run_key for r in result.run_requests}
    assert len(new_keys) == 1


def test_a_marker_alone_is_not_a_drop_and_a_growing_file_is_not_processed(env):
    inbox, _, tick = env
    folder = inbox / "growing"
    folder.mkdir()
    (folder / "_READY").write_bytes(b"")
    for _ in range(3):
        assert _requested(tick(QUIET_S)) == []  # only a marker: no files yet
    with open(folder / "long.wav", "wb") as out:
        for _chunk in range(4):
            out.write(b"x" * 1000)
            out.flush()
            assert _requested(tick(QUIET_S)) == []  # the file grew since the last look
    assert len(_requested(tick())) == 1


def test_hidden_in_flight_files_keep_a_marked_drop_open_until_quiet(tmp_path):
    folder = tmp_path / "drop"
    _write(folder, "a.wav")
    (folder / "_READY").write_bytes(b"")
    _write(folder, ".b.wav.partial")
    now = time.time()
    first = inspect_drop(folder, 60, now)
    status = inspect_drop(folder, 60, now + 10, first.watch)
    assert not status.complete and "in-flight" in status.reason
    (folder / ".b.wav.partial").rename(folder / "b.wav")
    moved = inspect_drop(folder, 60, now + 20, status.watch)
    assert not moved.complete
    assert inspect_drop(folder, 60, now + 30, moved.watch).complete


def test_a_drop_folder_removed_and_recreated_is_seen_again(env):
    inbox, _, tick = env
    folder = _drop(inbox, "again", files=1, marker=True)
    tick()
    assert len(_requested(tick())) == 1
    shutil.rmtree(folder)
    assert isinstance(tick(), SkipReason)


def test_a_cursor_of_the_earlier_version_is_read(env):
    inbox, _, tick = env
    _drop(inbox, "old", files=1, marker=True)
    legacy = '{"drops": {"old": "old-abc123"}}'
    assert _requested(tick(cursor=legacy)) == []  # seen once more before it counts as unchanged
    assert len(_requested(tick())) == 1


def test_many_drops_are_bounded_per_tick(tmp_path, monkeypatch):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for index in range(5):
        _drop(inbox, f"d{index}", files=1, marker=True)
    clock = Clock()
    monkeypatch.setattr(sensors.time, "time", lambda: clock.now)
    instance = DagsterInstance.ephemeral()
    resources = {
        "storage": PlatformStorage(home=str(tmp_path / "home2")),
        "inbox": InboxResource(root=str(inbox), shard_size=10, max_drops_per_tick=2),
    }
    cursor = None
    batches = []
    for _ in range(4):
        clock.advance(10)
        result = inbox_sensor(build_sensor_context(instance=instance, cursor=cursor, resources=resources))
        batches.append(len(_requested(result)))
        cursor = result.cursor if isinstance(result, SensorResult) else cursor
    assert batches == [0, 2, 2, 1]


def test_a_drop_emptied_after_registration_is_registered_again_as_removed(env):
    inbox, home, tick = env
    folder = _drop(inbox, "emptied", files=2, marker=True)
    tick()
    assert len(_requested(tick())) == 1
    for path in folder.glob("clip_*.wav"):
        path.unlink()
    tick()
    result = tick()
    assert len(_requested(result)) == 1  # the shard runs again and records both files as removed
    rows = Lake(home / "lake").read_many("shard_files")
    assert rows["removed_at"].null_count() == 0


def test_one_drop_that_cannot_be_registered_does_not_stop_the_others(env, tmp_path):
    from audio_platform.storage.drops import HOME_MARKER

    inbox, _, tick = env
    bad = _drop(inbox, "a-bad", files=1, marker=True)
    _drop(inbox, "b-good", files=1, marker=True)
    tick()
    (bad / HOME_MARKER).write_text("")  # became a platform home: never an input, skipped
    requested = _requested(tick())
    assert len(requested) == 1 and requested[0].startswith("b-good")


def test_shards_a_dead_tick_wrote_become_partitions_on_the_next(env, tmp_path):
    from audio_platform.storage.registration import register_drop_files

    inbox, home, tick = env
    folder = _drop(inbox, "half", files=3, marker=True)
    # A tick that wrote the lake and died before returning: no partitions, no cursor.
    register_drop_files(Lake(home / "lake"), folder, 2)
    tick()
    result = tick()
    (request,) = result.dynamic_partitions_requests
    assert sorted(request.partition_keys) == sorted(_requested(result)) and len(_requested(result)) == 2


def test_the_drops_table_shows_waiting_and_registered_drops(env):
    inbox, home, tick = env
    _drop(inbox, "later", files=2)  # no marker: waits for the quiet period
    _drop(inbox, "marked", files=1, marker=True)
    tick()
    tick()
    drops = Lake(home / "lake").read_many("drops")
    state = {row["drop_root"].rsplit("/", 1)[-1]: row for row in drops.iter_rows(named=True)}
    assert state["later"]["state"] == "waiting" and "waiting for a ready marker" in state["later"]["reason"]
    assert state["later"]["files"] == 2
    assert state["marked"]["state"] == "registered" and state["marked"]["reason"] == "registered: 1 new"
    assert state["marked"]["shards"] == 1
    first_seen = state["later"]["first_seen_at"]
    tick(QUIET_S)
    later = Lake(home / "lake").read_many("drops").filter(pl.col("drop_root").str.ends_with("/later"))
    assert later["state"][0] == "registered" and later["first_seen_at"][0] == first_seen
