"""Stage usage is measured from the process, priced, and stored as one typed lake row."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from audio_platform.observability.stage_runs import Prices, StageUsage, Stopwatch, stage_run_key, stage_run_row
from audio_platform.storage.lake import Lake
from audio_platform.storage.tables import STAGE_RUNS


def test_cost_is_cpu_hours_plus_gpu_hours_at_their_prices() -> None:
    prices = Prices(per_cpu_hour=0.045, per_gpu_hour=1.0)
    assert prices.cost(cpu_s=7200.0, gpu_s=0.0) == pytest.approx(0.09)
    assert prices.cost(cpu_s=3600.0, gpu_s=1800.0) == pytest.approx(0.545)
    with pytest.raises(ValueError, match=">= 0"):
        Prices(per_cpu_hour=-1.0, per_gpu_hour=1.0)


def _busy(seconds: float) -> None:
    deadline = time.process_time() + seconds
    while time.process_time() < deadline:
        pass


def test_stopwatch_measures_this_process() -> None:
    watch = Stopwatch()
    _busy(0.2)
    time.sleep(0.1)  # wall time that uses no CPU
    usage = watch.stop(audio_s=12.0, device="cpu")
    assert usage.cpu_s >= 0.2 and usage.wall_s >= usage.cpu_s + 0.09
    assert usage.gpu_s == 0.0 and usage.real_time_factor == pytest.approx(12.0 / usage.wall_s)
    assert usage.started_at <= usage.finished_at and usage.peak_rss_mb > 10
    on_gpu = watch.stop(audio_s=0.0, device="cuda:0")
    assert on_gpu.gpu_s == on_gpu.wall_s > 0


def test_one_row_per_stage_and_partition_round_trips_through_the_lake(tmp_path: Path) -> None:
    started = datetime(2026, 1, 1, tzinfo=UTC)
    usage = StageUsage(started, started, 10.0, cpu_s=18.0, gpu_s=0.0, audio_s=300.0, peak_rss_mb=500.0, device="cpu")
    row = stage_run_row(
        "raw_audio_files",
        "drop-abc123-0000",
        "run-1",
        usage,
        Prices(per_cpu_hour=0.045, per_gpu_hour=1.0),
        files=4,
        failures={"not_audio": 1, "empty": 0},
    )
    lake = Lake(tmp_path / "lake")
    key = stage_run_key("raw_audio_files", "drop-abc123-0000")
    lake.write_table(STAGE_RUNS, key, row)
    stored = lake.read(STAGE_RUNS.name, key)
    assert stored.schema == STAGE_RUNS.schema
    record = stored.row(0, named=True)
    assert record["files"] == 4 and record["segments"] is None
    assert record["failures_by_reason"] == [{"reason": "not_audio", "count": 1}, {"reason": "empty", "count": 0}]
    assert record["estimated_cost"] == pytest.approx(18.0 * 0.045 / 3600)
    # Each stage has its own lake partition; unpartitioned stages (warehouse) are keyed by name.
    assert key != stage_run_key("vad_segments", "drop-abc123-0000") and stage_run_key("warehouse", "") == "warehouse"
