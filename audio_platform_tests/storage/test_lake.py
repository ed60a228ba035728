import os
import time

import polars as pl
import pytest

from audio_platform.storage.lake import Lake
from audio_platform.storage.tables import SHARD_FILES


def test_write_replaces_rows_instead_of_appending(tmp_path):
    lake = Lake(tmp_path)
    lake.write("t", "s1", pl.DataFrame({"a": [1, 2, 3]}))
    lake.write("t", "s1", pl.DataFrame({"a": [4]}))
    assert lake.read("t", "s1")["a"].to_list() == [4]
    assert lake.shards("t") == ["s1"]


def test_write_leaves_no_temp_files_and_cleans_stale_ones(tmp_path):
    lake = Lake(tmp_path)
    folder = lake.shard_path("t", "s1").parent
    folder.mkdir(parents=True)
    stale = folder / ".tmp-dead.parquet"
    stale.write_bytes(b"partial")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    fresh = folder / ".tmp-inflight.parquet"
    fresh.write_bytes(b"partial")
    lake.write("t", "s1", pl.DataFrame({"a": [1]}))
    assert sorted(p.name for p in folder.iterdir()) == [".tmp-inflight.parquet", "data.parquet"]


def test_read_many_and_missing(tmp_path):
    lake = Lake(tmp_path)
    assert lake.read_many("t") is None
    lake.write("t", "a", pl.DataFrame({"x": [1]}))
    lake.write("t", "b", pl.DataFrame({"x": [2], "y": ["new column"]}))
    both = lake.read_many("t")
    assert both is not None and sorted(both["x"].to_list()) == [1, 2]
    only_b = lake.read_many("t", ["b", "missing"])
    assert only_b is not None and only_b["x"].to_list() == [2]
    with pytest.raises(FileNotFoundError, match="no data for shard"):
        lake.read("t", "missing")
    assert lake.tables() == ["t"]


def test_write_table_enforces_the_contract(tmp_path):
    lake = Lake(tmp_path)
    with pytest.raises(ValueError, match="missing columns"):
        lake.write_table(SHARD_FILES, "s", pl.DataFrame({"shard": ["s"]}))
    lake.write_table(SHARD_FILES, "s", SHARD_FILES.empty())
    assert lake.read("shard_files", "s").schema == pl.Schema(SHARD_FILES.schema)
