"""Scale test on synthetic inventory rows (no audio): does the control plane stay fast at 10M segments?

    .venv/bin/python -m benchmarks.scale_bench [--shards 2000] [--rows 10000000]
                                               [--drops 50] [--files-per-drop 200] [--big-drop-files 5000]
                                               [--work DIR] [--keep]

DESIGN.md's target is ~10M samples in ~2,000 shards; four things must stay fast at that size:

1. the partition set: registering 2,000+ shard keys on a real SQLite DagsterInstance (the instance
   `audio-platform` uses, with the repository's dagster.yaml), in batches, and listing them (every
   drop registration and every UI partition view lists them);
2. one tick of ``inbox_sensor`` (with the real PlatformStorage and InboxResource) over an inbox of
   many drops x files and over one big drop, while it is still arriving and once it is ready;
   the files are empty because the sensor only lists and stats them;
3. writing the lake: ``--rows`` segments and as many transcripts as Parquet shards, through
   ``Lake.write_table`` with the contract schemas (atomic, fsynced writes);
4. DuckDB through the warehouse views: ``rebuild_warehouse`` and a filter, an aggregate and a
   segments-transcripts join with ``query``, best of two runs.

Prints a table. Lake disk use is about 110 bytes per segment+transcript pair, so the defaults need
~1.1 GB free; ``--rows`` scales it down. Timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from dagster import (
    AssetKey,
    AssetMaterialization,
    BetaWarning,
    DagsterInstance,
    SensorResult,
    SkipReason,
    build_sensor_context,
    evaluate_automation_conditions,
)

from audio_platform.definitions import build_definitions
from audio_platform.defs.partitions import SHARDS
from audio_platform.defs.resources import PlatformStorage
from audio_platform.defs.sensors import InboxResource, inbox_sensor
from audio_platform.runs import prepare_instance
from audio_platform.settings import Settings
from audio_platform.storage.drops import READY_MARKERS
from audio_platform.storage.lake import Lake
from audio_platform.storage.tables import LAKE_TABLES, SEGMENTS, TRANSCRIPTS
from audio_platform.storage.warehouse import query, rebuild_warehouse

PARTITION_BATCH = 500
# The partitioned assets of one shard run: the warehouse and keyword dataset depend on all of them.
SHARD_ASSETS = ("raw_audio_files", "vad_segments", "transcripts", "words", "segment_scores", "curated_segments")
# Roughly the corpus's shape: a few segments per file, short segments, English text.
SEGMENTS_PER_FILE = 8
VOCABULARY = (
    "the a of to and in that is it for on was with he as you at be this have from or one had by word but "
    "not what all were we when your can said there use an each which she do how their if will up other "
    "about out many then them these so some her would make like him into time has look two more write go "
    "see number no way could people my than first water been call who oil its now find long down day did "
    "get come made may part six stop seven eight nine zero yes left right"
)
SENTENCE_POOL = 50_000


@dataclass(frozen=True)
class Measure:
    name: str
    items: int
    unit: str
    seconds: float
    detail: str = ""

    @property
    def rate(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else float("inf")


@dataclass(frozen=True)
class ScaleResult:
    measures: list[Measure]
    partitions: int
    runs_requested: int
    warehouse_rows: dict[str, int]
    lake_bytes: int

    def measure(self, name: str) -> Measure:
        return next(m for m in self.measures if m.name == name)


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def shard_keys(count: int, shards_per_drop: int = 40) -> list[str]:
    """Keys shaped like the real ones: ``<drop-slug>-<hash6>-<index:04d>``."""
    return [
        f"scale-drop-{i // shards_per_drop:03d}-{i // shards_per_drop:06x}-{i % shards_per_drop:04d}"
        for i in range(count)
    ]


def bench_partitions(instance: DagsterInstance, keys: Sequence[str]) -> list[Measure]:
    def register() -> None:
        for start in range(0, len(keys), PARTITION_BATCH):
            instance.add_dynamic_partitions(SHARDS, list(keys[start : start + PARTITION_BATCH]))

    _, register_s = _timed(register)
    listed, list_s = _timed(lambda: instance.get_dynamic_partitions(SHARDS))
    _, has_s = _timed(lambda: instance.has_dynamic_partition(SHARDS, keys[-1]))
    return [
        Measure("register shard partitions", len(keys), "keys", register_s, f"batches of {PARTITION_BATCH}"),
        Measure("list shard partitions", len(listed), "keys", list_s),
        Measure("look up one partition", 1, "lookups", has_s),
    ]


def make_drop(folder: Path, files: int, ready: bool) -> None:
    folder.mkdir(parents=True)
    for index in range(files):
        (folder / f"clip_{index:05d}.wav").touch()
    if ready:
        (folder / sorted(READY_MARKERS)[0]).touch()


def bench_sensor(
    home: Path, instance: DagsterInstance, drops: int, files_per_drop: int, big_drop_files: int, shard_size: int
) -> tuple[list[Measure], int]:
    inbox = home / "inbox"
    for index in range(drops):
        make_drop(inbox / f"drop-{index:04d}", files_per_drop, ready=True)
    inbox_resource = InboxResource(root=str(inbox), inbox_quiet_period_s=60.0, shard_size=shard_size)
    resources = {"storage": PlatformStorage(home=str(home)), "inbox": inbox_resource}

    def tick(cursor: str | None) -> SensorResult | SkipReason:
        result = inbox_sensor(build_sensor_context(instance=instance, cursor=cursor, resources=resources))
        if not isinstance(result, SensorResult | SkipReason):
            raise TypeError(f"inbox_sensor returned {type(result).__name__}")
        return result

    def apply(result: SensorResult) -> int:
        """What the daemon does with a tick's result: add the partitions (runs are only counted)."""
        for request in result.dynamic_partitions_requests or []:
            instance.add_dynamic_partitions(SHARDS, list(request.partition_keys or []))
        return len(result.run_requests or [])

    measures: list[Measure] = []
    cursor: str | None = None
    runs = ticks = 0
    drain_s = first_s = 0.0
    while True:
        start = time.perf_counter()
        result = tick(cursor)
        seconds = time.perf_counter() - start
        if isinstance(result, SkipReason):
            break
        ticks += 1
        drain_s += seconds
        tick_runs = apply(result)
        # The first tick only looks (a drop counts as complete once seen unchanged): time the
        # first tick that registers drops.
        first_s = first_s or (seconds if tick_runs else 0.0)
        runs += tick_runs
        cursor = result.cursor
    per_tick = min(drops, inbox_resource.max_drops_per_tick)
    measures.append(
        Measure(f"sensor tick: {per_tick} drops x {files_per_drop} files", per_tick * files_per_drop, "files", first_s)
    )
    measures.append(
        Measure(f"sensor: drain {drops} drops", drops * files_per_drop, "files", drain_s, f"{ticks} ticks, {runs} runs")
    )
    _, idle_s = _timed(lambda: tick(cursor))
    measures.append(Measure(f"sensor idle tick ({drops} drops seen)", drops, "drops", idle_s))

    big = inbox / "big-drop"
    make_drop(big, big_drop_files, ready=False)
    waiting, waiting_s = _timed(lambda: tick(cursor))
    if isinstance(waiting, SensorResult) and waiting.run_requests:
        raise RuntimeError("a fresh drop without a ready marker must wait")
    cursor = waiting.cursor if isinstance(waiting, SensorResult) else cursor
    measures.append(Measure(f"sensor tick: 1 drop x {big_drop_files} arriving", big_drop_files, "files", waiting_s))
    (big / sorted(READY_MARKERS)[0]).touch()
    ready, ready_s = _timed(lambda: tick(cursor))
    if not isinstance(ready, SensorResult):
        raise RuntimeError(f"a ready drop must be registered, got {ready}")
    big_runs = apply(ready)
    runs += big_runs
    measures.append(
        Measure(
            f"sensor tick: 1 drop x {big_drop_files} ready",
            big_drop_files,
            "files",
            ready_s,
            f"{big_runs} runs",
        )
    )
    return measures, runs


