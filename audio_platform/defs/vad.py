"""vad_segments: Silero VAD speech spans per file, with the acoustic criteria (DNSMOS included)
measured on them."""

import numpy as np
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

from audio_platform.audio.dnsmos import DnsmosScorer
from audio_platform.audio.inventory import OK
from audio_platform.audio.segments import segment_rows
from audio_platform.defs.ingest import IO_RETRY, raw_audio_files
from audio_platform.defs.metering import MeteringResource
from audio_platform.defs.partitions import shard_partitions
from audio_platform.defs.resources import PlatformStorage, VadResource
from audio_platform.observability.plots import chart_markdown, histogram_figure
from audio_platform.storage.tables import AUDIO_FILES, SEGMENTS

# The heavy model stages share one pool so that concurrent shard runs cannot oversubscribe cores.
MODEL_POOL = "audio_models"
# Segment boundaries are compared at millisecond resolution; rounding can move an end by <1 ms.
BOUNDS_TOLERANCE_S = 1e-3


@asset(
    deps=[raw_audio_files],
    partitions_def=shard_partitions,
    pool=MODEL_POOL,
    retry_policy=IO_RETRY,
    group_name="speech",
    kinds={"pytorch", "parquet"},
    description="Speech spans from Silero VAD (merged and split for ASR), with mean speech probability "
    "and acoustic criteria (SNR, clipping, loudness, DC offset, DNSMOS P.835 SIG/BAK/OVRL). Table: segments.",
)
def vad_segments(
    context: AssetExecutionContext, storage: PlatformStorage, vad: VadResource, metering: MeteringResource
) -> MaterializeResult:
    shard = context.partition_key
    files = storage.lake.read(AUDIO_FILES.name, shard).filter(pl.col("status") == OK)
    detector = vad.build()
    # DNSMOS runs in the same stage, one model at a time, so it gets the VAD's thread budget.
    dnsmos = DnsmosScorer(num_threads=vad.num_threads) if vad.dnsmos else None
    meter = metering.start(context)
    progress = meter.progress("VAD", files.height)
    rows: list[dict[str, object]] = []
    files_without_speech = 0
    for file_id, source_path in files.select("file_id", "source_path").iter_rows():
        audio = np.asarray(storage.load_audio(file_id, source_path))
        seconds = audio.size / 16000.0
        meter.audio_s += seconds
        spans = detector.detect(audio)
        if not spans:
            files_without_speech += 1
        rows.extend(segment_rows(file_id, shard, audio, spans, dnsmos))
        progress.advance(audio_s=seconds)
    frame = pl.DataFrame(rows, schema=SEGMENTS.schema)
    storage.lake.write_table(SEGMENTS, shard, frame)
    speech_s = float(frame["duration_s"].sum()) if frame.height else 0.0
    # 1-s bins up to the longest segment VAD may emit: the same axis on every shard.
    durations = chart_markdown(
        lambda: histogram_figure(
            frame["duration_s"].to_numpy(),
            np.arange(0.0, vad.max_segment_s + 1.0, 1.0),
            title="segment durations",
            xlabel="seconds",
        ),
        "segment durations",
    )
    return MaterializeResult(
        metadata=meter.finish(
            storage.lake,
            {
                "files_without_speech": files_without_speech,
                "speech_seconds": round(speech_s, 3),
                "speech_ratio": round(speech_s / meter.audio_s, 4) if meter.audio_s else 0.0,
                "segment_durations": MetadataValue.md(durations),
            },
            files=files.height,
            segments=frame.height,
        )
    )


@asset_check(asset=vad_segments, partitions_def=shard_partitions, blocking=True)
def segments_inside_files_and_disjoint(
    context: AssetCheckExecutionContext, storage: PlatformStorage
) -> AssetCheckResult:
    """Every segment lies inside its file, has positive length, belongs to an ok file, and no two
    segments of a file overlap."""
    shard = context.partition_key
    segments = storage.lake.read(SEGMENTS.name, shard)
    files = storage.lake.read(AUDIO_FILES.name, shard).filter(pl.col("status") == OK)
    joined = segments.join(files.select("file_id", "duration_s"), on="file_id", how="left", suffix="_file")
    orphans = joined.filter(pl.col("duration_s_file").is_null()).height
    outside = joined.filter(
        (pl.col("start_s") < 0)
        | (pl.col("end_s") <= pl.col("start_s"))
        | (pl.col("end_s") > pl.col("duration_s_file") + BOUNDS_TOLERANCE_S)
    ).height
    overlaps = (
        segments.sort("file_id", "start_s")
        .with_columns(pl.col("end_s").shift(1).over("file_id").alias("previous_end"))
        .filter(pl.col("start_s") < pl.col("previous_end") - BOUNDS_TOLERANCE_S)
        .height
    )
    bad_prob = segments.filter(~pl.col("speech_prob").is_between(0.0, 1.0)).height
    duplicate_ids = segments.height - segments["segment_id"].n_unique()
    return AssetCheckResult(
        passed=orphans == outside == overlaps == bad_prob == duplicate_ids == 0,
        metadata={
            "segments": segments.height,
            "orphans": orphans,
            "outside_file": outside,
            "overlaps": overlaps,
            "bad_speech_prob": bad_prob,
            "duplicate_ids": duplicate_ids,
        },
    )
