"""The warehouse: one DuckDB file whose tables are views over the lake's Parquet.

Views read the lake at query time, so new shards show up without copying data. The file is
rebuilt in a temp path and swapped in with ``os.replace``: a reader that already has the file
open keeps its snapshot, new readers get the new catalogue, and nobody hits DuckDB's
single-writer lock because no process ever opens the published file for writing.

The views name the lake's files by absolute path (with glob characters escaped: a path is data,
never a pattern). The file also holds ``warehouse_info`` (where home and lake were when it was
built), so a home that was moved or copied as a whole is noticed on the next query and its views
are rebuilt to read the lake that moved with it, never the original's.

Queries are sandboxed: only ``SELECT`` (and ``EXPLAIN``) statements run, on a read-only
connection whose file access is limited to the lake (DuckDB ``enable_external_access=false`` with
the lake in ``allowed_directories``, configuration locked): no ``COPY``, ``ATTACH``,
``read_text('/etc/passwd')`` or ``glob('/root/*')``.

Over an object-store lake (``s3://``) the views read through the platform's fsspec filesystem,
registered in each connection: DuckDB's own httpfs extension is downloaded at first use, which an
offline or locked-down cluster cannot do. Any other DuckDB client needs httpfs and an S3 secret.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from audio_platform.storage.lake import Lake, glob_escape
from audio_platform.storage.object_store import query_filesystem
from audio_platform.storage.tables import LAKE_TABLES, WAREHOUSE_INFO, Table

INFO_TABLE = WAREHOUSE_INFO.name
# `EXPLAIN ANALYZE <statement>` executes its statement: only a plain EXPLAIN of a query is a read.
_EXPLAIN = re.compile(r"\s*EXPLAIN\b(?P<analyze>\s+ANALY[SZ]E\b)?(?P<inner>.*)", re.IGNORECASE | re.DOTALL)


class ReadOnlyWarehouseError(ValueError):
    """A statement other than a query was sent to the (read-only) warehouse."""


@dataclass(frozen=True)
class WarehouseTable:
    name: str
    rows: int
    shards: int


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def rebuild_warehouse(db_path: Path, lake: Lake, tables: Sequence[Table]) -> list[WarehouseTable]:
    """Publish a new warehouse file with one view per lake table.

    Every contract table gets an empty typed schema file in the lake first, so its view exists
    (with the right columns) before any shard has data, and stays valid as shards arrive:
    nothing needs a rebuild when data appears, only when a new table does.
    """
    for table in tables:
        lake.write_schema(table)
    db_path = Path(db_path)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    temp = db_path.parent / f".{db_path.name}.{uuid.uuid4().hex}.tmp"
    summary: list[WarehouseTable] = []
    try:
        with duckdb.connect(str(temp)) as con:
            if lake.remote:
                con.register_filesystem(query_filesystem())
            con.execute(
                f"CREATE TABLE {INFO_TABLE} AS SELECT $1 AS home, $2 AS lake, $3 AS built_at",
                [str(db_path.parent.resolve()), lake.location, datetime.now(UTC).isoformat(timespec="seconds")],
            )
            for name in lake.tables():
                glob = lake.glob(name).replace("'", "''")
                con.execute(f"CREATE VIEW {_quote(name)} AS SELECT * FROM read_parquet('{glob}', union_by_name=true)")
                rows = con.execute(f"SELECT count(*) FROM {_quote(name)}").fetchone()
                summary.append(WarehouseTable(name, int(rows[0]) if rows else 0, len(lake.shards(name))))
        os.replace(temp, db_path)
    finally:
        temp.unlink(missing_ok=True)
        Path(f"{temp}.wal").unlink(missing_ok=True)
    return summary


def _moved_lake(db_path: Path, con: duckdb.DuckDBPyConnection) -> Lake | None:
    """The lake to rebuild the views over when the home holding ``db_path`` was moved or copied
    (and its lake was inside it), else None."""
    try:
        [(built_home, built_lake)] = con.execute(f"SELECT home, lake FROM {INFO_TABLE}").fetchall()
    except duckdb.CatalogException:
        return None  # built by an earlier version: it has no record of where it was built
    home = Path(db_path).parent.resolve()
    if built_home == str(home) or not Path(built_lake).is_relative_to(built_home):
        return None
    moved = home / Path(built_lake).relative_to(built_home)
    return Lake(moved) if moved.is_dir() else None


def _sandbox(con: duckdb.DuckDBPyConnection) -> None:
    """Limit ``con`` to reading the table folders its views read (see the module docstring): not
    the rest of the lake (the content claims), not anything else."""
    [(lake,)] = con.execute(f"SELECT lake FROM {INFO_TABLE}").fetchall()
    if "://" in lake:
        # The views read the object store through the platform's fsspec filesystem.
        con.register_filesystem(query_filesystem())
    views = [name for (name,) in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()]
    folders = [f"{lake}/{name}" for name in views]
    allowed = sorted({f"{prefix}/" for folder in folders for prefix in (folder, glob_escape(folder))})
    con.execute("SET allowed_directories = $1", [allowed])
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def check_read_only(sql: str) -> None:
    """Raise :class:`ReadOnlyWarehouseError` unless ``sql`` is one query (or a plain EXPLAIN of one)."""
    statements = duckdb.extract_statements(sql)
    if len(statements) != 1:
        raise ReadOnlyWarehouseError(f"give exactly one statement, got {len(statements)}")
    (statement,) = statements
    kind = statement.type
    if kind == duckdb.StatementType.EXPLAIN:
        explained = _EXPLAIN.match(statement.query)
        inner = duckdb.extract_statements(explained["inner"]) if explained and not explained["analyze"] else []
        kind = inner[0].type if len(inner) == 1 else kind
    if kind != duckdb.StatementType.SELECT:
        raise ReadOnlyWarehouseError(
            f"the warehouse is read-only: {statement.type.name} statements are refused (only SELECT, "
            "EXPLAIN, DESCRIBE and SHOW run); the platform's tables change only through its runs"
        )


def query(db_path: Path, sql: str, parameters: Sequence[Any] | None = None) -> pl.DataFrame:
    """Run the query ``sql`` in the sandbox against the published warehouse; the result as polars."""
    if not Path(db_path).is_file():
        raise FileNotFoundError(
            f"no warehouse at {db_path}: run `audio-platform process <folder>` (or materialize `warehouse`) first"
        )
    check_read_only(sql)
    with duckdb.connect(str(db_path), read_only=True) as con:
        moved = _moved_lake(db_path, con)
    if moved is not None:
        rebuild_warehouse(db_path, moved, LAKE_TABLES)
    with duckdb.connect(str(db_path), read_only=True) as con:
        try:
            _sandbox(con)
        except duckdb.CatalogException as err:
            raise FileNotFoundError(
                f"{db_path} was built by an earlier version (no {INFO_TABLE}): rebuild it with "
                "`audio-platform process <folder>` or by materializing `warehouse`"
            ) from err
        return con.sql(sql, params=parameters or None).pl()


# Every drop with how far processing got: files accounted for in audio_files against its files.
DROP_STATUS_SQL = """
WITH accounted AS (
  SELECT drop_id, count(*) AS accounted, count(*) FILTER (WHERE status = 'ok') AS ok
  FROM audio_files GROUP BY drop_id
)
SELECT d.drop_id,
       CASE WHEN d.state = 'waiting' THEN 'waiting'
            WHEN coalesce(a.accounted, 0) < d.files THEN 'processing'
            ELSE 'done' END AS state,
       d.files, coalesce(a.accounted, 0) AS accounted, coalesce(a.ok, 0) AS ok, d.shards, d.reason,
       d.first_seen_at, d.updated_at, d.drop_root
FROM drops d LEFT JOIN accounted a USING (drop_id)
ORDER BY d.updated_at DESC
"""
DROP_STATES = ("waiting", "processing", "done")


def drop_status(db_path: Path) -> pl.DataFrame:
    """Every drop the platform has seen (CLI or inbox), newest first: its state (waiting, with the
    reason; processing; done), files, files accounted for, ok files, shards, first and last seen."""
    return query(db_path, DROP_STATUS_SQL)
