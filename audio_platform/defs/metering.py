"""Stage metering: the metadata every asset carries and the ``stage_runs`` row every stage writes.

An asset starts a :class:`StageMeter` (``metering.start(context)``), adds the audio it reads
to ``meter.audio_s`` (the stages of :data:`AUDIO_STAGES`), and ends with
``meter.finish(lake, ...)``, which

* measures the stage: wall, CPU and GPU seconds, audio, real-time factor, peak RSS and the
  estimated cost at the configured prices;
* writes the stage's ``stage_runs`` row to the lake (one per stage and partition, replaced when
  the partition is re-materialized), which the metrics exporter reads;
* returns the metadata: :data:`COMMON_METADATA_KEYS` (plus :data:`AUDIO_METADATA_KEYS` for the
  stages that read audio) and the stage's own counts, all numeric (``MetadataValue.int`` /
  ``float``) so that Dagster plots them across partitions. An asset has the same keys on every
  partition, and none that means nothing for it (no real-time factor for a selection step).
"""

from collections.abc import Mapping
from typing import Any

from dagster import AssetExecutionContext, MetadataValue

from audio_platform.config_fields import described_fields
from audio_platform.defs.config import declared_fields_resource
from audio_platform.defs.recovery import record_run_owner
from audio_platform.observability.progress import ProgressReporter
from audio_platform.observability.stage_runs import Prices, Stopwatch, stage_run_key, stage_run_row
from audio_platform.settings import Settings
from audio_platform.storage.lake import Lake
from audio_platform.storage.tables import STAGE_RUNS

COMMON_METADATA_KEYS = ("wall_seconds", "cpu_seconds", "gpu_seconds", "peak_rss_mb", "estimated_cost_usd")
# Ops (stage names) that decode or model audio samples: only their real-time factor and cost per
# audio hour mean something.
AUDIO_STAGES = frozenset({"raw_audio_files", "vad_segments", "near_duplicates", "transcribe_segments"})
AUDIO_METADATA_KEYS = ("audio_seconds", "audio_hours", "real_time_factor", "cost_usd_per_audio_hour")


_PRICES = declared_fields_resource(described_fields(Settings, include=("price_per_cpu_hour", "price_per_gpu_hour")))


class MeteringResource(_PRICES):  # type: ignore[misc,valid-type]  # fields generated from Settings
    """Prices behind each stage's ``estimated_cost``, per CPU-hour consumed and per GPU-hour held."""

    def start(self, context: AssetExecutionContext) -> "StageMeter":
        # Every stage starts here, so this is where a launched run names the process executing it.
        record_run_owner(context.instance, context.run)
        return StageMeter(context, Prices(self.price_per_cpu_hour, self.price_per_gpu_hour))


def _metadata_value(value: Any) -> Any:
    if isinstance(value, bool):  # before int: bool is an int
        return MetadataValue.bool(value)
    if isinstance(value, int):
        return MetadataValue.int(value)
    if isinstance(value, float):
        return MetadataValue.float(value)
    return value


class StageMeter:
    """Measures one stage from its creation (see the module docstring)."""

    def __init__(self, context: AssetExecutionContext, prices: Prices) -> None:
        self._context, self._prices = context, prices
        self._stopwatch = Stopwatch()
        self.audio_s = 0.0
        self.device = "cpu"  # set to the model's device; "cuda" makes the wall time GPU time

    def progress(self, label: str, total: float, unit: str = "files") -> ProgressReporter:
        """A progress reporter writing a few lines to this run's log (and feeding the CLI's bar)."""
        return ProgressReporter(label, total, self._context.log.info, unit=unit)

    def finish(
        self,
        lake: Lake,
        counts: Mapping[str, Any] | None = None,
        *,
        files: int | None = None,
        segments: int | None = None,
        failures: Mapping[str, int] | None = None,
        failure_label: str = "failures",
    ) -> dict[str, Any]:
        """Record the stage run and return its metadata: the common keys, ``files``, ``segments``,
        the stage's own ``counts`` (ints and floats become numeric metadata), and ``failures``
        (reason category -> count; give every category, zeros included, so that each key exists
        on every partition) as ``<failure_label>_<category>`` entries."""
        usage = self._stopwatch.stop(self.audio_s, self.device)
        context = self._context
        stage = context.op_def.name
        partition_key = context.partition_key if context.has_partition_key else ""
        row = stage_run_row(
            stage,
            partition_key,
            context.run_id,
            usage,
            self._prices,
            files=files,
            segments=segments,
            failures=failures,
        )
        lake.write_table(STAGE_RUNS, stage_run_key(stage, partition_key), row)
        cost = float(row["estimated_cost"][0])
        metadata: dict[str, Any] = {
            "wall_seconds": MetadataValue.float(round(usage.wall_s, 3)),
            "cpu_seconds": MetadataValue.float(round(usage.cpu_s, 3)),
            "gpu_seconds": MetadataValue.float(round(usage.gpu_s, 3)),
            "peak_rss_mb": MetadataValue.float(round(usage.peak_rss_mb, 1)),
            # Micro-cents resolve a small shard; more digits are float noise in the UI.
            "estimated_cost_usd": MetadataValue.float(round(cost, 8)),
        }
        if stage in AUDIO_STAGES:
            hours = usage.audio_s / 3600.0
            metadata |= {
                "audio_seconds": MetadataValue.float(round(usage.audio_s, 3)),
                "audio_hours": MetadataValue.float(round(hours, 6)),
                "real_time_factor": MetadataValue.float(round(usage.real_time_factor, 2)),
                # What a user budgets with: a plain decimal comparable across shards of any size.
                "cost_usd_per_audio_hour": MetadataValue.float(round(cost / hours, 4) if hours else 0.0),
            }
        named = {"files": files, "segments": segments}
        named |= {f"{failure_label}_{category}": n for category, n in (failures or {}).items()}
        for name, value in (named | dict(counts or {})).items():
            if value is not None:
                metadata[name] = _metadata_value(value)
        return metadata
