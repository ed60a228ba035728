"""Prometheus metrics computed on each scrape from the warehouse (``audio-platform metrics``).

Runs are separate, short-lived processes, so nothing here counts events in memory: every value is
read from the lake through the warehouse's views when Prometheus scrapes, from the tables the
stages wrote (``audio_files``, ``segments``, ``curated_segments``) and the per-stage facts in
``stage_runs``. Re-materializing a shard replaces its rows, so every total can go down: all
families are gauges (no ``_total``, never ``rate``/``increase`` them; ``delta`` or a comparison),
and the stage durations are a gauge histogram (``histogram_quantile`` on its buckets directly).
Names follow the Prometheus conventions: base units last (``_seconds``, ``_usd``, ``_ratio``),
declared as the OpenMetrics unit. docs/observability.md lists every metric;
audio_platform_tests/observability/test_metrics.py lints the exposition and the documented alerts.
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
from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from audio_platform.audio.inventory import FILE_STATUSES, QUARANTINE_CATEGORIES
from audio_platform.curation.selection import REJECTION_RULES
from audio_platform.storage.warehouse import query

LOG = logging.getLogger(__name__)
PREFIX = "audio_platform_"
# Stage wall time: seconds for scoring a shard up to hours for ASR of a large one.
STAGE_DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)
# ``stage_runs.stage`` is the Dagster op; the ``stage`` label is the asset the UI shows. Ops of one
# asset share its name; the ASR multi-asset's op writes ``transcripts`` and ``words`` (one row).
STAGE_ASSETS = {"transcribe_segments": "transcripts"}
# The stages whose ``failures_by_reason`` are items set aside by design, not failures: the
# quarantine categories of ingest (files) and the rejection rules of curation (segments).
QUARANTINING_STAGE, CURATING_STAGE = "raw_audio_files", "curated_segments"

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


def stage_label(stage: str) -> str:
    """The ``stage`` label of a ``stage_runs.stage`` (an op name): the asset the UI shows."""
    return STAGE_ASSETS.get(stage, stage)


def _gauge(name: str, documentation: str, value: float, unit: str = "") -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, documentation, value=value, unit=unit)


def _labelled(
    name: str, documentation: str, labels: list[str], values: Mapping[tuple[str, ...], float], unit: str = ""
) -> Metric:
    family = GaugeMetricFamily(PREFIX + name, documentation, labels=labels, unit=unit)
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
                "Dagster runs in the instance by status (gauge: deleting runs lowers it); "
                'status="FAILURE" counts the failed runs',
                ["status"],
                {(status,): float(n) for status, n in self._run_counts().items()},
            )

    def _warehouse_families(self) -> Iterator[Metric]:
        files = {status: (0, 0.0) for status in FILE_STATUSES}
        for status, count, audio_s in query(self._warehouse_path, FILES_SQL).iter_rows():
            files[status] = (count, audio_s)
        totals = query(self._warehouse_path, TOTALS_SQL).row(0, named=True)
        runs = query(self._warehouse_path, STAGES_SQL).with_columns(
            pl.col("stage").replace(STAGE_ASSETS).alias("stage")
        )

        yield _labelled(
            "files",
            "Input files by status (" + ", ".join(FILE_STATUSES) + ")",
            ["status"],
            {(status,): count for status, (count, _) in files.items()},
        )
        yield _gauge("audio_seconds", "Decoded audio of ok files", files["ok"][1], unit="seconds")
        yield _gauge("segments", "Speech segments found by VAD", totals["segments"])
        yield _gauge("speech_seconds", "Speech in VAD segments", totals["speech_s"], unit="seconds")
        yield _gauge("curated_segments", "Segments selected by the curation policy", totals["curated"])
        yield _gauge("curated_seconds", "Audio in curated segments", totals["curated_s"], unit="seconds")
        yield from _stage_families(runs)
        yield from _set_aside_families(runs)


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
    latest = "summed over the latest run of every partition (gauge: re-materializing replaces a run)"
    sums = {
        "stage_cpu_seconds": (f"CPU time of the stage, {latest}", "cpu_s", "seconds"),
        "stage_gpu_seconds": (f"GPU time (wall time on CUDA) of the stage, {latest}", "gpu_s", "seconds"),
        "stage_audio_seconds": (f"Audio processed by the stage, {latest}", "audio_s", "seconds"),
        "stage_estimated_cost_usd": (
            f"Estimated cost of the stage at the configured CPU-hour and GPU-hour prices (USD), {latest}",
            "estimated_cost",
            "usd",
        ),
        "stage_last_success_timestamp_seconds": (
            "When the stage last finished a run, Unix time",
            "finished_s",
            "seconds",
        ),
    }
    for name, (documentation, column, unit) in sums.items():
        yield _labelled(
            name, documentation, ["stage"], {(row["stage"],): float(row[column]) for row in rows}, unit=unit
        )
    yield _labelled(
        "stage_real_time_factor_ratio",
        "Audio seconds per wall second of the stage over the latest run of every partition (gauge)",
        ["stage"],
        {(row["stage"],): row["audio_s"] / row["wall_sum"] if row["wall_sum"] > 0 else 0.0 for row in rows},
        unit="ratio",
    )
    histogram = GaugeHistogramMetricFamily(
        PREFIX + "stage_duration_seconds",
        "Wall time of the latest run of every partition of the stage (gauge histogram: re-materializing "
        "replaces a run)",
        labels=["stage"],
        unit="seconds",
    )
    for row in rows:
        walls = np.asarray(row["walls"], dtype=np.float64)
        buckets = [(floatToGoString(bound), float((walls <= bound).sum())) for bound in STAGE_DURATION_BUCKETS]
        histogram.add_metric([row["stage"]], [*buckets, ("+Inf", float(walls.size))], gsum_value=row["wall_sum"])
    yield histogram


def _set_aside_families(runs: pl.DataFrame) -> Iterator[Metric]:
    """Items the pipeline set aside by design, one family per kind of item; every category and
    rule is present (0 until seen) so that alerts on them have a series. Failed runs are
    ``dagster_runs{status="FAILURE"}``."""
    reasons = (
        runs.select("stage", "failures_by_reason")
        .explode("failures_by_reason")
        .drop_nulls("failures_by_reason")
        .unnest("failures_by_reason")
        .group_by("stage", "reason")
        .agg(pl.col("count").sum())
    )
    counts = {(stage, reason): float(count) for stage, reason, count in reasons.iter_rows()}
    yield _labelled(
        "quarantined_files",
        "Input files quarantined by ingest, by category (latest run of every shard)",
        ["category"],
        {
            (c,): counts.get((QUARANTINING_STAGE, c), 0.0)
            for c in _with_seen(QUARANTINE_CATEGORIES, counts, QUARANTINING_STAGE)
        },
    )
    yield _labelled(
        "rejected_segments",
        "Segments the curation policy rejected, by rule (latest run of every shard); rejections are "
        "the policy working, not failures",
        ["rule"],
        {(r,): counts.get((CURATING_STAGE, r), 0.0) for r in _with_seen(REJECTION_RULES, counts, CURATING_STAGE)},
    )


def _with_seen(known: tuple[str, ...], counts: Mapping[tuple[str, str], float], stage: str) -> list[str]:
    """``known`` in order, then any other reason ``stage`` recorded (older rows, newer code)."""
    return [*known, *sorted(reason for s, reason in counts if s == stage and reason not in known)]


def serve_metrics(collector: Collector, host: str, port: int) -> tuple[WSGIServer, Thread]:
    """Serve ``/metrics`` for ``collector`` alone on ``host:port`` (port 0: any free port) from a
    daemon thread; ``server.shutdown()`` stops it."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return start_http_server(port, addr=host, registry=registry)
