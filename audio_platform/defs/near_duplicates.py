"""near_duplicates: each segment's audio fingerprinted and looked up against every earlier segment,
in every shard and drop (domain code: audio_platform/curation/near_duplicates.py)."""

import polars as pl
from dagster import AssetExecutionContext, MaterializeResult, asset

from audio_platform.audio.fingerprint import NEAR_DUPLICATE_MIN_SCORE
from audio_platform.curation.near_duplicates import (
    FINGERPRINT_SCHEMA,
    find_near_duplicates,
    fingerprint_segments,
    postings_for,
    segment_order,
)
from audio_platform.defs.ingest import IO_RETRY
from audio_platform.defs.metering import MeteringResource
from audio_platform.defs.partitions import shard_partitions
from audio_platform.defs.resources import PlatformStorage
from audio_platform.defs.vad import vad_segments
from audio_platform.storage.tables import AUDIO_FILES, DROPS, NEAR_DUPLICATES, SEGMENT_FINGERPRINTS, SEGMENTS


@asset(
    deps=[vad_segments],
    partitions_def=shard_partitions,
    retry_policy=IO_RETRY,
    group_name="curation",
    kinds={"numpy", "parquet"},
    description="Landmark fingerprint of every segment's audio (table segment_fingerprints), looked up "
    "against every earlier segment of every drop: a re-encoded, resampled, trimmed or noisier copy is "
    "linked to the first copy (table near_duplicates: near_duplicate_of, similarity, offset_s), and the "
    "curation policy rejects it.",
)
def near_duplicates(
    context: AssetExecutionContext, storage: PlatformStorage, metering: MeteringResource
) -> MaterializeResult:
    shard = context.partition_key
    lake = storage.lake
    meter = metering.start(context)
    segments = lake.read(SEGMENTS.name, shard)
    # A segment id names its audio (file content, span): hashes stored for it stay valid, so a
    # re-score fingerprints only new segments and needs no audio for the rest.
    stored = lake.read_many(SEGMENT_FINGERPRINTS.name, [shard])
    kept = pl.DataFrame(schema=FINGERPRINT_SCHEMA) if stored is None else stored.select(*FINGERPRINT_SCHEMA)
    kept = kept.filter(pl.col("segment_id").is_in(segments["segment_id"].to_list()))
    new = segments.filter(~pl.col("segment_id").is_in(kept["segment_id"].unique().to_list()))
    prints = pl.concat([kept, fingerprint_segments(new, lake.read(AUDIO_FILES.name, shard), storage.load_audio)])
    meter.audio_s += float(new["duration_s"].sum()) if new.height else 0.0
    # Written before the others are read: a shard running at the same time then sees this one.
    lake.write_table(SEGMENT_FINGERPRINTS, shard, prints.with_columns(shard=pl.lit(shard)))
    # Only stored segments that share a hash with this shard can match: the lookup reads the
    # store one shard at a time and keeps those postings (memory: this shard, not the store).
    query_hashes = prints["hash"].unique()
    postings = pl.concat(lake.read_each(SEGMENT_FINGERPRINTS.name, lambda rows: postings_for(rows, query_hashes)))
    candidates = lake.read_where(SEGMENTS, pl.col("segment_id").is_in(postings["segment_id"].unique().implode()))
    files = lake.read_where(AUDIO_FILES, pl.col("file_id").is_in(candidates["file_id"].unique().implode()))
    order = segment_order(candidates, files, lake.read_all(DROPS))
    found = find_near_duplicates(prints, postings, order, NEAR_DUPLICATE_MIN_SCORE)
    lake.write_table(NEAR_DUPLICATES, shard, found.with_columns(shard=pl.lit(shard)))
    return MaterializeResult(
        metadata=meter.finish(
            lake,
            {
                "hashes": prints.height,
                "fingerprinted_segments": new.height,
                "near_duplicates": found.height,
                "near_duplicates_in_other_shards": int((found["duplicate_shard"] != shard).sum()),
                "candidate_segments": order.height,
            },
            segments=segments.height,
        )
    )
