"""The public table contract (see docs/DESIGN): one polars schema per lake/warehouse table.

Assets write exactly these columns, so every shard's Parquet file has the same schema and
DuckDB can read the whole lake as one table even when a shard produced no rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl


@dataclass(frozen=True)
class Table:
    name: str
    grain: str
    schema: dict[str, pl.DataType]

    def empty(self) -> pl.DataFrame:
        return pl.DataFrame(schema=self.schema)

    def conform(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Select and cast to the contract's columns, in order; missing columns are an error."""
        missing = [c for c in self.schema if c not in frame.columns]
        if missing:
            raise ValueError(f"table {self.name}: missing columns {missing}")
        return frame.select([pl.col(c).cast(t) for c, t in self.schema.items()])


STR, F64, I64, BOOL = pl.String(), pl.Float64(), pl.Int64(), pl.Boolean()

SHARD_FILES = Table(
    "shard_files",
    "one input file assigned to a shard",
    {"shard": STR, "drop_id": STR, "drop_root": STR, "rel_path": STR, "source_path": STR, "position": I64},
)
AUDIO_FILES = Table(
    "audio_files",
    "one input file",
    {
        "file_id": STR,
        "shard": STR,
        "drop_id": STR,
        "source_path": STR,
        "rel_path": STR,
        "format": STR,
        "codec": STR,
        "sample_rate": I64,
        "channels": I64,
        "duration_s": F64,
        "bytes": I64,
        "status": STR,
        "reason": STR,
        "duplicate_of": STR,
    },
)
SEGMENTS = Table(
    "segments",
    "one speech span",
    {
        "segment_id": STR,
        "file_id": STR,
        "shard": STR,
        "start_s": F64,
        "end_s": F64,
        "duration_s": F64,
        "speech_prob": F64,
        "snr_db": F64,
        "clipping_ratio": F64,
        "loudness_dbfs": F64,
        "dc_offset": F64,
    },
)
TRANSCRIPTS = Table(
    "transcripts",
    "one segment's transcript",
    {
        "segment_id": STR,
        "file_id": STR,
        "shard": STR,
        "text": STR,
        "language": STR,
        "avg_logprob": F64,
        "no_speech_prob": F64,
        "compression_ratio": F64,
        "word_count": I64,
        "asr_model": STR,
    },
)
WORDS = Table(
    "words",
    "one recognized word",
    {
        "segment_id": STR,
        "file_id": STR,
        "shard": STR,
        "word_index": I64,
        "word": STR,
        "start_s": F64,
        "end_s": F64,
        "probability": F64,
    },
)
CURATED_SEGMENTS = Table(
    "curated_segments",
    "one selected segment",
    {
        "segment_id": STR,
        "file_id": STR,
        "shard": STR,
        "source_path": STR,
        "start_s": F64,
        "end_s": F64,
        "duration_s": F64,
        "text": STR,
        "language": STR,
        "topsis_score": F64,
    },
)
CURATION_DECISIONS = Table(
    "curation_decisions",
    "one segment's selection decision under the current policy",
    {"segment_id": STR, "shard": STR, "selected": BOOL, "rejection_reason": STR, "topsis_score": F64},
)

MODELS = Table(
    "models",
    "one registered model version (mirrored from the MLflow registry, one partition per keyword)",
    {
        "name": STR,
        "version": I64,
        "run_id": STR,
        "aliases": STR,
        "promotion_decision": STR,
        "promotion_reason": STR,
        "f1": F64,
        "precision": F64,
        "recall": F64,
        "false_reject_rate": F64,
        "false_accepts_per_hour": F64,
        "created_at": pl.Datetime("us", "UTC"),
    },
)

# segment_scores carries every configured criterion, so its schema is built from the criteria
# in use (see defs/scoring.py); the key columns are fixed.
SEGMENT_SCORES_KEYS: dict[str, pl.DataType] = {"segment_id": STR, "file_id": STR, "shard": STR, "topsis_score": F64}

LAKE_TABLES: tuple[Table, ...] = (
    SHARD_FILES,
    AUDIO_FILES,
    SEGMENTS,
    TRANSCRIPTS,
    WORDS,
    CURATED_SEGMENTS,
    CURATION_DECISIONS,
    MODELS,
)
