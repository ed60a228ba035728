import os
import time

import pytest
from dagster import DagsterInstance, SensorResult, SkipReason, build_sensor_context

from audio_platform.defs.partitions import SHARDS
from audio_platform.defs.resources import PlatformStorage
from audio_platform.defs.sensors import InboxResource, inbox_sensor
from audio_platform.storage.inbox import inspect_drop
from audio_platform.storage.lake import Lake


@pytest.fixture
def env(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    instance = DagsterInstance.ephemeral()
    resources = {
        "storage": PlatformStorage(home=str(tmp_path / "home")),
        "inbox": InboxResource(root=str(inbox), quiet_period_s=30.0, shard_size=2),
    }

    def tick(cursor=None):
        context = build_sensor_context(instance=instance, cursor=cursor, resources=resources)
        return inbox_sensor(context)

    return inbox, tmp_path / "home", tick


def _drop(inbox, name, files, age_s=0.0, marker=False):
    folder = inbox / name
    folder.mkdir()
    stamp = time.time() - age_s
    for index in range(files):
        path = folder / f"clip_{index}.wav"
        path.write_bytes(b"RIFF" + bytes([index]) * 64)
        os.utime(path, (stamp, stamp))
    if marker:
        (folder / "_READY").write_bytes(b"")
    return folder


def test_incomplete_drop_is_skipped(env):
    inbox, _, tick = env
    _drop(inbox, "fresh", files=3)
    result = tick()
    assert isinstance(result, SkipReason) and "waiting for 1" in result.skip_message


def test_complete_drop_becomes_partitions_and_runs_exactly_once(env):
    inbox, home, tick = env
    _drop(inbox, "quiet", files=3, age_s=120)
    _drop(inbox, "marked", files=1, marker=True)
    result = tick()
    assert isinstance(result, SensorResult)
    keys = [r.partition_key for r in result.run_requests]
    assert len(keys) == 3  # 2 shards for 'quiet' (3 files / 2), 1 for 'marked'
    assert [r.run_key for r in result.run_requests] == keys
    (request,) = result.dynamic_partitions_requests
    assert request.partitions_def_name == SHARDS and list(request.partition_keys) == keys
    assert Lake(home / "lake").shards("shard_files") == sorted(keys)
    # The cursor survives into a brand-new context (a daemon restart) and nothing is requested again.
    again = tick(cursor=result.cursor)
    assert isinstance(again, SkipReason)


def test_a_drop_completing_later_is_picked_up_later(env):
    inbox, _, tick = env
    first = tick()
    assert isinstance(first, SkipReason)
    folder = _drop(inbox, "late", files=2)
    assert isinstance(tick(), SkipReason)
    (folder / "_SUCCESS").write_bytes(b"")
    result = tick()
    assert isinstance(result, SensorResult) and len(result.run_requests) == 1


def test_hidden_in_flight_files_keep_a_drop_open(tmp_path):
    folder = tmp_path / "drop"
    folder.mkdir()
    old = time.time() - 600
    (folder / "a.wav").write_bytes(b"x")
    os.utime(folder / "a.wav", (old, old))
    assert inspect_drop(folder, 60, time.time()).complete
    (folder / ".b.wav.partial").write_bytes(b"x")
    status = inspect_drop(folder, 60, time.time())
    assert not status.complete and "quiet period" in status.reason


def test_many_drops_are_bounded_per_tick(env, tmp_path):
    inbox, _, _ = env
    for index in range(5):
        _drop(inbox, f"d{index}", files=1, marker=True)
    instance = DagsterInstance.ephemeral()
    resources = {
        "storage": PlatformStorage(home=str(tmp_path / "home2")),
        "inbox": InboxResource(root=str(inbox), shard_size=10, max_drops_per_tick=2),
    }
    cursor = None
    batches = []
    for _ in range(3):
        result = inbox_sensor(build_sensor_context(instance=instance, cursor=cursor, resources=resources))
        batches.append(len(result.run_requests))
        cursor = result.cursor
    assert batches == [2, 2, 1]