def _sentence_pool(rng: np.random.Generator) -> pl.Series:
    words = np.array(VOCABULARY.split())
    lengths = rng.integers(3, 16, SENTENCE_POOL)
    return pl.Series("text", [" ".join(words[rng.integers(0, len(words), n)]) for n in lengths])


def synthetic_shard(
    shard: str, rows: int, rng: np.random.Generator, sentences: pl.Series
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``rows`` segments and their transcripts for one shard, with realistic ids and value ranges."""
    files = max(1, rows // SEGMENTS_PER_FILE)
    file_ids = [os.urandom(32).hex() for _ in range(files)]
    file_index = np.sort(rng.integers(0, files, rows))
    duration = rng.gamma(2.0, 2.5, rows).clip(0.25, 30.0)
    start = rng.uniform(0, 600, rows)
    segments = pl.DataFrame(
        {
            "file_id": pl.Series(file_ids).gather(file_index),
            "shard": [shard] * rows,
            "start_s": start,
            "end_s": start + duration,
            "duration_s": duration,
            "speech_prob": rng.beta(8, 1, rows),
            "snr_db": rng.normal(25, 8, rows),
            "clipping_ratio": rng.exponential(0.001, rows),
            "loudness_dbfs": rng.normal(-24, 5, rows),
            "dc_offset": rng.normal(0, 0.002, rows),
            # Measured only with AUDIO_PLATFORM_VAD_DNSMOS=true (off by default): null, as in a default shard.
            "dnsmos_sig": pl.Series([None] * rows, dtype=pl.Float64),
            "dnsmos_bak": pl.Series([None] * rows, dtype=pl.Float64),
            "dnsmos_ovrl": pl.Series([None] * rows, dtype=pl.Float64),
        }
    ).with_columns(
        segment_id=pl.col("file_id").str.slice(0, 16)
        + "-"
        + (pl.col("start_s") * 1000).round().cast(pl.Int64).cast(pl.String).str.zfill(9)
    )
    text = sentences.gather(rng.integers(0, len(sentences), rows))
    transcripts = pl.DataFrame(
        {
            "segment_id": segments["segment_id"],
            "file_id": segments["file_id"],
            "shard": segments["shard"],
            "text": text,
            "language": rng.choice(np.array(["en", "en", "en", "en", "de", "ru"]), rows),
            "language_probability": rng.uniform(0.5, 1.0, rows),
            "avg_logprob": -rng.exponential(0.3, rows),
            "no_speech_prob": rng.beta(1, 12, rows),
            "compression_ratio": rng.normal(1.6, 0.3, rows),
            "word_count": text.str.count_matches(" ") + 1,
            "asr_model": ["whisper-tiny.en"] * rows,
        }
    )
    return segments, transcripts


def bench_lake(lake: Lake, keys: Sequence[str], rows: int, seed: int = 0) -> tuple[list[Measure], int]:
    rng = np.random.default_rng(seed)
    sentences = _sentence_pool(rng)
    per_shard = np.full(len(keys), rows // len(keys))
    per_shard[: rows % len(keys)] += 1
    generate_s = write_s = 0.0
    for shard, count in zip(keys, per_shard, strict=True):
        start = time.perf_counter()
        segments, transcripts = synthetic_shard(shard, int(count), rng, sentences)
        generated = time.perf_counter()
        lake.write_table(SEGMENTS, shard, segments)
        lake.write_table(TRANSCRIPTS, shard, transcripts)
        generate_s += generated - start
        write_s += time.perf_counter() - generated
    size = sum(
        p.stat().st_size for table in ("segments", "transcripts") for p in lake.table_dir(table).rglob("*.parquet")
    )
    detail = f"{len(keys)} shards x 2 tables, {size / 1e6:,.0f} MB"
    return [
        Measure("generate synthetic rows", 2 * rows, "rows", generate_s, "polars + numpy, not the platform"),
        Measure("write lake Parquet (segments + transcripts)", 2 * rows, "rows", write_s, detail),
    ], size


def bench_automation(instance: DagsterInstance, settings: Settings, keys: Sequence[str]) -> list[Measure]:
    """What automation_sensor evaluates every 15 s, once every shard asset has a materialization in
    every partition: a baseline tick, then a tick after one more shard finished."""
    defs = build_definitions(settings)
    start = time.perf_counter()
    for asset in SHARD_ASSETS:
        for key in keys:
            instance.report_runless_asset_event(AssetMaterialization(AssetKey(asset), partition=key))
    report_s = time.perf_counter() - start
    baseline, baseline_s = _timed(lambda: evaluate_automation_conditions(defs=defs, instance=instance))
    instance.report_runless_asset_event(AssetMaterialization(AssetKey(SHARD_ASSETS[-1]), partition=keys[0]))
    after, after_s = _timed(
        lambda: evaluate_automation_conditions(defs=defs, instance=instance, cursor=baseline.cursor)
    )
    events = len(SHARD_ASSETS) * len(keys)
    return [
        Measure("store materialization events (SQLite)", events, "events", report_s, "one commit each"),
        Measure(f"automation tick over {len(keys)} shards", events, "asset partitions", baseline_s, "baseline"),
        Measure(
            "automation tick after one shard finished",
            events,
            "asset partitions",
            after_s,
            f"{after.total_requested} requested",
        ),
    ]


FILTER_SQL = "SELECT segment_id, start_s, end_s FROM segments WHERE file_id = $1"
AGGREGATE_SQL = (
    "SELECT shard, count(*) AS segments, sum(duration_s) AS speech_s, avg(snr_db) AS snr_db "
    "FROM segments GROUP BY shard"
)
JOIN_SQL = (
    "SELECT t.language, count(*) AS segments, sum(s.duration_s) / 3600 AS hours "
    "FROM segments s JOIN transcripts t USING (segment_id) "
    "WHERE s.snr_db > 15 AND t.no_speech_prob < 0.2 GROUP BY t.language"
)


def bench_warehouse(db_path: Path, lake: Lake, rows: int) -> tuple[list[Measure], dict[str, int]]:
    summary, rebuild_s = _timed(lambda: rebuild_warehouse(db_path, lake, LAKE_TABLES))
    counts = {t.name: t.rows for t in summary}
    some_file = query(db_path, "SELECT file_id FROM segments LIMIT 1").item()

    def best_of_two(sql: str, params: Sequence[Any] | None = None) -> tuple[pl.DataFrame, float]:
        first, first_s = _timed(lambda: query(db_path, sql, params))
        _, second_s = _timed(lambda: query(db_path, sql, params))
        return first, min(first_s, second_s)

    matches, filter_s = best_of_two(FILTER_SQL, [some_file])
    groups, aggregate_s = best_of_two(AGGREGATE_SQL)
    joined, join_s = best_of_two(JOIN_SQL)
    return [
        Measure("rebuild_warehouse (views + row counts)", sum(counts.values()), "rows", rebuild_s),
        Measure("query: filter segments by file_id", rows, "rows scanned", filter_s, f"{matches.height} rows"),
        Measure("query: aggregate segments by shard", rows, "rows scanned", aggregate_s, f"{groups.height} groups"),
        Measure(
            "query: join segments-transcripts",
            2 * rows,
            "rows scanned",
            join_s,
            f"{int(joined['segments'].sum()):,} joined rows",
        ),
    ], counts


def run_scale(
    work: Path,
    *,
    shards: int = 2000,
    rows: int = 10_000_000,
    drops: int = 50,
    files_per_drop: int = 200,
    big_drop_files: int = 5000,
    shard_size: int = 500,
    automation: bool = False,
) -> ScaleResult:
    if shards < 1 or rows < shards:
        raise ValueError(f"need 1 <= shards <= rows, got shards={shards}, rows={rows}")
    keys = shard_keys(shards)
    settings = Settings(home=work / "platform")
    instance = prepare_instance(settings)
    measures = bench_partitions(instance, keys)
    if automation:
        measures += bench_automation(instance, settings, keys)
    # The sensor writes shard_files into the same lake, as in production.
    sensor_measures, runs = bench_sensor(work / "platform", instance, drops, files_per_drop, big_drop_files, shard_size)
    lake = Lake(work / "platform" / "lake")
    lake_measures, lake_bytes = bench_lake(lake, keys, rows)
    warehouse_measures, counts = bench_warehouse(work / "platform" / "warehouse.duckdb", lake, rows)
    return ScaleResult(
        measures=[*measures, *sensor_measures, *lake_measures, *warehouse_measures],
        partitions=len(instance.get_dynamic_partitions(SHARDS)),
        runs_requested=runs,
        warehouse_rows=counts,
        lake_bytes=lake_bytes,
    )


def render_table(result: ScaleResult) -> str:
    lines = ["| measure | items | seconds | per second | detail |", "|---|---:|---:|---:|---|"]
    for m in result.measures:
        lines.append(f"| {m.name} | {m.items:,} {m.unit} | {m.seconds:.3f} | {m.rate:,.0f} | {m.detail} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--shards", type=int, default=2000)
    parser.add_argument("--rows", type=int, default=10_000_000, help="segments (and as many transcripts)")
    parser.add_argument("--drops", type=int, default=50)
    parser.add_argument("--files-per-drop", type=int, default=200)
    parser.add_argument("--big-drop-files", type=int, default=5000)
    parser.add_argument("--shard-size", type=int, default=500, help="files per shard for the sensor")
    parser.add_argument(
        "--automation",
        action="store_true",
        help="also time automation ticks over every shard materialized (slow: ~20 ms per stored event)",
    )
    parser.add_argument("--work", type=Path, help="an empty folder to keep the results in (default: a temporary one)")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="audio-platform-scale-"))
    # One log line per registered drop from the sensor would bury the table.
    logging.disable(logging.INFO)
    warnings.simplefilter("ignore", BetaWarning)
    try:
        started = time.perf_counter()
        result = run_scale(
            work,
            shards=args.shards,
            rows=args.rows,
            drops=args.drops,
            files_per_drop=args.files_per_drop,
            big_drop_files=args.big_drop_files,
            shard_size=args.shard_size,
            automation=args.automation,
        )
        print(render_table(result))
        print(
            f"\n{result.partitions:,} partitions, {result.runs_requested:,} runs requested, "
            f"lake {result.lake_bytes / 1e6:,.0f} MB ({result.lake_bytes / max(1, args.rows):.0f} B per "
            f"segment+transcript), total {time.perf_counter() - started:.0f} s, {os.cpu_count()} CPUs"
        )
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
