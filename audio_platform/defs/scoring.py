"""segment_scores: quality criteria per segment and their TOPSIS closeness score.

Runs on tables only (segments + transcripts), so changing weights re-scores in seconds and
never re-decodes or re-transcribes.
"""

import polars as pl
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetExecutionContext,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from audio_platform.defs.checks import Problem, verdict
from audio_platform.defs.metering import MeteringResource
from audio_platform.defs.partitions import shard_partitions
from audio_platform.defs.resources import CurationResource, PlatformStorage
from audio_platform.defs.transcription import TRANSCRIPTS_KEY
from audio_platform.observability.plots import chart_markdown, distributions_figure
from audio_platform.stages import score_shard
from audio_platform.storage.tables import SEGMENTS, TRANSCRIPTS

SEGMENT_SCORES = "segment_scores"


@asset(
    deps=[TRANSCRIPTS_KEY],
    partitions_def=shard_partitions,
    group_name="curation",
    kinds={"polars", "parquet"},
    description="Every quality criterion per segment and its TOPSIS closeness score in [0, 1] against "
    "fixed ideal/anti-ideal points (comparable across shards). Table: segment_scores.",
)
def segment_scores(
    context: AssetExecutionContext, storage: PlatformStorage, curation: CurationResource, metering: MeteringResource
) -> MaterializeResult:
    shard = context.partition_key
    meter = metering.start(context)
    segments, transcripts = storage.lake.read(SEGMENTS.name, shard), storage.lake.read(TRANSCRIPTS.name, shard)
    scores = score_shard(segments, transcripts, curation.criteria())
    storage.lake.write(SEGMENT_SCORES, shard, scores)
    plotted = [*(c.name for c in curation.criteria()), "topsis_score"]
    distributions_md = chart_markdown(
        lambda: distributions_figure(
            {name: scores[name].to_numpy() for name in plotted},
            title=f"criteria and TOPSIS score ({scores.height} segments)",
        ),
        "score distributions",
    )
    summary = scores.select(
        pl.col("topsis_score").mean().fill_null(0.0).alias("mean"),
        pl.col("topsis_score").median().fill_null(0.0).alias("median"),
    ).row(0, named=True)
    return MaterializeResult(
        metadata=meter.finish(
            storage.lake,
            {
                "mean_topsis_score": round(summary["mean"], 4),
                "median_topsis_score": round(summary["median"], 4),
                "criteria": MetadataValue.json(
                    {c.name: {"weight": c.weight, "benefit": c.benefit} for c in curation.criteria()}
                ),
                "score_distributions": MetadataValue.md(distributions_md),
            },
            segments=scores.height,
        )
    )


@asset_check(asset=segment_scores, partitions_def=shard_partitions, blocking=True)
def scores_in_unit_interval(context: AssetCheckExecutionContext, storage: PlatformStorage) -> AssetCheckResult:
    """Every segment is scored once and every TOPSIS score is a finite number in [0, 1]."""
    shard = context.partition_key
    scores = storage.lake.read(SEGMENT_SCORES, shard)
    segments = storage.lake.read(SEGMENTS.name, shard).height
    invalid = scores.filter(
        pl.col("topsis_score").is_null()
        | pl.col("topsis_score").is_nan()
        | ~pl.col("topsis_score").is_between(0.0, 1.0)
    ).height
    return verdict(
        [
            Problem("invalid_scores", invalid, "scores that are not a number in [0, 1]"),
            Problem("unscored", max(segments - scores.height, 0), "segments without a score"),
            Problem("extra_scores", max(scores.height - segments, 0), "scores beyond the shard's segments"),
        ],
        ok=f"each of {segments} segments scored in [0, 1]",
        metadata={"scored": scores.height, "segments": segments},
    )
