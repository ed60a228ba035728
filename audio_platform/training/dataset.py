"""Keyword-spotting dataset: a manifest of fixed-length clips cut from the platform tables.

The manifest (one row per clip: where it comes from, its label, kind and split) is the
dataset's durable form. It is stored as Parquet and turned back into waveforms with
``load_keyword_dataset``. Clip kinds:

* ``positive``: the keyword, found in ``words`` of curated segments, centred in the clip.
* ``synthetic``: the keyword spoken by a TTS callable (train split only).
* ``negative_word``: another curated word, centred, never overlapping a keyword occurrence.
* ``non_speech``: windows of audio away from every VAD speech segment (whole speech-free files
  included).
* ``noise``: generated white/pink/brown noise, reproducible from the clip id.
* ``stream``: a whole test-split file without the keyword, for false accepts per hour.

Splits are assigned per recording group (``DatasetConfig.group_column``, e.g. a speaker, else
the file) by a salted hash. A recording therefore never appears in two splits, and a file keeps
its split when new data arrives, so test sets of successive builds stay comparable.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

import numpy as np
import polars as pl

from audio_platform.audio.decode import decode_mono_16k
from audio_platform.audio.dsp import SAMPLE_RATE, colored_noise, dbfs_gain, resample
from audio_platform.evaluation.wer import cardinal_words
from audio_platform.storage.tables import KEYWORD_CLIPS
from audio_platform.training.config import DatasetConfig

SPLITS = ("train", "validation", "test")
CLIP_KINDS = ("positive", "synthetic", "negative_word", "non_speech", "noise")
STREAM = "stream"
NOISE_COLORS = {"white": 0.0, "pink": 1.0, "brown": 2.0}  # spectral slope exponent

# The manifest is the lake's keyword_clips table.
MANIFEST_SCHEMA: dict[str, pl.DataType] = KEYWORD_CLIPS.schema

# Whisper writes numbers as digits; the ones that are a single spoken word can still match.
# One spoken word each: 0–20 and the round tens (cardinal_words gives the spelling).
_NUMBER_MAP = {str(n): cardinal_words(n) for n in [*range(21), *range(30, 100, 10)]}

TtsFn = Callable[[str, str, int, int], tuple[np.ndarray, int]]


def normalize_word(word: str) -> str:
    """Lower-case, drop punctuation, spell out one-word numbers ('Six,' and '6' -> 'six')."""
    token = re.sub(r"[^\w']", "", word.lower()).strip("'")
    return _NUMBER_MAP.get(token, token)


def _normalized(column: str) -> pl.Expr:
    # The polars twin of normalize_word, so millions of words never pass through Python.
    return pl.col(column).str.to_lowercase().str.replace_all(r"[^\w']", "").str.strip_chars("'").replace(_NUMBER_MAP)


def unit_hash(values: pl.Series, salt: str) -> pl.Series:
    """A value's stable position in [0, 1): blake2b of salt and value (polars hashes vary by version)."""
    positions = {
        value: int.from_bytes(hashlib.blake2b(f"{salt}\0{value}".encode(), digest_size=8).digest(), "big") / 2**64
        for value in values.unique().to_list()
    }
    return values.replace_strict(positions, return_dtype=pl.Float64)


def assign_splits(groups: pl.Series, config: DatasetConfig) -> pl.Series:
    """train / validation / test for each recording group, by salted hash."""
    position = unit_hash(groups, config.split_salt)
    return (
        pl.select(
            pl.when(position < config.test_fraction)
            .then(pl.lit("test"))
            .when(position < config.test_fraction + config.val_fraction)
            .then(pl.lit("validation"))
            .otherwise(pl.lit("train"))
        )
        .to_series()
        .alias("split")
    )


