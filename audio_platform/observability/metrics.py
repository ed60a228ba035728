"""Prometheus metrics computed on each scrape from the warehouse (``audio-platform metrics``).

Runs are separate, short-lived processes, so nothing here counts events in memory: every value is
read from the lake through the warehouse's views when Prometheus scrapes, from the tables the
stages wrote (``audio_files``, ``segments``, ``curated_segments``) and the per-stage facts in
``stage_runs``. Re-materializing a shard replaces its rows, so totals can go down: they are
gauges, and the stage-duration histogram describes the current rows (read it with
``histogram_quantile`` directly, not through ``rate``). docs/observability.md lists every metric.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from threading import Thread
from wsgiref.simple_server import WSGIServer

import duckdb
import numpy as np
import polars as pl
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from audio_platform.audio.inventory import FILE_STATUSES
from audio_platform.storage.warehouse import query

LOG = logging.getLogger(__name__)
PREFIX = "audio_platform_"
# Stage wall time: seconds for scoring a shard up to hours for ASR of a large one.
STAGE_DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)

FILES_SQL = "SELECT status, count(*) AS files, coalesce(sum(duration_s), 0) AS audio_s FROM audio_files GROUP BY status"
TOTALS_SQL = """
SELECT
  (SELECT count(*) FROM segments) AS segments,
  (SELECT coalesce(sum(duration_s), 0) FROM segments) AS speech_s,
  (SELECT count(*) FROM curated_segments) AS curated,
  (SELECT coalesce(sum(duration_s), 0) FROM curated_segments) AS curated_s
"""
STAGES_SQL = """
SELECT stage, wall_s, cpu_s, gpu_s, audio_s, estimated_cost, epoch(finished_at) AS finished_s, failures_by_reason
FROM stage_runs
"""


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, documentation, value=value)


def _labelled(name: str, documentation: str, labels: list[str], values: Mapping[tuple[str, ...], float]) -> Metric:
    family = GaugeMetricFamily(PREFIX + name, documentation, labels=labels)
    for label_values, value in values.items():
        family.add_metric(list(label_values), value)
    return family


class PlatformCollector(Collector):
    """Reads the warehouse at ``warehouse_path`` on every ``collect``; ``run_counts`` (optional)
    gives the Dagster instance's runs by status."""

    def __init__(self, warehouse_path: Path, run_counts: Callable[[], Mapping[str, int]] | None = None) -> None:
        self._warehouse_path = Path(warehouse_path)
        self._run_counts = run_counts

    def collect(self) -> Iterator[Metric]:
        try:
            families = list(self._warehouse_families())
        except (FileNotFoundError, duckdb.Error) as err:
            # The exporter outlives a missing or half-upgraded warehouse; `up` says so.
            LOG.warning("cannot read the warehouse: %s", err)
            families = []
        yield _gauge("warehouse_up", "1 when this scrape could read the warehouse, else 0", float(bool(families)))
        yield from families
        if self._run_counts is not None:
            yield _labelled(
                "dagster_runs",
                "Dagster runs in the instance by status",
                ["status"],
                {(status,): float(n) for status, n in self._run_counts().items()},
            )

    def _warehouse_families(self) -> Iterator[Metric]:
        files = {status: (0, 0.0) for status in FILE_STATUSES}
        for status, count, audio_s in query(self._warehouse_path, FILES_SQL).iter_rows():
            files[status] = (count, audio_s)
        totals = query(self._warehouse_path, TOTALS_SQL).row(0, named=True)
        runs = query(self._warehouse_path, STAGES_SQL)

        yield _labelled(
            "files",
            "Input files by status (ok, quarantined, duplicate)",
            ["status"],
            {(status,): count for status, (count, _) in files.items()},
        )
        yield _gauge("audio_seconds", "Decoded audio of ok files, seconds", files["ok"][1])
        yield _gauge("segments", "Speech segments found by VAD", totals["segments"])
        yield _gauge("speech_seconds", "Speech in VAD segments, seconds", totals["speech_s"])
        yield _gauge("curated_segments", "Segments selected by the curation policy", totals["curated"])
        yield _gauge("curated_seconds", "Audio in curated segments, seconds", totals["curated_s"])
        yield from _stage_families(runs)


def _stage_families(runs: pl.DataFrame) -> Iterator[Metric]:
    per_stage = runs.group_by("stage").agg(
        pl.col("cpu_s").sum(),
        pl.col("gpu_s").sum(),
        pl.col("audio_s").sum(),
        pl.col("wall_s").sum().alias("wall_sum"),
        pl.col("wall_s").alias("walls"),
        pl.col("estimated_cost").sum(),
        pl.col("finished_s").max(),
    )
    rows = per_stage.sort("stage").to_dicts()
    sums = {
        "stage_cpu_seconds": ("CPU seconds used by the stage's latest run of every partition", "cpu_s"),
        "stage_gpu_seconds": ("GPU seconds (wall time on CUDA) of the stage's latest runs", "gpu_s"),
        "stage_audio_seconds": ("Audio seconds processed by the stage's latest runs", "audio_s"),
        "stage_estimated_cost": ("Estimated cost of the stage's latest runs (CPU and GPU hours)", "estimated_cost"),
        "stage_last_success_timestamp_seconds": ("When the stage last finished a run, Unix seconds", "finished_s"),
    }
    for name, (documentation, column) in sums.items():
        yield _labelled(name, documentation, ["stage"], {(row["stage"],): float(row[column]) for row in rows})
    yield _labelled(
        "stage_real_time_factor",
        "Audio seconds per wall second over the stage's latest runs",
        ["stage"],
        {(row["stage"],): row["audio_s"] / row["wall_sum"] if row["wall_sum"] > 0 else 0.0 for row in rows},
    )
    histogram = HistogramMetricFamily(
        PREFIX + "stage_duration_seconds",
        "Wall time of the stage's latest run of every partition",
        labels=["stage"],
    )
    for row in rows:
        walls = np.asarray(row["walls"], dtype=np.float64)
        buckets = [(floatToGoString(bound), float((walls <= bound).sum())) for bound in STAGE_DURATION_BUCKETS]
        histogram.add_metric([row["stage"]], [*buckets, ("+Inf", float(walls.size))], sum_value=row["wall_sum"])
    yield histogram
    failures = (
        runs.select("stage", "failures_by_reason")
        .explode("failures_by_reason")
        .drop_nulls("failures_by_reason")
        .unnest("failures_by_reason")
        .group_by("stage", "reason")
        .agg(pl.col("count").sum())
        .sort("stage", "reason")
    )
    yield _labelled(
        "failures",
        "Items a stage set aside, by reason: quarantined files (raw_audio_files), rejected segments (curated_segments)",
        ["stage", "reason"],
        {(stage, reason): float(count) for stage, reason, count in failures.iter_rows()},
    )


def serve_metrics(collector: Collector, host: str, port: int) -> tuple[WSGIServer, Thread]:
    """Serve ``/metrics`` for ``collector`` alone on ``host:port`` (port 0: any free port) from a
    daemon thread; ``server.shutdown()`` stops it."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return start_http_server(port, addr=host, registry=registry)
