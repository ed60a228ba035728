"""transcripts + words: faster-whisper over each file's VAD segments (packed, batched)."""

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import polars as pl
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    MaterializeResult,
    asset_check,
    multi_asset,
)

from audio_platform.audio.inventory import OK
from audio_platform.defs.checks import Problem, verdict
from audio_platform.defs.ingest import IO_RETRY
from audio_platform.defs.metering import MeteringResource
from audio_platform.defs.partitions import shard_partitions
from audio_platform.defs.resources import AsrResource, PlatformStorage
from audio_platform.defs.vad import MODEL_POOL, vad_segments
from audio_platform.stages import transcribe_shard
from audio_platform.storage.tables import AUDIO_FILES, SEGMENTS, TRANSCRIPTS, WORDS

TRANSCRIPTS_KEY = AssetKey("transcripts")
WORDS_KEY = AssetKey("words")


# The op of build_transcription_asset; its name is the stage name in metering (stage_runs, metrics).
def transcribe_segments(
    context: AssetExecutionContext, storage: PlatformStorage, asr: AsrResource, metering: MeteringResource
) -> Iterator[MaterializeResult]:
    shard = context.partition_key
    segments = storage.lake.read(SEGMENTS.name, shard)
    files = storage.lake.read(AUDIO_FILES.name, shard).filter(pl.col("status") == OK).select("file_id", "source_path")
    transcriber = asr.build()
    meter = metering.start(context)
    meter.device = transcriber.device
    source_of = dict(files.iter_rows())
    speech_s = float(segments["duration_s"].sum())
    # Counted in seconds of speech, which advance as windows are decoded (files finish in batches).
    progress = meter.progress("ASR", speech_s, unit="s of speech")

    def speech_done(seconds: float) -> None:
        progress.advance(seconds, audio_s=seconds)

    transcripts, words = transcribe_shard(
        segments,
        lambda file_id: np.asarray(storage.load_audio(file_id, source_of[file_id])),
        transcriber,
        on_speech_done=speech_done,
    )
    meter.audio_s += speech_s
    storage.lake.write_table(TRANSCRIPTS, shard, transcripts)
    storage.lake.write_table(WORDS, shard, words)
    empty = transcripts.filter(pl.col("text").str.strip_chars() == "").height
    # One step writes both tables: both carry its measurements (stage_runs has the one row).
    metadata = meter.finish(
        storage.lake,
        {
            "words": words.height,
            "empty_transcripts": empty,
            "asr_model": transcriber.model_name,
            "device": transcriber.device,
        },
        files=segments["file_id"].n_unique(),
        segments=transcripts.height,
    )
    yield MaterializeResult(asset_key=TRANSCRIPTS_KEY, metadata=metadata)
    yield MaterializeResult(asset_key=WORDS_KEY, metadata=metadata)


def build_transcription_asset(pool: str = MODEL_POOL, op_tags: Mapping[str, Any] | None = None) -> AssetsDefinition:
    """The `transcripts`/`words` multi-asset (op `transcribe_segments`) in Dagster pool ``pool``, with
    ``op_tags`` on its step: build_definitions passes AUDIO_PLATFORM_ASR_POOL and the
    `dagster-k8s/config` tag from AUDIO_PLATFORM_ASR_K8S_CONFIG (k8s_job_executor: the step's own pod)."""
    return multi_asset(
        specs=[
            AssetSpec(
                TRANSCRIPTS_KEY,
                deps=[vad_segments],
                group_name="speech",
                kinds={"python", "parquet"},
                description="One row per segment: text, language (and its probability where it was "
                "detected), avg_logprob, no_speech_prob, compression_ratio, ASR model. Table: transcripts.",
            ),
            AssetSpec(
                WORDS_KEY,
                deps=[vad_segments],
                group_name="speech",
                kinds={"python", "parquet"},
                description="One row per recognized word with start/end in file time and probability. Table: words.",
            ),
        ],
        partitions_def=shard_partitions,
        pool=pool,
        op_tags=dict(op_tags) if op_tags else None,
        retry_policy=IO_RETRY,
    )(transcribe_segments)


@asset_check(asset=TRANSCRIPTS_KEY, partitions_def=shard_partitions, blocking=True)
def every_segment_transcribed(context: AssetCheckExecutionContext, storage: PlatformStorage) -> AssetCheckResult:
    """Each segment has exactly one transcript row (empty text is an explicit 'no speech recognized')."""
    shard = context.partition_key
    segment_ids = set(storage.lake.read(SEGMENTS.name, shard)["segment_id"].to_list())
    transcripts = storage.lake.read(TRANSCRIPTS.name, shard)
    transcribed = transcripts["segment_id"].to_list()
    missing = segment_ids - set(transcribed)
    extra = set(transcribed) - segment_ids
    repeated = len(transcribed) - len(set(transcribed))
    return verdict(
        [
            Problem("missing", len(missing), "segments without a transcript"),
            Problem("unknown", len(extra), "transcripts of segments the shard does not have"),
            Problem("repeated", repeated, "segments transcribed more than once"),
        ],
        ok=f"each of {len(segment_ids)} segments transcribed once",
        metadata={"segments": len(segment_ids)},
    )


@asset_check(asset=WORDS_KEY, partitions_def=shard_partitions)
def timestamps_inside_segments(context: AssetCheckExecutionContext, storage: PlatformStorage) -> AssetCheckResult:
    """Word timestamps fall inside their segment (with 0.25 s slack for Whisper's alignment)."""
    shard = context.partition_key
    segments = storage.lake.read(SEGMENTS.name, shard).select("segment_id", "start_s", "end_s")
    words = storage.lake.read(WORDS.name, shard)
    joined = words.join(segments, on="segment_id", how="left", suffix="_segment")
    outside = joined.filter(
        pl.col("start_s_segment").is_null()
        | (pl.col("start_s") < pl.col("start_s_segment") - 0.25)
        | (pl.col("end_s") > pl.col("end_s_segment") + 0.25)
        | (pl.col("end_s") < pl.col("start_s"))
    ).height
    return verdict(
        [Problem("outside_segment", outside, "words outside their segment (0.25 s slack) or ending before they start")],
        ok=f"all {words.height} words inside their segments",
        metadata={"words": words.height},
    )
