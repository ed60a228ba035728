import duckdb
import polars as pl
import pytest

from audio_platform.storage.lake import Lake
from audio_platform.storage.tables import AUDIO_FILES, MODELS, SEGMENTS
from audio_platform.storage.warehouse import query, rebuild_warehouse


def _segment(segment_id: str, shard: str, duration: float) -> pl.DataFrame:
    row = {c: None for c in SEGMENTS.schema} | {"segment_id": segment_id, "shard": shard, "duration_s": duration}
    return SEGMENTS.conform(pl.DataFrame([row], schema=SEGMENTS.schema))


def test_views_follow_the_lake_and_empty_tables_are_typed(tmp_path):
    lake = Lake(tmp_path / "lake")
    db = tmp_path / "wh.duckdb"
    lake.write_table(SEGMENTS, "s1", _segment("a", "s1", 1.5))
    summary = rebuild_warehouse(db, lake, [SEGMENTS, AUDIO_FILES])
    assert {t.name: (t.rows, t.shards) for t in summary} == {"segments": (1, 1), "audio_files": (0, 0)}
    # A shard written after the rebuild is visible without another rebuild: views read the lake.
    lake.write_table(SEGMENTS, "s2", _segment("b", "s2", 2.0))
    assert query(db, "SELECT sum(duration_s) AS total FROM segments")["total"][0] == pytest.approx(3.5)
    empty = query(db, "SELECT * FROM audio_files")
    assert empty.height == 0 and empty.columns == list(AUDIO_FILES.schema)
    # A table empty at rebuild time becomes populated without a rebuild as well.
    lake.write_table(AUDIO_FILES, "s1", AUDIO_FILES.empty())
    assert lake.shards("audio_files") == ["s1"]


def test_queries_take_parameters(tmp_path):
    lake = Lake(tmp_path / "lake")
    db = tmp_path / "wh.duckdb"
    rebuild_warehouse(db, lake, [MODELS])
    row = {c: None for c in MODELS.schema} | {"name": "kws-six", "version": 3}
    lake.write_table(MODELS, "six", pl.DataFrame([row], schema=MODELS.schema))
    assert query(db, "SELECT version FROM models WHERE name = $1", ["kws-six"])["version"].to_list() == [3]


def test_reader_keeps_working_while_the_file_is_republished(tmp_path):
    lake = Lake(tmp_path / "lake")
    db = tmp_path / "wh.duckdb"
    lake.write_table(SEGMENTS, "s", _segment("a", "s", 1.0))
    rebuild_warehouse(db, lake, [SEGMENTS])
    with duckdb.connect(str(db), read_only=True) as reader:
        rebuild_warehouse(db, lake, [SEGMENTS])  # no lock error although a reader holds the old file
        assert reader.execute("SELECT count(*) FROM segments").fetchone() == (1,)
    assert not list(tmp_path.glob(".*tmp*"))


def test_query_without_warehouse_explains_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="audio-platform process"):
        query(tmp_path / "none.duckdb", "SELECT 1")
