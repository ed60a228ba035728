"""The lake: one Parquet file per table per shard, the platform's source of truth.

Layout: ``<root>/<table>/shard=<key>/data.parquet``. Writes go to a hidden temp file in the
same folder and are published with ``os.replace``, which is atomic on POSIX filesystems: a
reader (DuckDB, another run) sees the old file or the new one, never a partial one, and
re-materializing a shard replaces its rows instead of appending to them.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import polars as pl

from audio_platform.storage.tables import Table

DATA_FILE = "data.parquet"
SCHEMA_DIR = "_schema"
_TEMP_PREFIX = ".tmp-"
# A temp file this old belongs to a writer that was killed; newer ones may be in flight.
_STALE_TEMP_AGE_S = 3600.0


class Lake:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def table_dir(self, table: str) -> Path:
        return self.root / table

    def shard_path(self, table: str, shard: str) -> Path:
        return self.table_dir(table) / f"shard={shard}" / DATA_FILE

    def glob(self, table: str) -> str:
        """The DuckDB/polars glob covering every shard of ``table`` and its schema file."""
        return str(self.table_dir(table).resolve() / "*" / DATA_FILE)

    def write(self, table: str, shard: str, frame: pl.DataFrame) -> Path:
        return _write_atomically(self.shard_path(table, shard), frame)

    def write_table(self, table: Table, shard: str, frame: pl.DataFrame) -> Path:
        return self.write(table.name, shard, table.conform(frame))

    def write_schema(self, table: Table) -> Path:
        """An empty, typed file beside the shards: the table exists (with its columns) before any
        shard has data, and readers of the whole table never fail on 'no files found'."""
        return _write_atomically(self.table_dir(table.name) / SCHEMA_DIR / DATA_FILE, table.empty())

    def read(self, table: str, shard: str) -> pl.DataFrame:
        path = self.shard_path(table, shard)
        if not path.is_file():
            raise FileNotFoundError(f"lake table {table!r} has no data for shard {shard!r} ({path})")
        return pl.read_parquet(path)

    def read_many(self, table: str, shards: Iterable[str] | None = None) -> pl.DataFrame | None:
        """All rows of ``table`` for the given shards (all shards when None); None if nothing exists."""
        if shards is None:
            paths = sorted(self.table_dir(table).glob(f"shard=*/{DATA_FILE}"))
        else:
            paths = [p for p in (self.shard_path(table, s) for s in shards) if p.is_file()]
        if not paths:
            return None
        return pl.concat([pl.read_parquet(p) for p in paths], how="diagonal_relaxed")

    def shards(self, table: str) -> list[str]:
        return sorted(p.parent.name.removeprefix("shard=") for p in self.table_dir(table).glob(f"shard=*/{DATA_FILE}"))

    def tables(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))


def _write_atomically(target: Path, frame: pl.DataFrame) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(target.parent)
    temp = target.parent / f"{_TEMP_PREFIX}{uuid.uuid4().hex}.parquet"
    try:
        frame.write_parquet(temp, compression="zstd", statistics=True)
        with open(temp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    return target


def _remove_stale_temps(folder: Path) -> None:
    now = time.time()
    for temp in folder.glob(f"{_TEMP_PREFIX}*"):
        try:
            if now - temp.stat().st_mtime > _STALE_TEMP_AGE_S:
                temp.unlink()
        except FileNotFoundError:
            continue
