"""curated_exports: each shard's curated set in trainers' formats, under the platform home.

``<home>/exports/<format>/<shard>/`` holds one shard's export in one format, written by the same
writers as ``audio-platform export`` (:mod:`audio_platform.storage.export`) from the shard's lake
tables. A materialization replaces its shard's folders whole and touches no other shard's, so the
export grows shard by shard, and a trainer reads every shard of a format with one glob
(``exports/nemo/*/manifest.jsonl``, ``exports/lhotse-shar/*/cuts.*.jsonl.gz``). Outside the
per-shard job: the declarative automation materializes a shard's export once its curated set was
updated (processing, re-scoring), so the CLI's ``process`` runs and the jobs cost nothing more.
"""

import functools
from pathlib import Path

from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset
from pydantic import Field, field_validator

from audio_platform.defs.automation import AFTER_UPSTREAM_UPDATES
from audio_platform.defs.curation import curated_segments
from audio_platform.defs.metering import MeteringResource
from audio_platform.defs.partitions import shard_partitions
from audio_platform.defs.resources import PlatformStorage
from audio_platform.storage.export import (
    ALIGNED_FORMATS,
    DEFAULT_SEGMENTS_PER_TAR,
    FORMATS,
    check_not_protected,
    load_shard,
    remove_folder,
    replace_folder,
    write_export,
)
from audio_platform.storage.tables import DROPS

EXPORTS_DIR = "exports"


class CuratedExportsConfig(Config):
    formats: list[str] = Field(
        # A manifest over the source files, and the cut audio Hugging Face datasets load.
        default=["nemo", "audiofolder"],
        description=f"Formats to write, as `audio-platform export --format`: any of {', '.join(FORMATS)}. "
        "A format left out keeps the shard's export it has.",
    )
    segments_per_tar: int = Field(
        default=DEFAULT_SEGMENTS_PER_TAR, ge=1, description="nemo-tarred and lhotse-shar: segments per tar."
    )

    @field_validator("formats")
    @classmethod
    def _known_formats(cls, formats: list[str]) -> list[str]:
        unknown = sorted(set(formats) - set(FORMATS))
        if unknown:
            raise ValueError(f"unknown export format(s) {', '.join(unknown)}: any of {', '.join(FORMATS)}")
        return formats


def protected_folders(storage: PlatformStorage) -> list[Path]:
    """Every drop folder the platform has seen, and a local lake: an export never writes into one
    (a drop folder holding the home would otherwise read the exported audio as input)."""
    lake = storage.lake
    drops = lake.read_many(DROPS.name)
    roots = [] if drops is None else [Path(root) for root in drops["drop_root"].unique().to_list()]
    return roots if lake.remote else [*roots, Path(lake.location)]


def export_folder(storage: PlatformStorage, fmt: str, shard: str) -> Path:
    """Where the export asset writes shard ``shard`` in format ``fmt``."""
    return Path(storage.home) / EXPORTS_DIR / fmt / shard


def _bytes_under(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) if folder.is_dir() else 0


@asset(
    deps=[curated_segments],
    partitions_def=shard_partitions,
    automation_condition=AFTER_UPSTREAM_UPDATES,
    group_name="export",
    kinds={"duckdb", "parquet"},
    description="The shard's curated set ready for training, in the configured formats (default NeMo "
    "manifest and Hugging Face audiofolder; also nemo-tarred, lhotse, lhotse-shar): "
    "AUDIO_PLATFORM_HOME/exports/<format>/<shard>/, replaced whole on each materialization, other shards "
    "untouched. Materialized by the automation after the shard's curated set changes.",
)
def curated_exports(
    context: AssetExecutionContext, config: CuratedExportsConfig, storage: PlatformStorage, metering: MeteringResource
) -> MaterializeResult:
    shard = context.partition_key
    meter = metering.start(context)
    protected = protected_folders(storage)
    # Checked before anything is read or written.
    folders = {fmt: check_not_protected(export_folder(storage, fmt, shard), protected) for fmt in config.formats}
    curated, words = load_shard(storage.lake, shard)
    for fmt, folder in folders.items():
        if curated.is_empty():
            # Nothing curated (any more): no export, rather than one of a former selection.
            remove_folder(folder)
            continue
        write = functools.partial(
            write_export,
            curated,
            fmt=fmt,
            words=words if fmt in ALIGNED_FORMATS else None,
            segments_per_tar=config.segments_per_tar,
            # The samples the platform transcribed, from its audio cache: no second decode.
            load_audio=storage.load_audio,
        )
        summary = replace_folder(folder, write)
        context.log.info(f"{fmt}: {summary.segments} segments, {len(summary.written)} file(s) in {folder}")
    return MaterializeResult(
        metadata=meter.finish(
            storage.lake,
            {
                "exported_seconds": round(float(curated["duration_s"].sum()), 3) if curated.height else 0.0,
                "bytes_written": sum(_bytes_under(folder) for folder in folders.values()),
                **{f"path_{fmt}": MetadataValue.path(str(folder)) for fmt, folder in folders.items()},
            },
            segments=curated.height,
        )
    )
