"""The collector turns lake rows into Prometheus families; what it reads is a real DuckDB warehouse."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from prometheus_client.core import Metric

from audio_platform.observability.metrics import PlatformCollector
from audio_platform.observability.stage_runs import Prices, StageUsage, stage_run_key, stage_run_row
from audio_platform.storage.lake import Lake
from audio_platform.storage.tables import AUDIO_FILES, CURATED_SEGMENTS, LAKE_TABLES, SEGMENTS, STAGE_RUNS, Table
from audio_platform.storage.warehouse import rebuild_warehouse

PRICES = Prices(per_cpu_hour=3.6, per_gpu_hour=36.0)  # 0.001 per CPU second, 0.01 per GPU second


def _rows(table: Table, rows: list[dict[str, object]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=table.schema)  # columns a row leaves out are null


def _stage_run(lake: Lake, stage: str, shard: str, wall_s: float, audio_s: float, **failures: int) -> None:
    finished = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    usage = StageUsage(finished, finished, wall_s, 2 * wall_s, 0.0, audio_s, peak_rss_mb=1.0, device="cpu")
    row = stage_run_row(stage, shard, "run", usage, PRICES, failures=failures)
    lake.write_table(STAGE_RUNS, stage_run_key(stage, shard), row)


def _samples(families: list[Metric]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in families
        for sample in family.samples
    }


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    lake = Lake(tmp_path / "lake")
    files = [
        {"file_id": "a", "shard": "s0", "status": "ok", "duration_s": 100.0},
        {"file_id": "b", "shard": "s0", "status": "ok", "duration_s": 50.0},
        {"file_id": "c", "shard": "s0", "status": "quarantined", "reason": "not audio: looks like text"},
        {"file_id": "a", "shard": "s1", "status": "duplicate", "reason": "same content as x"},
    ]
    lake.write_table(AUDIO_FILES, "s0", _rows(AUDIO_FILES, files[:3]))
    lake.write_table(AUDIO_FILES, "s1", _rows(AUDIO_FILES, files[3:]))
    segments = [{"segment_id": f"a{i}", "shard": "s0", "duration_s": 10.0} for i in range(6)]
    lake.write_table(SEGMENTS, "s0", _rows(SEGMENTS, segments))
    lake.write_table(CURATED_SEGMENTS, "s0", _rows(CURATED_SEGMENTS, segments[:4]))
    _stage_run(lake, "raw_audio_files", "s0", wall_s=3.0, audio_s=150.0, not_audio=1, empty=0)
    _stage_run(lake, "raw_audio_files", "s1", wall_s=0.5, audio_s=0.0, not_audio=0, empty=2)
    _stage_run(lake, "transcribe_segments", "s0", wall_s=40.0, audio_s=60.0)
    path = tmp_path / "warehouse.duckdb"
    rebuild_warehouse(path, lake, LAKE_TABLES)
    return path


def test_families_are_computed_from_the_rows(warehouse: Path) -> None:
    samples = _samples(list(PlatformCollector(warehouse, lambda: {"SUCCESS": 3, "FAILURE": 1}).collect()))
    p = "audio_platform_"
    assert samples[(f"{p}warehouse_up", ())] == 1
    assert samples[(f"{p}files", (("status", "ok"),))] == 2
    assert samples[(f"{p}files", (("status", "quarantined"),))] == 1
    assert samples[(f"{p}files", (("status", "duplicate"),))] == 1
    assert samples[(f"{p}audio_seconds", ())] == 150.0
    assert samples[(f"{p}segments", ())] == 6 and samples[(f"{p}speech_seconds", ())] == 60.0
    assert samples[(f"{p}curated_segments", ())] == 4 and samples[(f"{p}curated_seconds", ())] == 40.0
    ingest, asr = (("stage", "raw_audio_files"),), (("stage", "transcribe_segments"),)
    assert samples[(f"{p}stage_cpu_seconds", ingest)] == 7.0
    assert samples[(f"{p}stage_estimated_cost", ingest)] == pytest.approx(0.007)
    assert samples[(f"{p}stage_real_time_factor", asr)] == 1.5
    finished = datetime(2026, 3, 1, 12, tzinfo=UTC).timestamp()
    assert samples[(f"{p}stage_last_success_timestamp_seconds", asr)] == finished
    # Histogram buckets are cumulative: 0.5 s and 3 s are both <= 5, only 0.5 s is <= 1.
    assert samples[(f"{p}stage_duration_seconds_bucket", (("le", "1.0"), *ingest))] == 1
    assert samples[(f"{p}stage_duration_seconds_bucket", (("le", "5.0"), *ingest))] == 2
    assert samples[(f"{p}stage_duration_seconds_bucket", (("le", "30.0"), *asr))] == 0
    assert samples[(f"{p}stage_duration_seconds_bucket", (("le", "+Inf"), *asr))] == 1
    assert samples[(f"{p}stage_duration_seconds_count", ingest)] == 2
    assert samples[(f"{p}stage_duration_seconds_sum", ingest)] == 3.5
    # Failures add up over partitions, by reason.
    assert samples[(f"{p}failures", (("reason", "not_audio"), *ingest))] == 1
    assert samples[(f"{p}failures", (("reason", "empty"), *ingest))] == 2
    assert samples[(f"{p}dagster_runs", (("status", "FAILURE"),))] == 1


def test_a_missing_warehouse_reports_down_instead_of_failing(tmp_path: Path) -> None:
    families = list(PlatformCollector(tmp_path / "nothing.duckdb").collect())
    assert [(f.name, f.samples[0].value) for f in families] == [("audio_platform_warehouse_up", 0.0)]
