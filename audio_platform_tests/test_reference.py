"""docs/tables.md and docs/configuration.md are what the generator makes of the code."""

from pathlib import Path

import polars as pl
import pytest

from audio_platform.reference import DOCS_DIR, GENERATORS, describe_columns, documented_tables
from audio_platform.storage.lake import Lake
from audio_platform.storage.tables import LAKE_TABLES, Table
from audio_platform.storage.warehouse import query, rebuild_warehouse


@pytest.mark.parametrize("name", GENERATORS)
def test_committed_docs_are_the_generated_ones(name: str) -> None:
    committed = DOCS_DIR / name
    assert committed.is_file(), f"docs/{name} is missing: run `make docs`"
    assert committed.read_text(encoding="utf-8") == GENERATORS[name](), f"docs/{name} is stale: run `make docs`"


def test_an_undescribed_column_is_an_error() -> None:
    with pytest.raises(ValueError, match="undescribed_column"):
        describe_columns(Table("t", "one thing", {"shard": pl.String(), "undescribed_column": pl.String()}))


def test_documented_types_are_the_warehouse_views_types(tmp_path: Path) -> None:
    # Before any data lands every view exists with the contract's columns; the docs must show the
    # types DuckDB gives them after the Parquet round trip.
    db = tmp_path / "warehouse.duckdb"
    rebuild_warehouse(db, Lake(tmp_path / "lake"), LAKE_TABLES)
    documented = {table.name: table for table in documented_tables()}
    for table in LAKE_TABLES:
        described = query(db, f'DESCRIBE "{table.name}"')
        in_warehouse = list(zip(described["column_name"], described["column_type"], strict=True))
        assert in_warehouse == [(c, t) for c, t, _ in describe_columns(documented[table.name])]