def _require_columns(frame: pl.DataFrame, name: str, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks columns {missing}; it has {frame.columns}")


def _centred_start(centre: pl.Expr, clip_s: float) -> pl.Expr:
    # Centred on the word, then moved inside the file where possible (short files are zero-padded).
    latest = pl.max_horizontal(pl.col("duration_s") - clip_s, pl.lit(0.0))
    return pl.max_horizontal(pl.min_horizontal(centre - clip_s / 2, latest), pl.lit(0.0))


def _with_clip_id(frame: pl.DataFrame, kind: str) -> pl.DataFrame:
    millis = (pl.col("start_s") * 1000).round().cast(pl.Int64).cast(pl.String)
    return frame.with_columns(clip_id=pl.concat_str(pl.col("file_id"), pl.lit(f"@{kind}@"), millis))


def _keyword_occurrences(words: pl.DataFrame, tokens: list[str]) -> pl.DataFrame:
    """Runs of consecutive words in one segment that spell the (possibly multi-word) keyword."""
    ordered = words.sort("segment_id", "word_index")
    match = pl.col("norm") == tokens[0]
    for offset, token in enumerate(tokens[1:], start=1):
        match = match & (pl.col("norm").shift(-offset).over("segment_id") == token)
    last_end = pl.col("end_s").shift(1 - len(tokens)).over("segment_id")
    return ordered.with_columns(end_s=last_end).filter(match)


def _overlapping(windows: pl.DataFrame, spans: pl.DataFrame, clip_s: float) -> pl.DataFrame:
    """Rows of ``windows`` whose clip overlaps any span of the same file."""
    pairs = windows.select("clip_id", "file_id", "start_s").join(
        spans.select("file_id", span_start="start_s", span_end="end_s"), on="file_id"
    )
    hits = pairs.filter((pl.col("start_s") < pl.col("span_end")) & (pl.col("span_start") < pl.col("start_s") + clip_s))
    return windows.join(hits.select("clip_id").unique(), on="clip_id", how="semi")


# Sampling order for capped clip sets: polars' own hash is deterministic for a given polars
# version, and unlike unit_hash never loops over (possibly millions of) clips in Python. The
# stored manifest, not a rebuild, is what keeps a dataset fixed across upgrades.
_SHUFFLED = pl.col("clip_id").hash(seed=0)


def _capped(frame: pl.DataFrame, limit: int, first: pl.Expr | None = None) -> pl.DataFrame:
    """At most ``limit`` rows: those with ``first`` true, then in a fixed pseudo-random order."""
    keys = [_SHUFFLED] if first is None else [first.not_(), _SHUFFLED]
    return frame.sort(keys).head(limit)


def _speech_free_windows(files: pl.DataFrame, segments: pl.DataFrame, config: DatasetConfig) -> pl.DataFrame:
    margin, clip_s = config.speech_margin_s, config.clip_s
    spans = (
        segments.join(files.select("file_id"), on="file_id")
        .select("file_id", s=pl.col("start_s") - margin, e=pl.col("end_s") + margin)
        .sort("file_id", "s")
    )
    # Gaps before each speech span (after every earlier span), after the last, and whole files.
    before = spans.select(
        "file_id", gap_start=pl.col("e").cum_max().shift(1).over("file_id").fill_null(0.0), gap_end="s"
    )
    after = spans.group_by("file_id").agg(gap_start=pl.col("e").max(), gap_end=pl.lit(float("inf")))
    silent = files.join(spans, on="file_id", how="anti").select(
        "file_id", gap_start=pl.lit(0.0), gap_end=pl.lit(float("inf"))
    )
    gaps = (
        pl.concat([before, after, silent])
        .join(files, on="file_id")
        .with_columns(
            gap_start=pl.col("gap_start").clip(lower_bound=0.0),
            gap_end=pl.min_horizontal("gap_end", "duration_s"),
        )
        .with_columns(n=((pl.col("gap_end") - pl.col("gap_start")) / clip_s).floor().cast(pl.Int64))
        .filter(pl.col("n") >= 1)
    )
    windows = (
        gaps.with_columns(k=pl.int_ranges(0, pl.min_horizontal("n", pl.lit(config.non_speech_windows_per_file))))
        .explode("k")
        .with_columns(start_s=pl.col("gap_start") + pl.col("k") * clip_s)
        .pipe(_with_clip_id, "non_speech")
    )
    # Spread each file's quota over all its gaps instead of filling it from the first one.
    per_file = windows.sort(_SHUFFLED).filter(
        pl.int_range(pl.len()).over("file_id") < config.non_speech_windows_per_file
    )
    return _capped(per_file, config.max_non_speech_clips)


def build_keyword_manifest(
    words: pl.DataFrame,
    segments: pl.DataFrame,
    curated_segments: pl.DataFrame,
    audio_files: pl.DataFrame,
    config: DatasetConfig,
) -> pl.DataFrame:
    """The clip manifest for ``config.keyword`` (schema ``MANIFEST_SCHEMA``); see the module docstring.

    ``words`` must cover every transcribed segment, not only curated ones: a keyword spoken in
    a rejected segment still keeps negatives and false-accept streams away from that audio.
    """
    _require_columns(words, "words", ("segment_id", "word_index", "word", "start_s", "end_s"))
    _require_columns(segments, "segments", ("segment_id", "file_id", "start_s", "end_s"))
    _require_columns(curated_segments, "curated_segments", ("segment_id",))
    _require_columns(audio_files, "audio_files", ("file_id", "shard", "source_path", "status", "duration_s"))
    if config.group_column not in audio_files.columns:
        raise ValueError(f"group_column {config.group_column!r} is not an audio_files column")
    tokens = [normalize_word(t) for t in config.keyword.split()]
    clip_s = config.clip_s

    files = (
        audio_files.filter((pl.col("status") == "ok") & pl.col("duration_s").is_not_null())
        .select(
            "file_id",
            "shard",
            "source_path",
            pl.col("duration_s").cast(pl.Float64),
            group=pl.coalesce(pl.col(config.group_column).cast(pl.String), pl.col("file_id")),
        )
        .unique("file_id", keep="first")
    )
    files = files.with_columns(assign_splits(files["group"], config))
    curated = curated_segments.select("segment_id").unique()
    all_words = (
        words.select("segment_id", "word_index", "word", "start_s", "end_s")
        .join(segments.select("segment_id", "file_id"), on="segment_id")
        .join(files.select("file_id", "duration_s"), on="file_id")
        .with_columns(norm=_normalized("word"))
    )

    occurrences = _keyword_occurrences(all_words, tokens)
    # Digits that are not one number word ('1964') may hide the keyword: keep clear of them too.
    unsure = all_words.filter(pl.col("norm").str.contains(r"\d"))
    forbidden = pl.concat(
        [occurrences.select("file_id", "start_s", "end_s"), unsure.select("file_id", "start_s", "end_s")]
    )

    positives = (
        occurrences.join(curated, on="segment_id")
        .filter(pl.col("end_s") - pl.col("start_s") + 2 * config.min_context_s <= clip_s)
        .with_columns(
            start_s=_centred_start((pl.col("start_s") + pl.col("end_s")) / 2, clip_s),
            word=pl.lit(config.keyword),
        )
        .pipe(_with_clip_id, "positive")
        .with_columns(label=pl.lit(1), kind=pl.lit("positive"))
    )

    candidates = (
        all_words.join(curated, on="segment_id")
        .filter((pl.col("norm") != "") & ~pl.col("norm").str.contains(r"\d"))
        .with_columns(start_s=_centred_start((pl.col("start_s") + pl.col("end_s")) / 2, clip_s), word="norm")
        .pipe(_with_clip_id, "negative_word")
        .unique("clip_id", keep="first")
    )
    candidates = candidates.join(
        _overlapping(candidates, forbidden, clip_s).select("clip_id"), on="clip_id", how="anti"
    )
    # Words that contain a keyword token ('sixty', 'sixteen') are the hard negatives: keep them first.
    confusable = pl.any_horizontal([pl.col("norm").str.contains(t, literal=True) for t in tokens])
    negative_words = _capped(candidates, config.max_negative_words, first=confusable).with_columns(
        label=pl.lit(0), kind=pl.lit("negative_word")
    )

    non_speech = _speech_free_windows(files, segments, config).with_columns(
        label=pl.lit(0), kind=pl.lit("non_speech"), word=pl.lit(None)
    )

    from_files = pl.concat(
        [
            frame.select("clip_id", "file_id", "start_s", "label", "kind", "word")
            for frame in (positives, negative_words, non_speech)
        ],
        how="vertical_relaxed",
    ).join(files.select("file_id", "shard", "source_path", "split"), on="file_id")

    streams = (
        files.filter(pl.col("split") == "test")
        .join(forbidden, on="file_id", how="anti")
        .filter(pl.col("duration_s") > 0)
        .select(
            "file_id",
            "shard",
            "source_path",
            "split",
            clip_id=pl.col("file_id") + "@stream",
            start_s=pl.lit(0.0),
            end_s="duration_s",
            label=pl.lit(0),
            kind=pl.lit(STREAM),
            word=pl.lit(None),
        )
    )

    generated = _generated_rows(config)
    manifest = pl.concat(
        [
            from_files.with_columns(end_s=pl.col("start_s") + clip_s),
            streams,
            generated,
        ],
        how="diagonal_relaxed",
    ).with_columns(keyword=pl.lit(config.keyword))
    return manifest.select([pl.col(c).cast(t) for c, t in MANIFEST_SCHEMA.items()]).sort("split", "kind", "clip_id")


def _generated_rows(config: DatasetConfig) -> pl.DataFrame:
    """Noise and TTS clips: no source file, so they are described by a URI the loader understands."""
    colors = list(NOISE_COLORS)
    noise_ids = [f"noise-{colors[i % len(colors)]}-{i}" for i in range(config.noise_clips)]
    noise = pl.DataFrame(
        {
            "clip_id": noise_ids,
            "source_path": [f"noise://{colors[i % len(colors)]}" for i in range(config.noise_clips)],
            "label": [0] * config.noise_clips,
            "kind": ["noise"] * config.noise_clips,
        },
        schema={"clip_id": pl.String, "source_path": pl.String, "label": pl.Int64, "kind": pl.String},
    )
    noise = noise.with_columns(split=assign_splits(noise["clip_id"], config))
    tts = pl.DataFrame(
        {
            "clip_id": [f"tts-{voice}-{rate}-{pitch}" for voice, rate, pitch in config.tts_variants],
            "source_path": [
                f"tts://{quote(voice, safe='')}?rate_wpm={rate}&pitch={pitch}"
                for voice, rate, pitch in config.tts_variants
            ],
            "label": [1] * len(config.tts_variants),
            "kind": ["synthetic"] * len(config.tts_variants),
            "split": ["train"] * len(config.tts_variants),
        },
        schema={
            "clip_id": pl.String,
            "source_path": pl.String,
            "label": pl.Int64,
            "kind": pl.String,
            "split": pl.String,
        },
    )
    return pl.concat([noise, tts]).with_columns(start_s=pl.lit(0.0), end_s=pl.lit(config.clip_s))


def dataset_lineage(manifest: pl.DataFrame) -> dict[str, int | float | str]:
    """Flat counts for MLflow params and asset metadata: clips per split and kind, sources, shards."""
    clips = manifest.filter(pl.col("kind") != STREAM)
    counts = {
        (row["split"], row["kind"]): row["len"] for row in clips.group_by("split", "kind").len().iter_rows(named=True)
    }
    shards = sorted(s for s in manifest["shard"].drop_nulls().unique().to_list())
    lineage: dict[str, int | float | str] = {
        "keyword": str(manifest["keyword"][0]) if manifest.height else "",
        "clips": clips.height,
        "source_files": manifest["file_id"].drop_nulls().n_unique(),
        "n_shards": len(shards),
        "shards": ",".join(shards),
    }
    for split in SPLITS:
        for kind in CLIP_KINDS:
            lineage[f"{split}.{kind}"] = counts.get((split, kind), 0)
    streams = manifest.filter(pl.col("kind") == STREAM)
    lineage["test.stream_files"] = streams.height
    lineage["test.stream_hours"] = round(float((streams["end_s"] - streams["start_s"]).sum()) / 3600, 4)
    return lineage


@dataclass(frozen=True, eq=False)
class KeywordDataset:
    """Waveforms of every manifest clip, plus the test streams used for false accepts per hour."""

    keyword: str
    clip_s: float
    clip_ids: np.ndarray  # str, sorted
    waves: np.ndarray  # float32 [N, clip samples]
    labels: np.ndarray  # float32 0/1
    splits: np.ndarray  # str
    kinds: np.ndarray  # str
    stream_paths: tuple[str, ...]

    def mask(self, split: str, kinds: tuple[str, ...] = CLIP_KINDS) -> np.ndarray:
        return (self.splits == split) & np.isin(self.kinds, kinds)

    @property
    def test_digest(self) -> str:
        """Identity of the test set; metrics are only comparable under the same digest."""
        test_ids = sorted(self.clip_ids[self.splits == "test"].tolist())
        text = "\n".join([self.keyword, f"{self.clip_s:.3f}", *test_ids, *sorted(self.stream_paths)])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _mono_16k(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """TTS output (any rate, mono or [samples, channels]) as 16 kHz mono float32."""
    audio = np.asarray(samples, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    return resample(audio, sample_rate, SAMPLE_RATE)


def _fit(audio: np.ndarray, n_samples: int) -> np.ndarray:
    """Centre-crop or zero-pad to ``n_samples``."""
    if len(audio) >= n_samples:
        offset = (len(audio) - n_samples) // 2
        return audio[offset : offset + n_samples]
    out = np.zeros(n_samples, dtype=np.float32)
    offset = (n_samples - len(audio)) // 2
    out[offset : offset + len(audio)] = audio
    return out


def generated_noise(clip_id: str, color: str, n_samples: int) -> np.ndarray:
    """Coloured noise at a random level between -50 and -15 dBFS, fixed by the clip id."""
    seed = int.from_bytes(hashlib.blake2b(clip_id.encode(), digest_size=8).digest(), "big")
    rng = np.random.default_rng(seed)
    noise = colored_noise(rng, n_samples, NOISE_COLORS[color])
    return (noise * dbfs_gain(rng.uniform(-50.0, -15.0))).astype(np.float32)


def load_keyword_dataset(manifest: pl.DataFrame, tts: TtsFn | None = None) -> KeywordDataset:
    """Decode the manifest's clips (each source file once); ``tts`` is needed for synthetic rows."""
    keywords = manifest["keyword"].unique().to_list()
    if len(keywords) != 1:
        raise ValueError(f"a manifest holds one keyword, found {keywords}")
    clips = manifest.filter(pl.col("kind") != STREAM).sort("clip_id")
    lengths = (clips["end_s"] - clips["start_s"]).round(3).unique().to_list()
    if len(lengths) != 1:
        raise ValueError(f"every clip must have the same length, found {lengths}")
    clip_s = float(lengths[0])
    n_samples = round(clip_s * SAMPLE_RATE)
    keyword = str(keywords[0])

    waves = np.zeros((clips.height, n_samples), dtype=np.float32)
    rows = clips.with_row_index("row")
    for (source,), group in rows.group_by("source_path", maintain_order=True):
        uri = urlsplit(str(source))
        if uri.scheme == "noise":
            for row, clip_id in group.select("row", "clip_id").iter_rows():
                waves[row] = generated_noise(clip_id, uri.netloc, n_samples)
        elif uri.scheme == "tts":
            if tts is None:
                raise ValueError("the manifest has synthetic clips: pass the tts callable that made them")
            query = parse_qs(uri.query)
            samples, rate = tts(keyword, unquote(uri.netloc), int(query["rate_wpm"][0]), int(query["pitch"][0]))
            waves[group["row"].to_numpy()] = _fit(_mono_16k(samples, rate), n_samples)
        else:
            audio = decode_mono_16k(Path(source))
            for row, start_s in group.select("row", "start_s").iter_rows():
                start = round(start_s * SAMPLE_RATE)
                piece = audio[start : start + n_samples]
                waves[row, : len(piece)] = piece

    streams = manifest.filter(pl.col("kind") == STREAM)
    return KeywordDataset(
        keyword=keyword,
        clip_s=clip_s,
        clip_ids=clips["clip_id"].to_numpy().astype(str),
        waves=waves,
        labels=clips["label"].to_numpy().astype(np.float32),
        splits=clips["split"].to_numpy().astype(str),
        kinds=clips["kind"].to_numpy().astype(str),
        stream_paths=tuple(sorted(streams["source_path"].to_list())),
    )
