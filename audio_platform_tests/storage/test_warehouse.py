import duckdb
import polars as pl
import pytest

from audio_platform.storage.lake import Lake
from audio_platform.storage.tables import AUDIO_FILES, SEGMENTS
from audio_platform.storage.warehouse import query, rebuild_warehouse


def test_views_follow_the_lake_and_empty_tables_are_typed(tmp_path):
    lake = Lake(tmp_path / "lake")
    db = tmp_path / "wh.duckdb"
    lake.write("segments", "s1", pl.DataFrame({"segment_id": ["a"], "shard": ["s1"], "duration_s": [1.5]}))
    summary = rebuild_warehouse(db, lake, {"segments": SEGMENTS.schema, "audio_files": AUDIO_FILES.schema})
    assert {t.name: (t.rows, t.source) for t in summary} == {"segments": (1, "lake"), "audio_files": (0, "empty")}
    # A shard written after the rebuild is visible without another rebuild: views read the lake.
    lake.write("segments", "s2", pl.DataFrame({"segment_id": ["b"], "shard": ["s2"], "duration_s": [2.0]}))
    assert query(db, "SELECT sum(duration_s) AS total FROM segments")["total"][0] == pytest.approx(3.5)
    empty = query(db, "SELECT * FROM audio_files")
    assert empty.height == 0 and "file_id" in empty.columns


def test_extra_frames_become_tables_and_queries_take_parameters(tmp_path):
    db = tmp_path / "wh.duckdb"
    rebuild_warehouse(db, Lake(tmp_path / "lake"), {}, {"models": pl.DataFrame({"name": ["kws"], "version": [3]})})
    assert query(db, "SELECT version FROM models WHERE name = $1", ["kws"])["version"].to_list() == [3]


def test_reader_keeps_working_while_the_file_is_republished(tmp_path):
    lake = Lake(tmp_path / "lake")
    db = tmp_path / "wh.duckdb"
    lake.write("t", "s", pl.DataFrame({"x": [1]}))
    rebuild_warehouse(db, lake, {})
    with duckdb.connect(str(db), read_only=True) as reader:
        rebuild_warehouse(db, lake, {})  # no lock error although a reader holds the old file
        assert reader.execute("SELECT count(*) FROM t").fetchone() == (1,)
    assert not list(tmp_path.glob(".*tmp*"))


def test_query_without_warehouse_explains_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="audio-platform process"):
        query(tmp_path / "none.duckdb", "SELECT 1")
