"""The per-shard stages as plain functions: frames in, frames out, the audio loader injected.

Each asset reads the lake, calls its stage here, writes the result and records metadata; the
benchmark (``benchmarks/pipeline_bench.py``) and the tests call the same functions, so what is
timed and tested is what ships. No Dagster import: this module is domain code.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence

import numpy as np
import polars as pl

from audio_platform.audio.asr import WhisperTranscriber
from audio_platform.curation.criteria import add_plausibility_criteria, add_text_criteria
from audio_platform.curation.selection import CurationPolicy, decide
from audio_platform.curation.topsis import Criterion, score_frame
from audio_platform.storage.tables import NEAR_DUPLICATES, SEGMENTS, TRANSCRIPTS, WORDS

# Files whose segments go to the ASR model together: bounds the audio held at once (cached audio
# is memory-mapped, but decoded windows are not) while short files still share packed windows.
FILES_PER_BATCH = 64
# Measured columns kept in segment_scores beside the criteria, when present.
_MEASURED = (
    "duration_s",
    "speech_prob",
    "snr_db",
    "clipping_ratio",
    "loudness_dbfs",
    "dc_offset",
    "dnsmos_sig",
    "dnsmos_bak",
    "dnsmos_ovrl",
    "avg_logprob",
    "no_speech_prob",
    "compression_ratio",
    "speaking_rate",
    "duration_fitness",
    "repeated_ngram_ratio",
    "longest_word_chars",
    "chars_per_second",
    "filler_phrase",
)


def _batches(items: list[pl.DataFrame], size: int) -> Iterator[list[pl.DataFrame]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def transcribe_shard(
    segments: pl.DataFrame,
    load_audio: Callable[[str], np.ndarray],
    transcriber: WhisperTranscriber,
    *,
    on_speech_done: Callable[[float], None] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``transcripts`` and ``words`` rows for ``segments`` (a shard's ``segments`` rows).

    Files are decoded in file_id order, ``FILES_PER_BATCH`` per call, so that many short files
    share packed 30-s windows. ``load_audio(file_id)`` gives a file's 16 kHz mono samples;
    ``on_speech_done(seconds)`` is called as decoding proceeds (live progress) with the seconds of
    segments (``end_s - start_s``) transcribed since the previous call: the calls add up to the
    segments' total duration."""
    transcript_rows: list[dict[str, object]] = []
    word_rows: list[dict[str, object]] = []
    groups = [group for _, group in segments.sort("file_id", "start_s").group_by(["file_id"], maintain_order=True)]
    for batch in _batches(groups, FILES_PER_BATCH):
        items = [
            (np.asarray(load_audio(group["file_id"][0])), list(group.select("start_s", "end_s").iter_rows()))
            for group in batch
        ]
        results_per_file = transcriber.transcribe_many(items, on_progress=on_speech_done)
        for group, results in zip(batch, results_per_file, strict=True):
            file_id, shard = group["file_id"][0], group["shard"][0]
            for seg_id, result in zip(group["segment_id"].to_list(), results, strict=True):
                transcript_rows.append(
                    {
                        "segment_id": seg_id,
                        "file_id": file_id,
                        "shard": shard,
                        "text": result.text,
                        "language": result.language,
                        "language_probability": result.language_probability,
                        "avg_logprob": result.avg_logprob,
                        "no_speech_prob": result.no_speech_prob,
                        "compression_ratio": result.compression_ratio,
                        "word_count": len(result.words),
                        "asr_model": transcriber.model_name,
                    }
                )
                word_rows.extend(
                    {
                        "segment_id": seg_id,
                        "file_id": file_id,
                        "shard": shard,
                        "word_index": index,
                        "word": word.word,
                        "start_s": word.start_s,
                        "end_s": word.end_s,
                        "probability": word.probability,
                    }
                    for index, word in enumerate(result.words)
                )
    return pl.DataFrame(transcript_rows, schema=TRANSCRIPTS.schema), pl.DataFrame(word_rows, schema=WORDS.schema)


