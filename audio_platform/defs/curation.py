"""curated_segments: the selection under the configured policy, with a reason for every rejection."""

from collections import Counter

import polars as pl
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    MaterializeResult,
    asset,
    asset_check,
)

from audio_platform.curation.selection import REJECTION_RULES, rejection_rule
from audio_platform.defs.checks import Problem, verdict
from audio_platform.defs.metering import MeteringResource
from audio_platform.defs.near_duplicates import near_duplicates
from audio_platform.defs.partitions import shard_partitions
from audio_platform.defs.resources import CurationResource, PlatformStorage
from audio_platform.defs.scoring import SEGMENT_SCORES, segment_scores
from audio_platform.stages import curate_shard
from audio_platform.storage.tables import (
    AUDIO_FILES,
    CURATED_SEGMENTS,
    CURATION_DECISIONS,
    NEAR_DUPLICATES,
    SEGMENTS,
    TRANSCRIPTS,
)


@asset(
    deps=[segment_scores, near_duplicates],
    partitions_def=shard_partitions,
    group_name="curation",
    kinds={"polars", "parquet"},
    description="Segments selected by the curation policy (score floor, duration bounds, language, "
    "no-speech and compression ceilings, hallucination rules: filler phrases, repeated n-grams, overlong "
    "words, characters per second; near-duplicates of earlier segments). "
    "Tables: curated_segments, curation_decisions (every segment with "
    "selected / rejection_reason).",
)
def curated_segments(
    context: AssetExecutionContext, storage: PlatformStorage, curation: CurationResource, metering: MeteringResource
) -> MaterializeResult:
    shard = context.partition_key
    lake = storage.lake
    meter = metering.start(context)
    copies = lake.read_many(NEAR_DUPLICATES.name, [shard])
    # The earlier copies' shards as they are now: a repeat is rejected only while its copy is curated.
    elsewhere = [] if copies is None else sorted(set(copies["duplicate_shard"].to_list()) - {shard})
    curated_there = lake.read_many(CURATED_SEGMENTS.name, elsewhere) if elsewhere else None
    curated_elsewhere = [] if curated_there is None else curated_there["segment_id"].to_list()
    decisions = curate_shard(
        lake.read(SEGMENT_SCORES, shard),
        lake.read(SEGMENTS.name, shard),
        lake.read(TRANSCRIPTS.name, shard),
        lake.read(AUDIO_FILES.name, shard),
        curation.policy(),
        copies,
        curated_elsewhere,
    )
    curated = decisions.filter(pl.col("selected"))
    lake.write_table(CURATED_SEGMENTS, shard, curated)
    lake.write_table(CURATION_DECISIONS, shard, decisions)
    rules = _rejections(decisions)
    return MaterializeResult(
        metadata=meter.finish(
            lake,
            {
                "curated": curated.height,
                "curated_seconds": round(float(curated["duration_s"].sum()), 3) if curated.height else 0.0,
                "yield_ratio": round(curated.height / decisions.height, 4) if decisions.height else 0.0,
            },
            segments=decisions.height,
            failures={rule: rules[rule] for rule in REJECTION_RULES},
            failure_label="rejected",
        )
    )


def _rejections(decisions: pl.DataFrame) -> Counter[str]:
    """How many of a shard's decisions each rule rejected (a rejection without a reason is
    every_segment_has_a_decision's to report)."""
    rejected = decisions.filter(~pl.col("selected"))["rejection_reason"].drop_nulls()
    return Counter(rejection_rule(reason) for reason in rejected)


@asset_check(asset=curated_segments, partitions_def=shard_partitions, blocking=True)
def every_segment_has_a_decision(context: AssetCheckExecutionContext, storage: PlatformStorage) -> AssetCheckResult:
    """Conservation: no segment leaves the pipeline silently; each is selected or carries a reason."""
    shard = context.partition_key
    decisions = storage.lake.read(CURATION_DECISIONS.name, shard)
    segment_ids = set(storage.lake.read(SEGMENTS.name, shard)["segment_id"].to_list())
    unexplained = decisions.filter(~pl.col("selected") & pl.col("rejection_reason").is_null()).height
    decided = set(decisions["segment_id"].to_list())
    return verdict(
        [
            Problem("undecided", len(segment_ids - decided), "segments without a decision"),
            Problem("unknown", len(decided - segment_ids), "decisions for segments the shard does not have"),
            Problem("repeated", decisions.height - len(decided), "repeated decisions"),
            Problem("unexplained", unexplained, "rejections without a reason"),
        ],
        ok=f"each of {len(segment_ids)} segments selected or rejected with a reason",
        metadata={"segments": len(segment_ids), "decided": decisions.height},
    )


@asset_check(asset=curated_segments, partitions_def=shard_partitions)
def curated_set_not_empty(context: AssetCheckExecutionContext, storage: PlatformStorage) -> AssetCheckResult:
    """Warns (does not block) when a shard yields nothing: legitimate for a noise-only shard or a
    drop of one-word keyword clips (shorter than the ASR policy's duration floor; keyword datasets
    select their own), but a signal that a policy or a model is off when it happens to speech
    shards. The warning says which rules rejected the shard's segments."""
    curated = storage.lake.read(CURATED_SEGMENTS.name, context.partition_key).height
    rules = _rejections(storage.lake.read(CURATION_DECISIONS.name, context.partition_key))
    if curated:
        description = f"{curated} segments curated"
    elif rules:
        counts = ", ".join(f"{rule} {count}" for rule, count in rules.most_common())
        description = f"no segment of this shard was curated; rejected by rule: {counts}"
    else:
        description = "no segment of this shard was curated (it has no speech segment)"
    return AssetCheckResult(
        passed=curated > 0,
        severity=AssetCheckSeverity.WARN,
        description=description,
        metadata={"curated": curated, **{f"rejected_{rule}": rules[rule] for rule in REJECTION_RULES}},
    )
