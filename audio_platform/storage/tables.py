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
    {
        "shard": STR,
        "drop_id": STR,
        "drop_root": STR,
        "rel_path": STR,
        "source_path": STR,
        "position": I64,
        "size": I64,
        "mtime_ns": I64,
        "inode": I64,
        "removed_at": STR,
        "registration_id": STR,
    },
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
FILE_METADATA = Table(
    "file_metadata",
    "one input file's row of the drop's metadata.csv / metadata.jsonl (audiofolder convention)",
    {
        "file_id": STR,
        "shard": STR,
        "drop_id": STR,
        "source_path": STR,
        "rel_path": STR,
        "metadata_file": STR,
        "reference_text": STR,
        "speaker": STR,
        "language": STR,
        "fields": STR,
        "reason": STR,
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
        "dnsmos_sig": F64,
        "dnsmos_bak": F64,
        "dnsmos_ovrl": F64,
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
        "language_probability": F64,
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

SEGMENT_FINGERPRINTS = Table(
    "segment_fingerprints",
    "one landmark hash of a segment's audio (audio/fingerprint.py), looked up for near-duplicates",
    {"segment_id": STR, "shard": STR, "hash": pl.UInt32(), "frame": pl.Int32()},
)
NEAR_DUPLICATES = Table(
    "near_duplicates",
    "one segment whose audio repeats an earlier segment's (re-encoded, resampled, trimmed or noisier copy)",
    {
        "segment_id": STR,
        "shard": STR,
        "near_duplicate_of": STR,
        "duplicate_shard": STR,
        "similarity": F64,
        "coverage": F64,
        "offset_s": F64,
        "matched_hashes": I64,
    },
)

ASR_EVALUATION = Table(
    "asr_evaluation",
    "one file's transcript scored against the drop's reference transcript (file_metadata)",
    {
        "file_id": STR,
        "shard": STR,
        "drop_id": STR,
        "rel_path": STR,
        "source_group": STR,
        "reference_text": STR,
        "hypothesis_text": STR,
        "reference_words": I64,
        "substitutions": I64,
        "deletions": I64,
        "insertions": I64,
        "word_errors": I64,
        "wer": F64,
        "reference_chars": I64,
        "char_errors": I64,
        "cer": F64,
        "asr_model": STR,
    },
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

STAGE_RUNS = Table(
    "stage_runs",
    "one stage's latest successful run for one partition (a shard, a keyword, or '' when unpartitioned)",
    {
        "stage": STR,
        "partition_key": STR,
        "run_id": STR,
        "started_at": pl.Datetime("us", "UTC"),
        "finished_at": pl.Datetime("us", "UTC"),
        "wall_s": F64,
        "cpu_s": F64,
        "gpu_s": F64,
        "device": STR,
        "audio_s": F64,
        "peak_rss_mb": F64,
        "files": I64,
        "segments": I64,
        # Items the stage set aside, by reason category (quarantined files, rejected segments).
        "failures_by_reason": pl.List(pl.Struct({"reason": STR, "count": I64})),
        "estimated_cost": F64,
    },
)

KEYWORD_CLIPS = Table(
    "keyword_clips",
    "one training or test clip cut for a keyword (one partition per keyword)",
    {
        "clip_id": STR,
        "keyword": STR,
        "source_path": STR,
        "file_id": STR,
        "shard": STR,
        "start_s": F64,
        "end_s": F64,
        "label": pl.Int8(),
        "kind": STR,
        "split": STR,
        "word": STR,
        "speaker": STR,
        "split_scheme": STR,
    },
)
KEYWORD_CANDIDATES = Table(
    "keyword_candidates",
    "one word considered for a keyword's clips, taken or not and why (one partition per keyword)",
    {
        "clip_id": STR,
        "keyword": STR,
        "kind": STR,
        "file_id": STR,
        "shard": STR,
        "source_path": STR,
        "segment_id": STR,
        "speaker": STR,
        "split": STR,
        "word": STR,
        "start_s": F64,
        "end_s": F64,
        "probability": F64,
        "snr_db": F64,
        "clipping_ratio": F64,
        "evidence": STR,
        "taken": pl.Boolean(),
        "reason": STR,
    },
)

# segment_scores carries every configured criterion, so its schema is built from the criteria
# in use (see defs/scoring.py); the key columns are fixed.
SEGMENT_SCORES_KEYS: dict[str, pl.DataType] = {"segment_id": STR, "file_id": STR, "shard": STR, "topsis_score": F64}
DROPS = Table(
    "drops",
    "one drop (folder) the platform has seen, by the CLI or in the inbox; partition key = drop_id",
    {
        "drop_id": STR,
        "drop_root": STR,
        "state": STR,
        "reason": STR,
        "files": I64,
        "shards": I64,
        "first_seen_at": STR,
        "updated_at": STR,
    },
)

# Not a lake table: one row inside the warehouse file, where it was built (see storage/warehouse.py).
WAREHOUSE_INFO = Table(
    "warehouse_info",
    "the warehouse file (one row)",
    {"home": STR, "lake": STR, "built_at": STR},
)

LAKE_TABLES: tuple[Table, ...] = (
    DROPS,
    SHARD_FILES,
    AUDIO_FILES,
    FILE_METADATA,
    SEGMENTS,
    TRANSCRIPTS,
    WORDS,
    CURATED_SEGMENTS,
    CURATION_DECISIONS,
    SEGMENT_FINGERPRINTS,
    NEAR_DUPLICATES,
    ASR_EVALUATION,
    MODELS,
    STAGE_RUNS,
)

# What each column means, for docs/tables.md (audio_platform/reference.py). A column name means
# the same in every table unless a "<table>.<column>" entry says otherwise; the generator fails on
# a column without an entry, so a new column cannot reach the docs undescribed.
COLUMN_DOCS: dict[str, str] = {
    "shard": "shard partition key, `<drop_id>-NNNN`",
    "drop_id": "the drop: its folder name as a slug plus 6 hex digits of the folder path's SHA-1",
    "drop_root": "absolute path of the drop folder",
    "rel_path": "path of the file inside the drop folder",
    "source_path": "absolute path of the source audio file (inputs are only ever read)",
    "position": "index of the file in its shard (a new shard holds new files sorted by `rel_path`)",
    "size": "file size in bytes when the drop was last registered",
    "mtime_ns": "file modification time (ns since the epoch) when the drop was last registered",
    "inode": "file inode when the drop was last registered (a replaced file gets a new one)",
    "removed_at": "when a registration found the file gone from the drop (UTC, ISO 8601); null while present",
    "registration_id": "changes whenever the shard's file list or a file in it changes: a run of `process_shard` "
    "tagged with it is up to date",
    "file_id": "SHA-256 of the source file's bytes; a duplicate has its owner's `file_id`",
    "format": "container found from the content (wav, flac, mp3, ogg, sph, ...); null if undecodable",
    "codec": "audio codec inside the container",
    "sample_rate": "native sample rate in Hz (processing decodes to 16 kHz mono)",
    "channels": "native channel count (processing downmixes to mono)",
    "duration_s": "seconds of audio: the whole decoded file in `audio_files`, the segment elsewhere",
    "bytes": "file size in bytes",
    "status": "`ok`, `quarantined`, `duplicate` or `removed` (gone from the drop folder since it was processed)",
    "reason": "why the file was quarantined, marked duplicate or removed; on an `ok` file, a note on an irregularity",
    "duplicate_of": "`source_path` of the first copy of the same content (status `duplicate` only)",
    "segment_id": "`<first 16 hex of file_id>-<start in ms>`: stable across runs and shards",
    "start_s": "start, in seconds from the start of the source file",
    "end_s": "end, in seconds from the start of the source file",
    "speech_prob": "mean Silero VAD speech probability over the segment",
    "snr_db": "estimated signal-to-noise ratio in dB (the quietest 10% of frames taken as noise)",
    "clipping_ratio": "fraction of samples at full scale (|x| >= 0.99)",
    "loudness_dbfs": "RMS level in dBFS after removing the DC offset",
    "dc_offset": "mean sample value",
    "dnsmos_sig": "DNSMOS P.835 speech-signal quality (1-5 scale; the mean over its 9.01-s windows, a segment "
    "shorter than one repeated to fill it)",
    "dnsmos_bak": "DNSMOS P.835 background-noise quality (5: no audible noise)",
    "dnsmos_ovrl": "DNSMOS P.835 overall quality (at most 3.93; clean read speech about 2.6-3.5, noise below 2)",
    "text": "the segment's transcript",
    "language": "language of the transcript (ISO 639-1)",
    "language_probability": "Whisper's probability of `language`, detected once per file from its speech; "
    "null where the language was configured, not detected",
    "avg_logprob": "mean token log-probability of the ASR decode (below -1 is a failed decode)",
    "no_speech_prob": "ASR probability that the segment holds no speech",
    "compression_ratio": "gzip compression ratio of the text (above 2.4 suggests repeated, hallucinated text)",
    "word_count": "words in the transcript",
    "asr_model": "the ASR model that wrote the transcript",
    "word_index": "position of the word in its segment, from 0",
    "word": "the word as the ASR wrote it",
    "probability": "ASR probability of the word",
    "speaking_rate": "words per second of segment",
    "speaking_rate_deviation": "octaves between `speaking_rate` and a natural 2.7 words/s",
    "loudness_deviation_db": "dB between `loudness_dbfs` and the -23 dBFS target",
    "duration_fitness": "1 for 2-15 s segments, falling linearly to 0 at 0 s and at 30 s",
    "repeated_ngram_ratio": "share of the transcript's word 3-grams (2-grams under 8 words) that repeat an earlier "
    "one, case and punctuation ignored; 0 under 4 words (above 0.5: a decoding loop)",
    "longest_word_chars": "characters of the transcript's longest word (letters, digits, apostrophes; scripts "
    "written without spaces left out)",
    "chars_per_second": "letters and digits of the transcript per second of segment",
    "filler_phrase": "the transcript is a stock ASR hallucination: only 'thank you', 'you' and the like, or it "
    "holds a credits formula ('thanks for watching', 'subtitles by')",
    "topsis_score": "TOPSIS closeness in [0, 1] to fixed ideal points, comparable across shards",
    "selected": "whether the segment is in `curated_segments`",
    "rejection_reason": "the first selection rule the segment failed; null when selected",
    "hash": "landmark hash: two spectral peaks' frequencies and time apart, packed in 32 bits",
    "frame": "16-ms frame of the hash's first peak, from the segment's start",
    "near_duplicate_of": "the earlier segment (by drop first seen, shard, file path, start) whose audio this one "
    "repeats",
    "duplicate_shard": "shard of `near_duplicate_of`",
    "similarity": "share of the smaller fingerprint's hashes that agree on one time offset (copies of 2-12 s clips "
    ">= 0.31, distinct clips <= 0.013 on the shared corpus)",
    "coverage": "share of this segment's own hashes that match (a long segment holding a short earlier clip covers "
    "little of itself and is not recorded below 0.15)",
    "offset_s": "where this segment's audio starts in the earlier one's, in seconds",
    "matched_hashes": "hashes that agree on that offset (at least 20 count as evidence)",
    "name": "registered model name, `kws-<keyword>`",
    "version": "registry version number",
    "models.run_id": "MLflow run that trained and logged the version",
    "aliases": "comma-separated registry aliases of the version (`champion`)",
    "promotion_decision": "`champion` or `challenger`: what the promotion gate decided for the version",
    "promotion_reason": "why the gate decided so",
    "f1": "F1 on the keyword's test split",
    "precision": "precision on the test split",
    "recall": "recall on the test split",
    "false_reject_rate": "share of test keyword clips missed",
    "false_accepts_per_hour": "detections per hour of keyword-free test audio",
    "created_at": "when the version was registered (UTC)",
    "stage": "the asset (stage) that ran",
    "partition_key": "the partition it ran for: a shard, a keyword, or '' when unpartitioned",
    "stage_runs.run_id": "Dagster run id",
    "started_at": "when the stage started (UTC)",
    "finished_at": "when the stage finished (UTC)",
    "wall_s": "wall-clock seconds",
    "cpu_s": "CPU seconds of the process",
    "gpu_s": "GPU seconds held (wall time of a stage on a CUDA device)",
    "device": "`cpu` or `cuda`",
    "audio_s": "seconds of audio the stage processed",
    "peak_rss_mb": "peak resident memory of the process in MB",
    "files": "files the stage handled",
    "segments": "segments the stage handled",
    "failures_by_reason": "items set aside (quarantined files, rejected segments) by reason category",
    "estimated_cost": "cost of the run at the configured CPU-hour and GPU-hour prices",
    "clip_id": "`<file_id>@<kind>@<start in ms>`, `<file_id>@stream`, or `noise-...`/`tts-...` for generated clips",
    "keyword": "the keyword the clip was cut for",
    "keyword_clips.source_path": "audio the clip is cut from; `noise://<color>` or `tts://<voice>?...` when generated",
    "keyword_clips.file_id": "`file_id` of the source recording; null for generated clips",
    "keyword_clips.shard": "shard of the source recording; null for generated clips",
    "label": "1 when the clip holds the keyword, else 0",
    "kind": "`positive`, `synthetic`, `negative_word`, `non_speech`, `noise` or `stream`",
    "split": "`train`, `validation` or `test`, assigned per source recording",
    "state": "`waiting` (an inbox drop not complete yet) or `registered` (its shards are planned; "
    "`audio-platform drops` adds how far processing got)",
    "drops.reason": "why it is waiting, or what the last registration found (new, changed, removed files)",
    "drops.files": "files of the drop at its last registration (removed ones included), or listed while waiting",
    "shards": "shards of the drop",
    "first_seen_at": "when the platform first saw the drop (UTC, ISO 8601)",
    "updated_at": "when this row was last written (UTC, ISO 8601)",
    "home": "the platform home the warehouse file was built in",
    "lake": "the lake its views read: a folder or an s3:// prefix",
    "built_at": "when the file was built (UTC, ISO 8601)",
    "keyword_clips.word": "the normalized word centred in the clip; null when the clip is not a word",
    "speaker": "the recording's speaker: the drop metadata's speaker, else the name the speaker pattern "
    "finds in the file name (e.g. `<speaker>_nohash_<n>.wav`), else the `file_id`",
    "source_group": "the group a file's accuracy is pooled in: its first folder(s) under the drop (the "
    "`asr_evaluation` asset's `source_group_depth`, default 1), `(drop root)` for files at the top",
    "asr_evaluation.reference_text": "the drop metadata's reference transcript of the file, as written",
    "hypothesis_text": "the file's transcripts joined in time order (empty when nothing was recognized)",
    "reference_words": "words of the normalized reference (see docs/tables.md, asr_evaluation)",
    "substitutions": "reference words replaced by another word in the best alignment",
    "deletions": "reference words missing from the transcript",
    "insertions": "transcript words with no reference word",
    "word_errors": "substitutions + deletions + insertions",
    "wer": "word_errors / reference_words (null for an empty reference)",
    "reference_chars": "characters of the normalized reference, spaces included",
    "char_errors": "character edits (Levenshtein) from the normalized reference to the normalized transcript",
    "cer": "char_errors / reference_chars (null for an empty reference)",
    "file_metadata.speaker": "the row's `speaker_id` (or `speaker`, `client_id`) column",
    "file_metadata.language": "the row's `language` (or `locale`, `lang`) column",
    "file_metadata.reason": "why the file has no usable row (no row, unreadable metadata file), or a note "
    "(undecodable bytes replaced); null when the row was read cleanly",
    "metadata_file": "the metadata file the row comes from, relative to the drop folder",
    "reference_text": "the row's `transcription` (or `text`, `sentence`, `transcript`) column: the reference "
    "transcript",
    "fields": "every column of the row but `file_name`, as a JSON object of strings",
    "split_scheme": "salt, fractions and speaker minimum that decided the splits; a rebuild under the same "
    "scheme keeps every earlier speaker in its split",
    "keyword_candidates.clip_id": "the clip the word would give (`<file_id>@<kind>@<clip start in ms>`)",
    "keyword_candidates.kind": "`positive` (an occurrence of the keyword) or `negative_word` (any other word)",
    "keyword_candidates.word": "the keyword, or the normalized other word",
    "keyword_candidates.start_s": "start of the word (of the first word of a multi-word keyword) in the file",
    "keyword_candidates.end_s": "end of the word (of the last word of a multi-word keyword) in the file",
    "keyword_candidates.probability": "ASR probability of the word (the least sure word of a multi-word keyword)",
    "keyword_candidates.snr_db": "SNR of the segment holding the word",
    "keyword_candidates.clipping_ratio": "clipping ratio of the segment holding the word",
    "taken": "whether the word became a clip of `keyword_clips`",
    "evidence": "`asr` (a word of the transcript) or `reference` (the drop metadata's transcript is the keyword "
    "alone; the clip is centred on the file's speech)",
    "keyword_candidates.reason": "the first keyword-selection rule the word failed; null when taken",
}
