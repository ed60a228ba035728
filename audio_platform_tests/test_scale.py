"""Smoke test of the scale benchmark (benchmarks/scale_bench.py) at small sizes, and the capacity plan.

Checks that every stage ran against the real components and counted right; timings on a shared
machine are not assertable, so there are none here.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from benchmarks.capacity_plan import PlanInputs, plan, render_markdown
from benchmarks.scale_bench import render_table, run_scale, shard_keys


def test_scale_harness_counts_partitions_runs_and_rows(tmp_path: Path) -> None:
    shards, rows = 30, 3_000
    result = run_scale(
        tmp_path,
        shards=shards,
        rows=rows,
        drops=4,
        files_per_drop=25,
        big_drop_files=120,
        shard_size=50,
        automation=True,
    )

    # 30 synthetic keys + one per sensor-registered shard: 4 drops x 1 shard, the big drop 3 shards.
    assert result.partitions == shards + 4 + 3
    assert result.runs_requested == 4 + 3
    assert result.warehouse_rows["segments"] == result.warehouse_rows["transcripts"] == rows
    assert result.warehouse_rows["shard_files"] == 4 * 25 + 120
    assert result.lake_bytes > 0

    assert result.measure("register shard partitions").items == shards
    # One tick sees the drops, the next (unchanged, marked) registers them.
    assert result.measure("sensor: drain 4 drops").detail == "2 ticks, 4 runs"
    # One more finished shard makes at least the warehouse due.
    assert int(result.measure("automation tick after one shard finished").detail.split()[0]) >= 1
    assert result.measure("query: aggregate segments by shard").detail == f"{shards} groups"
    assert result.measure("query: filter segments by file_id").detail != "0 rows"
    joined = result.measure("query: join segments-transcripts").detail
    assert 0 < int(joined.split()[0].replace(",", "")) < rows

    table = render_table(result).splitlines()
    assert table[0].startswith("| measure |") and len(table) == 2 + len(result.measures)


def test_shard_keys_are_unique_and_shaped_like_real_ones() -> None:
    keys = shard_keys(2_001)
    assert len(set(keys)) == 2_001
    assert all(key.rsplit("-", 1)[1].isdigit() and len(key.rsplit("-", 1)[1]) == 4 for key in keys)


def test_capacity_plan_arithmetic() -> None:
    # 100 h in shards of 1,000 files x 36 s = 10 h: 10 runs of 1 h each at 10x real time.
    inputs = PlanInputs(
        rtf=10,
        price_per_cpu_hour=1.0,
        audio_hours=100,
        cpus_per_pod=2,
        pod_overhead_s=0,
        shard_files=1000,
        mean_file_s=36,
        max_concurrent_runs=5,
        control_plane_cpus=1,
    )
    p = plan(inputs)
    assert (p.runs, p.minutes_per_run, p.pod_hours, p.cpu_hours, p.compute_cost) == (10, 60, 10, 20, 20)
    assert p.wall_hours_at_max_runs == 2  # two waves of 5 pods
    assert (p.pods_for_24h, p.pods_for_1h) == (1, 10)
    assert p.control_plane_cost_per_month == 730
    assert plan(replace(inputs, shard_files=2000)).pods_for_1h is None  # a 2 h run cannot finish in 1 h
    assert "| compute cost | $20.00" in render_markdown(p)
