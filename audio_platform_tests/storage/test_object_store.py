"""The lake, the content index and the warehouse on a real S3-compatible server (moto, loopback).

The platform code only gets an ``s3://`` URI; endpoint and credentials reach it through the
standard AWS environment variables, which the ``s3_server`` fixture sets.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import polars as pl
import pytest

from audio_platform.cli import main
from audio_platform.storage.content_index import ContentIndex
from audio_platform.storage.lake import Lake
from audio_platform.storage.tables import AUDIO_FILES, SEGMENTS, SHARD_FILES
from audio_platform.storage.warehouse import query, rebuild_warehouse
from audio_platform_tests.servers import S3Server
from audio_platform_tests.storage.test_warehouse import _segment

HASH = "cd" * 32


def test_lake_round_trip_overwrite_and_listing(s3_server: S3Server) -> None:
    bucket = s3_server.new_bucket()
    lake = Lake(f"s3://{bucket}/lake")
    assert lake.tables() == [] and lake.read_many("t") is None and lake.shards("t") == []
    with pytest.raises(FileNotFoundError, match="no data for shard"):
        lake.read("t", "s1")

    lake.write("t", "s1", pl.DataFrame({"x": [1, 2, 3]}))
    lake.write("t", "s1", pl.DataFrame({"x": [4]}))  # a re-run replaces the shard, never appends
    lake.write("t", "s2", pl.DataFrame({"x": [5], "y": ["new column"]}))
    lake.write_schema(SHARD_FILES)
    lake.write_table(SHARD_FILES, "s1", SHARD_FILES.empty())

    assert lake.read("t", "s1")["x"].to_list() == [4]
    assert lake.shards("t") == ["s1", "s2"] and lake.shards("shard_files") == ["s1"]
    assert lake.tables() == ["shard_files", "t"]
    both = lake.read_many("t")
    assert both is not None and sorted(both["x"].to_list()) == [4, 5] and "y" in both.columns
    only_s2 = lake.read_many("t", ["s2", "missing"])
    assert only_s2 is not None and only_s2["x"].to_list() == [5]
    assert lake.read("shard_files", "s1").schema == pl.Schema(SHARD_FILES.schema)
    with pytest.raises(ValueError, match="missing columns"):
        lake.write_table(SHARD_FILES, "s2", pl.DataFrame({"shard": ["s2"]}))
    # Exactly the layout of a local lake, and no temp objects: every write was a single PUT.
    assert s3_server.keys(bucket) == [
        "lake/shard_files/_schema/data.parquet",
        "lake/shard_files/shard=s1/data.parquet",
        "lake/t/shard=s1/data.parquet",
        "lake/t/shard=s2/data.parquet",
    ]


def test_racing_claims_on_the_object_store_have_one_winner(s3_server: S3Server) -> None:
    bucket = s3_server.new_bucket()
    index = ContentIndex(f"s3://{bucket}/lake/_content_index")
    assert index.owner(HASH) is None
    claimants = 12
    start = threading.Barrier(claimants)

    def claim(i: int) -> str:
        start.wait()  # all claimants send their conditional PUT at once
        return index.claim(HASH, f"shard-{i}|file.wav")

    with ThreadPoolExecutor(max_workers=claimants) as pool:
        owners = list(pool.map(claim, range(claimants)))
    (winner,) = set(owners)
    assert index.owner(HASH) == winner
    # The owner's re-run keeps ownership; a later copy elsewhere is a duplicate of it.
    assert index.claim(HASH, winner) == winner
    assert index.claim(HASH, "shard-late|copy.wav") == winner
    assert s3_server.keys(bucket) == [f"lake/_content_index/{HASH[:2]}/{HASH}"]


def test_warehouse_views_over_the_object_store_lake(
    s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lake = Lake(f"s3://{s3_server.new_bucket()}/lake")
    db = tmp_path / "home" / "warehouse.duckdb"
    lake.write_table(SEGMENTS, "s1", _segment("a", "s1", 1.5))
    summary = rebuild_warehouse(db, lake, [SEGMENTS, AUDIO_FILES])
    assert {t.name: (t.rows, t.shards) for t in summary} == {"segments": (1, 1), "audio_files": (0, 0)}

    # Views read the object store at query time: a shard written after the rebuild is visible.
    lake.write_table(SEGMENTS, "s2", _segment("b", "s2", 2.0))
    total = query(db, "SELECT sum(duration_s) AS total, count(DISTINCT shard) AS shards FROM segments")
    assert total.row(0) == (pytest.approx(3.5), 2)
    assert query(db, "SELECT segment_id FROM segments WHERE shard = $1", ["s2"])["segment_id"].to_list() == ["b"]
    empty = query(db, "SELECT * FROM audio_files")
    assert empty.height == 0 and empty.columns == list(AUDIO_FILES.schema)

    # The CLI's `sql` command finds the warehouse under AUDIO_PLATFORM_HOME and reads the same lake.
    monkeypatch.setenv("AUDIO_PLATFORM_HOME", str(db.parent))
    assert main(["sql", "SELECT segment_id FROM segments ORDER BY segment_id", "--format", "csv"]) == 0
    assert capsys.readouterr().out.split() == ["segment_id", "a", "b"]
