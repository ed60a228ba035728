"""The warehouse: one DuckDB file whose tables are views over the lake's Parquet.

Views read the lake at query time, so new shards show up without copying data. The file is
rebuilt in a temp path and swapped in with ``os.replace``: a reader that already has the file
open keeps its snapshot, new readers get the new catalogue, and nobody hits DuckDB's
single-writer lock because no process ever opens the published file for writing.

Over an object-store lake (``s3://``) the views read through the platform's fsspec filesystem,
registered in each connection: DuckDB's own httpfs extension is downloaded at first use, which an
offline or locked-down cluster cannot do. Any other DuckDB client needs httpfs and an S3 secret.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from audio_platform.storage.lake import Lake
from audio_platform.storage.object_store import S3_SCHEME, query_filesystem
from audio_platform.storage.tables import Table


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


def query(db_path: Path, sql: str, parameters: Sequence[Any] | None = None) -> pl.DataFrame:
    """Run ``sql`` read-only against the published warehouse and return the result as polars."""
    if not Path(db_path).is_file():
        raise FileNotFoundError(
            f"no warehouse at {db_path}: run `audio-platform process <folder>` (or materialize `warehouse`) first"
        )
    with duckdb.connect(str(db_path), read_only=True) as con:
        # The views themselves say whether the lake is on an object store, so every caller (CLI,
        # pipeline summary, notebooks) reads either kind of lake without being told which it is.
        [(views_over_object_store,)] = con.execute(
            "SELECT count(*) FROM duckdb_views() WHERE NOT internal AND contains(sql, $1)", [f"'{S3_SCHEME}"]
        ).fetchall()
        if views_over_object_store:
            con.register_filesystem(query_filesystem())
        return con.sql(sql, params=parameters or None).pl()
