"""warehouse: the DuckDB file where every lake table is a queryable view."""

import polars as pl
from dagster import AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue, asset

from audio_platform.defs.automation import AFTER_UPSTREAM_UPDATES
from audio_platform.defs.curation import curated_segments
from audio_platform.defs.evaluation import asr_evaluation
from audio_platform.defs.ingest import raw_audio_files
from audio_platform.defs.metering import MeteringResource
from audio_platform.defs.resources import PlatformStorage
from audio_platform.defs.scoring import segment_scores
from audio_platform.defs.transcription import TRANSCRIPTS_KEY, WORDS_KEY
from audio_platform.defs.vad import vad_segments
from audio_platform.observability.plots import chart_markdown, markdown_cell, yield_figure
from audio_platform.storage.tables import LAKE_TABLES
from audio_platform.storage.warehouse import DROP_STATES, drop_status, query, rebuild_warehouse

YIELD_SQL = """
SELECT shard, count(*) FILTER (WHERE selected) AS curated, count(*) AS segments
FROM curation_decisions GROUP BY shard ORDER BY shard
"""


@asset(
    deps=[
        raw_audio_files,
        vad_segments,
        TRANSCRIPTS_KEY,
        WORDS_KEY,
        segment_scores,
        curated_segments,
        asr_evaluation,
        # By key: the keyword assets are built per deployment from the configured keywords.
        AssetKey("keyword_dataset"),
        AssetKey("keyword_model"),
        AssetKey("keyword_champion"),
    ],
    automation_condition=AFTER_UPSTREAM_UPDATES,
    group_name="sql",
    kinds={"duckdb"},
    description="One DuckDB file (AUDIO_PLATFORM_HOME/warehouse.duckdb) with a view per lake table: "
    "audio_files, segments, transcripts, words, segment_scores, curated_segments, curation_decisions, "
    "shard_files, asr_evaluation, keyword_clips, models. Published atomically; open it read-only from any "
    "DuckDB client.",
)
def warehouse(
    context: AssetExecutionContext, storage: PlatformStorage, metering: MeteringResource
) -> MaterializeResult:
    meter = metering.start(context)
    tables = rebuild_warehouse(storage.warehouse_path, storage.lake, LAKE_TABLES)
    for table in tables:
        context.log.info(f"{table.name}: {table.rows} rows in {table.shards} partition(s)")
    per_shard = query(storage.warehouse_path, YIELD_SQL)
    chart_md = chart_markdown(
        lambda: yield_figure(
            per_shard["shard"].to_list(), per_shard["curated"].to_list(), per_shard["segments"].to_list()
        ),
        "curated yield per shard",
    )
    drops = drop_status(storage.warehouse_path)
    states = drops["state"].to_list()
    return MaterializeResult(
        metadata=meter.finish(
            storage.lake,
            {
                "path": MetadataValue.path(str(storage.warehouse_path)),
                "curated_yield_per_shard": MetadataValue.md(chart_md),
                # The drops view of the UI: what `audio-platform drops` prints, as of this refresh.
                "drops": MetadataValue.md(drops_markdown(drops)),
                **{f"drops_{state}": states.count(state) for state in DROP_STATES},
                **{f"rows_{t.name}": t.rows for t in tables},
            },
        )
    )


# Rows of the drops table in the metadata: the UI shows Markdown tables whole.
MAX_DROPS_SHOWN = 50


def drops_markdown(drops: pl.DataFrame) -> str:
    """The newest ``MAX_DROPS_SHOWN`` drops as a Markdown table (state, reason, progress, when)."""
    if drops.is_empty():
        return "No drop seen yet: `audio-platform process <folder>`, or a folder in the inbox with `serve` running."
    lines = [
        "| drop | state | files | accounted | ok | shards | reason | first seen | last seen |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in drops.head(MAX_DROPS_SHOWN).iter_rows(named=True):
        cells = [row["drop_id"], row["state"], row["files"], row["accounted"], row["ok"], row["shards"]]
        cells += [row["reason"] or "", row["first_seen_at"], row["updated_at"]]
        lines.append("| " + " | ".join(markdown_cell(c) for c in cells) + " |")
    if drops.height > MAX_DROPS_SHOWN:
        lines.append(f"\n{drops.height - MAX_DROPS_SHOWN} older drop(s): `audio-platform drops` lists all.")
    return "\n".join(lines)
