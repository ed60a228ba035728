import os

import polars as pl
import pytest

from audio_platform.storage.drops import (
    HOME_MARKER,
    drop_id_for,
    iter_drop_files,
    mark_platform_home,
    plan_drop,
    storable_path,
    undecodable_original,
)
from audio_platform.storage.lake import Lake
from audio_platform.storage.tables import SHARD_FILES


def _touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_plan_is_deterministic_readable_and_complete(tmp_path):
    drop = tmp_path / "My Drop 2026"
    for name in ["b.wav", "a.wav", "sub/c.flac", "sub/deeper/d.mp3", "e f.wav"]:
        _touch(drop / name)
    _touch(drop / "_READY", b"")
    _touch(drop / ".hidden.wav")
    _touch(drop / ".git" / "x.wav")
    plan = plan_drop(drop, shard_size=2)
    assert plan.drop_id.startswith("my-drop-2026-") and plan.drop_id == drop_id_for(drop)
    assert list(plan.shards) == [f"{plan.drop_id}-0000", f"{plan.drop_id}-0001", f"{plan.drop_id}-0002"]
    assert plan.changed_shards == list(plan.shards) and plan.counts["new"] == 6
    assert [p for paths in plan.shards.values() for p in paths] == [
        ".hidden.wav",  # listed, so the inventory accounts for it; hidden folders are not
        "a.wav",
        "b.wav",
        "e f.wav",
        "sub/c.flac",
        "sub/deeper/d.mp3",
    ]
    assert plan.file_count == 6
    again = plan_drop(drop, shard_size=2)
    assert again.shards == plan.shards  # the first registration of a folder is deterministic
    frame = plan.shard_files(f"{plan.drop_id}-0001")
    assert frame["rel_path"].to_list() == ["b.wav", "e f.wav"]
    assert frame["source_path"][0] == str(drop.resolve() / "b.wav")


def test_same_name_elsewhere_gets_another_drop_id(tmp_path):
    (tmp_path / "x" / "drop").mkdir(parents=True)
    (tmp_path / "y" / "drop").mkdir(parents=True)
    assert drop_id_for(tmp_path / "x" / "drop") != drop_id_for(tmp_path / "y" / "drop")


def test_bad_arguments(tmp_path):
    with pytest.raises(NotADirectoryError):
        plan_drop(tmp_path / "nope", 10)
    with pytest.raises(ValueError, match="shard_size"):
        plan_drop(tmp_path, 0)


def test_empty_drop_has_no_shards(tmp_path):
    assert plan_drop(tmp_path, 5).shards == {}


def test_symlinked_directory_is_listed_not_followed(tmp_path):
    drop, elsewhere = tmp_path / "drop", tmp_path / "elsewhere"
    _touch(drop / "a.wav")
    _touch(elsewhere / "inside_the_link.wav")
    os.symlink(elsewhere, drop / "linked")
    os.symlink(elsewhere, drop / ".hidden_link")
    # Listed as an entry so the inventory can quarantine it; its contents are never walked.
    assert sorted(iter_drop_files(drop)) == ["a.wav", "linked"]


def test_names_that_are_not_utf8_are_stored_escaped(tmp_path):
    drop = tmp_path / "drop"
    _touch(drop / "ok é.wav")
    _touch(drop / os.fsdecode(b"bad\xff\xfe.wav"))
    plan = plan_drop(drop, shard_size=10)
    (shard,) = plan.shards
    frame = plan.shard_files(shard)
    lake = Lake(tmp_path / "lake")
    lake.write_table(SHARD_FILES, shard, frame)  # Parquet holds only UTF-8: this used to raise
    assert lake.read(SHARD_FILES.name, shard)["rel_path"].to_list() == ["bad\\xff\\xfe.wav", "ok é.wav"]
    # A second registration matches the stored (escaped) name with the file on disk: unchanged.
    assert plan_drop(drop, 10, lake.read(SHARD_FILES.name, shard)).changed_shards == []
    assert undecodable_original(frame["source_path"][0]) == str(drop / os.fsdecode(b"bad\xff\xfe.wav"))
    assert undecodable_original(frame["source_path"][1]) is None
    assert storable_path("ok é.wav") == "ok é.wav"


def _shard_of(plan):
    return {rel: shard for shard, paths in plan.shards.items() for rel in paths}


def _replan(drop, plan, shard_size=2):
    return plan_drop(drop, shard_size, plan.assignment)


