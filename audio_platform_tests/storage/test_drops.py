import os

import pytest

from audio_platform.storage.drops import drop_id_for, iter_drop_files, plan_drop, storable_path, undecodable_original
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
    assert [p for paths in plan.shards.values() for p in paths] == [
        "a.wav",
        "b.wav",
        "e f.wav",
        "sub/c.flac",
        "sub/deeper/d.mp3",
    ]
    assert plan.file_count == 5
    assert plan_drop(drop, shard_size=2) == plan
    frame = plan.shard_files(f"{plan.drop_id}-0001")
    assert frame["rel_path"].to_list() == ["e f.wav", "sub/c.flac"]
    assert frame["source_path"][0] == str(drop.resolve() / "e f.wav")


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
    assert undecodable_original(frame["source_path"][0]) == str(drop / os.fsdecode(b"bad\xff\xfe.wav"))
    assert undecodable_original(frame["source_path"][1]) is None
    assert storable_path("ok é.wav") == "ok é.wav"
