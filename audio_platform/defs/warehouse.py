"""warehouse: the DuckDB file where every lake table is a queryable view."""

from dagster import AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue, asset

from audio_platform.defs.automation import AFTER_UPSTREAM_UPDATES
from audio_platform.defs.curation import curated_segments
from audio_platform.defs.ingest import raw_audio_files
from audio_platform.defs.metering import StageMeter
from audio_platform.defs.resources import PlatformStorage
from audio_platform.defs.scoring import segment_scores
from audio_platform.defs.transcription import TRANSCRIPTS_KEY, WORDS_KEY
from audio_platform.defs.vad import vad_segments
from audio_platform.storage.tables import LAKE_TABLES
from audio_platform.storage.warehouse import rebuild_warehouse


@asset(
    deps=[
        raw_audio_files,
        vad_segments,
        TRANSCRIPTS_KEY,
        WORDS_KEY,
        segment_scores,
        curated_segments,
        # By key: the keyword assets are built per deployment from the configured keywords.
        AssetKey("keyword_dataset"),
        AssetKey("keyword_model"),
    ],
    automation_condition=AFTER_UPSTREAM_UPDATES,
    group_name="warehouse",
    kinds={"duckdb"},
    description="One DuckDB file (AUDIO_PLATFORM_HOME/warehouse.duckdb) with a view per lake table: "
    "audio_files, segments, transcripts, words, segment_scores, curated_segments, curation_decisions, "
    "shard_files, keyword_clips, models. Published atomically; open it read-only from any DuckDB client.",
)
def warehouse(context: AssetExecutionContext, storage: PlatformStorage) -> MaterializeResult:
    meter = StageMeter()
    tables = rebuild_warehouse(storage.warehouse_path, storage.lake, LAKE_TABLES)
    for table in tables:
        context.log.info(f"{table.name}: {table.rows} rows in {table.shards} partition(s)")
    return MaterializeResult(
        metadata={
            **meter.metadata(),
            "path": MetadataValue.path(str(storage.warehouse_path)),
            **{f"rows_{t.name}": MetadataValue.int(t.rows) for t in tables},
        }
    )
