"""The warehouse: one DuckDB file whose tables are views over the lake's Parquet.

Views read the lake at query time, so new shards show up without copying data. The file is
rebuilt in a temp path and swapped in with ``os.replace``: a reader that already has the file
open keeps its snapshot, new readers get the new catalogue, and nobody hits DuckDB's
single-writer lock because no process ever opens the published file for writing.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from audio_platform.storage.lake import Lake


@dataclass(frozen=True)
class WarehouseTable:
    name: str
    rows: int
    source: str  # 'lake' (a view over Parquet) or 'empty' (no shard has data yet)


def _duckdb_type(dtype: pl.DataType) -> str:
    mapping: Mapping[type[pl.DataType], str] = {
        pl.String: "VARCHAR",
        pl.Float64: "DOUBLE",
        pl.Float32: "FLOAT",
        pl.Int64: "BIGINT",
        pl.Int32: "INTEGER",
        pl.Boolean: "BOOLEAN",
        pl.Datetime: "TIMESTAMP",
    }
    return mapping.get(type(dtype), "VARCHAR")


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def rebuild_warehouse(
    db_path: Path,
    lake: Lake,
    empty_schemas: Mapping[str, Mapping[str, pl.DataType]],
    extra_frames: Mapping[str, pl.DataFrame] | None = None,
) -> list[WarehouseTable]:
    """Publish a new warehouse file: a view per lake table, an empty typed table for known tables
    without data, and materialized tables for ``extra_frames`` (small tables such as the model registry)."""
    db_path = Path(db_path)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    temp = db_path.parent / f".{db_path.name}.{uuid.uuid4().hex}.tmp"
    summary: list[WarehouseTable] = []
    try:
        with duckdb.connect(str(temp)) as con:
            names = sorted(set(lake.tables()) | set(empty_schemas))
            for name in names:
                if lake.shards(name):
                    glob = lake.glob(name).replace("'", "''")
                    con.execute(
                        f"CREATE VIEW {_quote(name)} AS SELECT * FROM read_parquet('{glob}', union_by_name=true)"
                    )
                    rows = con.execute(f"SELECT count(*) FROM {_quote(name)}").fetchone()
                    summary.append(WarehouseTable(name, int(rows[0]) if rows else 0, "lake"))
                else:
                    columns = ", ".join(
                        f"{_quote(col)} {_duckdb_type(dtype)}" for col, dtype in empty_schemas.get(name, {}).items()
                    )
                    con.execute(f"CREATE TABLE {_quote(name)} ({columns or 'placeholder VARCHAR'})")
                    summary.append(WarehouseTable(name, 0, "empty"))
            for name, frame in (extra_frames or {}).items():
                con.register("_incoming", frame.to_arrow())
                con.execute(f"CREATE OR REPLACE TABLE {_quote(name)} AS SELECT * FROM _incoming")
                con.unregister("_incoming")
                summary.append(WarehouseTable(name, frame.height, "table"))
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
        return con.sql(sql, params=parameters or None).pl()
