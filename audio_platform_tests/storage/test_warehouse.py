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


@pytest.mark.parametrize("home_name", ["h*", "h[X]", "h{a,b}", "h#1", "h'q"])
def test_a_home_path_is_data_not_a_glob(tmp_path, home_name):
    # A sibling that the unescaped pattern would match: its rows must never show.
    decoy = Lake(tmp_path / "hX" / "lake")
    decoy.write_table(SEGMENTS, "s1", _segment("decoy", "s1", 9.0))
    rebuild_warehouse(tmp_path / "hX" / "wh.duckdb", decoy, [SEGMENTS])
    home = tmp_path / home_name
    lake = Lake(home / "lake")
    lake.write_table(SEGMENTS, "s1", _segment("mine", "s1", 1.0))
    rebuild_warehouse(home / "wh.duckdb", lake, [SEGMENTS])
    assert query(home / "wh.duckdb", "SELECT segment_id FROM segments")["segment_id"].to_list() == ["mine"]
    assert lake.read("segments", "s1")["segment_id"].to_list() == ["mine"]


def test_a_moved_home_reads_its_own_lake(tmp_path):
    import shutil

    original = tmp_path / "original"
    lake = Lake(original / "lake")
    lake.write_table(SEGMENTS, "s1", _segment("a", "s1", 1.0))
    rebuild_warehouse(original / "warehouse.duckdb", lake, [SEGMENTS])
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    Lake(copy / "lake").write_table(SEGMENTS, "s2", _segment("only-in-copy", "s2", 1.0))
    rows = query(copy / "warehouse.duckdb", "SELECT segment_id FROM segments ORDER BY 1")["segment_id"].to_list()
    assert rows == ["a", "only-in-copy"]
    shutil.rmtree(original)  # a move: the original is gone and the copy still answers
    assert query(copy / "warehouse.duckdb", "SELECT count(*) AS n FROM segments")["n"][0] == 2


@pytest.mark.parametrize(
    "sql",
    [
        "COPY segments TO '{tmp}/out.csv'",
        "COPY segments TO '{lake}/segments/shard=s1/data.parquet'",  # would break every later run
        "SELECT * FROM read_text('/etc/passwd')",
        "SELECT * FROM glob('/root/*')",
        "SELECT * FROM read_csv('/etc/hostname')",
        "ATTACH '{tmp}/other.duckdb' AS other (READ_WRITE)",
        "SET enable_external_access = true",
        "INSTALL httpfs",
        "CREATE TABLE t AS SELECT 1",
        "DELETE FROM segments",
        "SELECT 1; COPY segments TO '{tmp}/out2.csv'",
        "EXPORT DATABASE '{tmp}/exported'",
        "EXPLAIN ANALYZE COPY (SELECT 'x' AS segment_id) TO '{lake}/segments/_schema/data.parquet' (FORMAT parquet)",
        "explain   analyse COPY segments TO '{tmp}/out3.csv'",
        "EXPLAIN COPY segments TO '{tmp}/out4.csv'",
        "SELECT * FROM read_text('{lake}/_content_index/ab/abcd')",
    ],
)
def test_sql_is_sandboxed_to_reading_the_platforms_tables(tmp_path, sql):
    lake = Lake(tmp_path / "lake")
    lake.write_table(SEGMENTS, "s1", _segment("a", "s1", 1.0))
    db = tmp_path / "wh.duckdb"
    rebuild_warehouse(db, lake, [SEGMENTS])
    before = lake.read("segments", "s1")
    with pytest.raises((duckdb.Error, ValueError)):
        query(db, sql.format(tmp=tmp_path, lake=tmp_path / "lake"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lake", "wh.duckdb"]
    assert lake.read("segments", "s1").equals(before)
    # Reading the platform's own files directly stays possible; describing and showing too.
    assert query(db, f"SELECT count(*) AS n FROM read_parquet('{lake.glob('segments')}')")["n"][0] == 1
    assert "segments" in query(db, "SHOW TABLES")["name"].to_list()
    assert query(db, "EXPLAIN SELECT count(*) FROM segments").height >= 1


def test_writes_get_a_one_line_read_only_error(tmp_path):
    db = tmp_path / "wh.duckdb"
    rebuild_warehouse(db, Lake(tmp_path / "lake"), [SEGMENTS])
    with pytest.raises(ValueError, match="the warehouse is read-only: DELETE statements are refused"):
        query(db, "DELETE FROM segments")