def score_shard(segments: pl.DataFrame, transcripts: pl.DataFrame, criteria: Sequence[Criterion]) -> pl.DataFrame:
    """``segment_scores`` rows: every measured criterion per segment and its TOPSIS closeness.

    Segments written before a measurement existed (``dnsmos_*``) read it as null, so their shard
    re-scores (a weighted criterion is then at its anti-ideal, an unweighted one counts for nothing)."""
    missing = [c for c in SEGMENTS.schema if c not in segments.columns]
    segments = segments.with_columns(pl.lit(None, dtype=SEGMENTS.schema[c]).alias(c) for c in missing)
    joined = segments.join(transcripts.drop("file_id", "shard"), on="segment_id", how="left", validate="1:1")
    scored = score_frame(add_text_criteria(joined), criteria)
    measured = [c for c in _MEASURED if c in scored.columns]
    columns = [
        "segment_id",
        "file_id",
        "shard",
        *dict.fromkeys([*measured, *(c.name for c in criteria)]),
        "topsis_score",
    ]
    return scored.select(columns).with_columns(pl.col(pl.Float32).cast(pl.Float64))


def curate_shard(
    scores: pl.DataFrame,
    segments: pl.DataFrame,
    transcripts: pl.DataFrame,
    files: pl.DataFrame,
    policy: CurationPolicy,
    near_duplicates: pl.DataFrame | None = None,
    curated_elsewhere: Collection[str] = (),
) -> pl.DataFrame:
    """``curation_decisions`` rows (the curated set is those with ``selected``): every scored
    segment of an ``ok`` file of ``files`` (a shard's ``audio_files`` rows) decided by ``policy``.

    The text-plausibility columns the policy reads are computed here from the transcript and the
    segment, not read from ``scores``: a ``segment_scores`` shard written before they existed
    still curates. ``dnsmos_ovrl`` comes from ``segments``; a shard whose segments predate it reads
    null there, which the policy's DNSMOS floor, when on, rejects as ``dnsmos_ovrl missing``.
    ``language_probability`` comes from ``transcripts``; where they predate it, it reads null: not
    measured, which the language-probability floor lets pass.

    ``near_duplicates`` (the shard's rows of that table) links a segment to the earlier copy it
    repeats; None: the shard was never looked up (processed before the lookup existed). A repeat
    is rejected only while its earlier copy is curated: in this shard, by every other rule; in
    another, when it is in ``curated_elsewhere`` (that shard's curated segment ids). So a copy is
    never lost to one that was rejected itself, or that is gone since (its shard re-ran)."""
    dnsmos_ovrl = _float_or_null(segments, "dnsmos_ovrl")
    language_probability = _float_or_null(transcripts, "language_probability")
    candidates = (
        scores.select("segment_id", "shard", "topsis_score", "clipping_ratio")
        .join(
            segments.select("segment_id", "file_id", "start_s", "end_s", "duration_s", dnsmos_ovrl),
            on="segment_id",
            validate="1:1",
        )
        .join(
            transcripts.select(
                "segment_id", "text", "language", language_probability, "no_speech_prob", "compression_ratio"
            ),
            on="segment_id",
            validate="1:1",
        )
        .join(
            files.filter(pl.col("status") == "ok").select("file_id", "source_path"),
            on="file_id",
            validate="m:1",
        )
    )
    candidates = add_plausibility_criteria(candidates)
    no_copies = pl.lit(None, dtype=pl.String).alias("near_duplicate_of")
    others = decide(candidates.with_columns(no_copies, near_duplicate_similarity=pl.lit(None, pl.Float64)), policy)
    curated_first = {*others.filter(pl.col("selected"))["segment_id"].to_list(), *curated_elsewhere}
    copies = (
        (NEAR_DUPLICATES.empty() if near_duplicates is None else near_duplicates)
        .filter(pl.col("near_duplicate_of").is_in(list(curated_first)))
        .select("segment_id", "near_duplicate_of", near_duplicate_similarity=pl.col("similarity"))
    )
    return decide(candidates.join(copies, on="segment_id", how="left", validate="1:1"), policy)


def _float_or_null(frame: pl.DataFrame, column: str) -> pl.Expr:
    """``column`` as a double, or null where ``frame`` was written before the column existed."""
    if column in frame.columns:
        return pl.col(column).cast(pl.Float64)
    return pl.lit(None, dtype=pl.Float64).alias(column)
