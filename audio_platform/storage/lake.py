"""The lake: one Parquet file per table per shard, the platform's source of truth.

Layout: ``<root>/<table>/shard=<key>/data.parquet``, where the root is a local folder or an
object-store prefix (``s3://bucket/prefix``, :mod:`audio_platform.storage.object_store`). A write
replaces the whole file atomically, so a reader (DuckDB, another run) sees the old file or the new
one, never a partial one, and re-materializing a shard replaces its rows instead of appending:

* in a folder, the file is written to a hidden temp file beside it and published with
  ``os.replace``, which is atomic on POSIX filesystems;
* on an object store, it is one PUT of the whole file, which the store publishes atomically. No
  temp objects: an object store has no rename that could publish them.
"""

from __future__ import annotations

import io
import os
import re
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import polars as pl
from upath import UPath

from audio_platform.storage.object_store import STORAGE_OPTIONS, is_object_store
from audio_platform.storage.tables import Table
from audio_platform.storage.temp_files import remove_stale_temps

DATA_FILE = "data.parquet"
SCHEMA_DIR = "_schema"
_SHARD_PREFIX = "shard="
_TEMP_PREFIX = ".tmp-"


class Lake:
    """The lake under ``root``: a local folder (Path or str) or an ``s3://bucket/prefix`` URI."""

    def __init__(self, root: Path | str) -> None:
        self.remote = is_object_store(root)
        # A local root is a PosixUPath, i.e. a pathlib.Path; an s3:// root is a path over fsspec.
        self.root = UPath(root, **STORAGE_OPTIONS) if self.remote else UPath(Path(root))

    def table_dir(self, table: str) -> UPath:
        return self.root / table

    def shard_path(self, table: str, shard: str) -> UPath:
        return self.table_dir(table) / f"{_SHARD_PREFIX}{shard}" / DATA_FILE

    def glob(self, table: str) -> str:
        """The DuckDB glob covering every shard of ``table`` and its schema file. Characters of the
        root that a glob would read as a pattern (``*?[]{}``) are escaped, so the root is data."""
        if self.remote:
            # `**` makes fsspec list the table's prefix once (paginated), where `*/` would list
            # every shard's prefix separately; the lake has nothing deeper than shard folders.
            return f"{glob_escape(str(self.table_dir(table)))}/**/{DATA_FILE}"
        return f"{glob_escape(str(Path(self.table_dir(table).path).resolve()))}/*/{DATA_FILE}"

    @property
    def location(self) -> str:
        """The root as a path or URI, the prefix every file of the lake starts with."""
        return str(self.root) if self.remote else str(Path(self.root.path).resolve())

    def write(self, table: str, shard: str, frame: pl.DataFrame) -> UPath:
        return self._publish(self.shard_path(table, shard), frame)

    def write_table(self, table: Table, shard: str, frame: pl.DataFrame) -> UPath:
        return self.write(table.name, shard, table.conform(frame))

    def write_schema(self, table: Table) -> UPath:
        """An empty, typed file beside the shards: the table exists (with its columns) before any
        shard has data, and readers of the whole table never fail on 'no files found'."""
        return self._publish(self.table_dir(table.name) / SCHEMA_DIR / DATA_FILE, table.empty())

    def read(self, table: str, shard: str) -> pl.DataFrame:
        path = self.shard_path(table, shard)
        frame = self._read(path)
        if frame is None:
            raise FileNotFoundError(f"lake table {table!r} has no data for shard {shard!r} ({path})")
        return frame

    def read_many(self, table: str, shards: Iterable[str] | None = None) -> pl.DataFrame | None:
        """All rows of ``table`` for the given shards (all shards when None); None if nothing exists."""
        paths = self._shard_files(table) if shards is None else [self.shard_path(table, s) for s in shards]
        frames = [frame for frame in map(self._read, paths) if frame is not None]
        if not frames:
            return None
        return pl.concat(frames, how="diagonal_relaxed")

    def read_each(self, table: str, transform: Callable[[pl.DataFrame], pl.DataFrame]) -> list[pl.DataFrame]:
        """``transform`` of each shard's rows of ``table``, one shard read at a time: memory holds
        one shard's rows and what the transforms keep, never the whole table."""
        return [transform(frame) for frame in map(self._read, self._shard_files(table)) if frame is not None]

    def read_where(self, table: Table, predicate: pl.Expr) -> pl.DataFrame:
        """The rows of every shard of ``table`` that ``predicate`` keeps, one shard read at a time."""
        kept = self.read_each(table.name, lambda frame: frame.filter(predicate))
        return pl.concat([table.empty(), *kept], how="diagonal_relaxed")

    def read_all(self, table: Table) -> pl.DataFrame:
        """Every shard's rows of ``table``; its empty, typed frame while no shard has any."""
        frame = self.read_many(table.name)
        return table.empty() if frame is None else frame

    def shards(self, table: str) -> list[str]:
        return sorted(p.parent.name.removeprefix(_SHARD_PREFIX) for p in self._shard_files(table))

    def tables(self) -> list[str]:
        if self.remote:
            try:
                entries = self.root.fs.ls(self.root.path, detail=True)
            except FileNotFoundError:
                return []
            names = [entry["name"].rstrip("/").rsplit("/", 1)[-1] for entry in entries if entry["type"] == "directory"]
        elif self.root.is_dir():
            names = [p.name for p in self.root.iterdir() if p.is_dir()]
        else:
            return []
        return sorted(name for name in names if not name.startswith(("_", ".")))

    def _shard_files(self, table: str) -> list[UPath]:
        folder = self.table_dir(table)
        if not self.remote:
            return sorted(folder.glob(f"{_SHARD_PREFIX}*/{DATA_FILE}"))
        # One recursive listing of the table's prefix (see glob()).
        keys = self.root.fs.find(folder.path)
        parts = (key.removeprefix(f"{folder.path}/").split("/") for key in keys)
        return sorted(
            folder / shard / name for shard, name, *deeper in parts if shard.startswith(_SHARD_PREFIX) and not deeper
        )

    def _read(self, path: UPath) -> pl.DataFrame | None:
        if not self.remote:
            # glob=False: the path is data (a home named `h*` or `h[X]` is not a pattern).
            return pl.read_parquet(path.path, glob=False) if path.is_file() else None
        try:
            return pl.read_parquet(io.BytesIO(path.fs.cat_file(path.path)))
        except FileNotFoundError:
            return None

    def _publish(self, target: UPath, frame: pl.DataFrame) -> UPath:
        if not self.remote:
            _write_atomically(Path(target.path), frame)
            return target
        buffer = io.BytesIO()
        frame.write_parquet(buffer, compression="zstd", statistics=True)
        # One PUT up to 100 MB; beyond that s3fs uploads in parts, and a multipart object also
        # appears only whole, when the upload completes.
        target.fs.pipe_file(target.path, buffer.getvalue())
        return target


def glob_escape(path: str) -> str:
    """``path`` with each glob metacharacter in a one-character class (``*`` -> ``[*]``): DuckDB's
    globs have no backslash escape, but a class matches its character literally."""
    return re.sub(r"([*?\[\]{}])", r"[\1]", path)


def _write_atomically(target: Path, frame: pl.DataFrame) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target.parent, f"{_TEMP_PREFIX}*")
    temp = target.parent / f"{_TEMP_PREFIX}{uuid.uuid4().hex}.parquet"
    try:
        frame.write_parquet(temp, compression="zstd", statistics=True)
        with open(temp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
