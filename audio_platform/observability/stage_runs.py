"""What a stage used and did, measured in its own process and kept as a durable fact.

Dagster runs are short-lived processes (a pod each on Kubernetes), so counters held in a run's
memory die with it. Each stage instead measures itself (:class:`Stopwatch`) and writes one
``stage_runs`` row per partition to the lake, replaced when the partition is re-materialized;
the metrics exporter (:mod:`audio_platform.observability.metrics`) derives its gauges from those
rows on every scrape.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import polars as pl

from audio_platform.storage.tables import STAGE_RUNS


@dataclass(frozen=True)
class Prices:
    """Per CPU-hour and per GPU-hour (AUDIO_PLATFORM_PRICE_PER_CPU_HOUR / _GPU_HOUR)."""

    per_cpu_hour: float
    per_gpu_hour: float

    def __post_init__(self) -> None:
        if self.per_cpu_hour < 0 or self.per_gpu_hour < 0:
            raise ValueError(f"prices must be >= 0, got {self}")

    def cost(self, cpu_s: float, gpu_s: float) -> float:
        """CPU time actually consumed plus the wall time a GPU was held, at these prices."""
        return (cpu_s * self.per_cpu_hour + gpu_s * self.per_gpu_hour) / 3600.0


@dataclass(frozen=True)
class StageUsage:
    started_at: datetime
    finished_at: datetime
    wall_s: float
    cpu_s: float  # this process's CPU time, every thread (CTranslate2's and ONNX Runtime's too)
    gpu_s: float  # the stage's wall time when it ran on a GPU, else 0
    audio_s: float
    peak_rss_mb: float  # the process's high-water mark so far
    device: str

    @property
    def real_time_factor(self) -> float:
        return self.audio_s / self.wall_s if self.wall_s > 0 else 0.0


def _on_gpu(device: str) -> bool:
    return device.startswith("cuda")


@dataclass(frozen=True)
class Stopwatch:
    """Started when created; ``stop`` gives the usage since then."""

    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    _wall_start: float = field(default_factory=time.perf_counter)
    _cpu_start: float = field(default_factory=time.process_time)

    def stop(self, audio_s: float, device: str) -> StageUsage:
        """``audio_s``: the audio the stage processed; ``device``: where its model ran (``cuda``
        counts the wall time as GPU time)."""
        wall = time.perf_counter() - self._wall_start
        return StageUsage(
            started_at=self.started_at,
            finished_at=datetime.now(UTC),
            wall_s=wall,
            cpu_s=time.process_time() - self._cpu_start,
            gpu_s=wall if _on_gpu(device) else 0.0,
            audio_s=audio_s,
            # ru_maxrss is KiB on Linux.
            peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
            device=device,
        )


def stage_run_key(stage: str, partition_key: str) -> str:
    """The lake partition of one stage's row: each stage writes its own file, so stages of one
    shard never rewrite each other's rows, and a rerun replaces exactly its own."""
    return f"{stage}.{partition_key}" if partition_key else stage


def stage_run_row(
    stage: str,
    partition_key: str,
    run_id: str,
    usage: StageUsage,
    prices: Prices,
    *,
    files: int | None = None,
    segments: int | None = None,
    failures: Mapping[str, int] | None = None,
) -> pl.DataFrame:
    """The ``stage_runs`` row for one stage run (see :data:`STAGE_RUNS`)."""
    return pl.DataFrame(
        [
            {
                "stage": stage,
                "partition_key": partition_key,
                "run_id": run_id,
                "started_at": usage.started_at,
                "finished_at": usage.finished_at,
                "wall_s": usage.wall_s,
                "cpu_s": usage.cpu_s,
                "gpu_s": usage.gpu_s,
                "device": usage.device,
                "audio_s": usage.audio_s,
                "peak_rss_mb": usage.peak_rss_mb,
                "files": files,
                "segments": segments,
                "failures_by_reason": [{"reason": k, "count": v} for k, v in (failures or {}).items()],
                "estimated_cost": prices.cost(usage.cpu_s, usage.gpu_s),
            }
        ],
        schema=STAGE_RUNS.schema,
    )