def test_a_files_shard_does_not_depend_on_its_neighbours(tmp_path):
    drop = tmp_path / "drop"
    for name in ["b.wav", "c.wav", "d.wav"]:
        _touch(drop / name)
    first = plan_drop(drop, shard_size=2)
    _touch(drop / "a.wav")  # sorts first: it used to shift every other file into the next shard
    second = _replan(drop, first)
    assert {rel: _shard_of(second)[rel] for rel in _shard_of(first)} == _shard_of(first)
    assert second.changed_shards == [f"{first.drop_id}-0002"] and second.shards[f"{first.drop_id}-0002"] == ["a.wav"]
    assert second.counts == {"new": 1, "changed": 0, "removed": 0, "unchanged": 3}
    ids = first.registration_ids
    assert {s: i for s, i in second.registration_ids.items() if s in ids} == ids  # unchanged shards keep theirs


def test_changed_removed_and_returning_files(tmp_path):
    drop = tmp_path / "drop"
    for name in ["a.wav", "b.wav", "c.wav", "d.wav"]:
        _touch(drop / name)
    first = plan_drop(drop, shard_size=2)
    shard_ab, shard_cd = first.shards
    _touch(drop / "b.wav", b"new content")  # content change: size differs
    (drop / "d.wav").unlink()
    second = _replan(drop, first)
    assert second.changed_shards == [shard_ab, shard_cd]
    assert second.counts == {"new": 0, "changed": 1, "removed": 1, "unchanged": 2}
    removed = second.assignment.filter(second.assignment["removed_at"].is_not_null())["rel_path"].to_list()
    assert removed == ["d.wav"]
    assert all(second.registration_ids[s] != first.registration_ids[s] for s in (shard_ab, shard_cd))
    third = _replan(drop, second)  # nothing happened since: nothing to do, removal kept on record
    assert third.changed_shards == [] and third.counts["removed"] == 0 and third.file_count == 4
    _touch(drop / "d.wav")  # back again: its old place, no longer removed
    fourth = _replan(drop, third)
    assert fourth.changed_shards == [shard_cd] and fourth.assignment["removed_at"].null_count() == 4


def test_rename_is_a_removal_and_a_new_file(tmp_path):
    drop = tmp_path / "drop"
    _touch(drop / "a.wav")
    first = plan_drop(drop, shard_size=2)
    os.rename(drop / "a.wav", drop / "z.wav")
    second = _replan(drop, first)
    assert second.counts == {"new": 1, "changed": 0, "removed": 1, "unchanged": 0}
    assert len(second.shards) == 2


def test_a_platform_home_is_never_an_input(tmp_path):
    drop = tmp_path / "drop"
    _touch(drop / "a.wav")
    home = drop / "my home"  # not hidden: the marker, not the name, keeps it out
    mark_platform_home(home)
    _touch(home / "lake" / "audio_files" / "x.parquet")
    _touch(home / "dagster" / "runs.db")
    assert list(iter_drop_files(drop)) == ["a.wav"]
    assert (home / HOME_MARKER).is_file()
    with pytest.raises(ValueError, match="home"):
        plan_drop(home, 10)


def test_stale_shards_of_an_earlier_version_are_emptied(tmp_path):
    drop = tmp_path / "drop"
    for name in ["b.wav", "c.wav", "d.wav", "e.wav"]:
        _touch(drop / name)
    plan = plan_drop(drop, shard_size=2)
    _, shard_1 = plan.shards
    # The old layout after removing a.wav from a,b|c,d|e: b,c|d,e rewritten and a stale e in 0002.
    stale = (
        plan.shard_files(shard_1)
        .tail(1)
        .with_columns(shard=pl.lit(f"{plan.drop_id}-0002"), position=pl.lit(0, pl.Int64))
    )
    legacy = pl.concat([plan.assignment, stale]).drop("size", "mtime_ns", "inode", "registration_id")
    again = plan_drop(
        drop,
        2,
        legacy.with_columns(
            size=pl.lit(None, pl.Int64),
            mtime_ns=pl.lit(None, pl.Int64),
            inode=pl.lit(None, pl.Int64),
            registration_id=pl.lit(None, pl.String),
        ),
    )
    assert again.shards == plan.shards  # e.wav once, in its first shard; nothing reported removed
    assert again.counts["removed"] == 0 and again.assignment["rel_path"].n_unique() == 4
    assert f"{plan.drop_id}-0002" in again.changed_shards and f"{plan.drop_id}-0002" in again.registration_ids
    assert again.shard_files(f"{plan.drop_id}-0002").height == 0
