"""Keyword-spotting dataset: a manifest of fixed-length clips cut from the platform tables.

The manifest (one row per clip: where it comes from, its label, kind, speaker and split) is the
dataset's durable form. It is stored as Parquet and turned back into waveforms with
``load_keyword_dataset``. Clip kinds:

* ``positive``: the keyword, found in ``words`` of any transcribed segment and taken by the
  keyword policy (``DatasetConfig``: word probability, segment SNR and clipping, room for context
  in the clip), centred in the clip. The ASR curated set plays no part: a one-word recording is
  too short for ASR training but is the best keyword source there is.
* ``synthetic``: the keyword spoken by a TTS callable (train split only).
* ``negative_word``: another word the ASR is sure of, centred, never overlapping a keyword
  occurrence (taken or not), a number that may hide it, a word the ASR is unsure of, or speech
  it wrote no word for.
* ``non_speech``: windows of audio away from every VAD speech segment (whole speech-free files
  included).
* ``noise``: generated white/pink/brown noise, reproducible from the clip id.
* ``stream``: a whole test-split file clear of all of the above (keyword-free as far as the ASR
  can tell), for false accepts per hour.

Every word considered, taken or not, is a row of the candidates table with the reason.

Splits are assigned per speaker (``assign_splits``): a speaker never appears in two splits, the
keyword's speakers are spread so that validation and test receive some, and a speaker keeps its
split when new data arrives, so test sets of successive builds stay comparable.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

import numpy as np
import polars as pl

from audio_platform.audio.decode import decode_mono_16k
from audio_platform.audio.dsp import SAMPLE_RATE, colored_noise, dbfs_gain, resample
from audio_platform.evaluation.wer import cardinal_words
from audio_platform.storage.tables import KEYWORD_CANDIDATES, KEYWORD_CLIPS
from audio_platform.training.config import DatasetConfig

SPLITS = ("train", "validation", "test")
CLIP_KINDS = ("positive", "synthetic", "negative_word", "non_speech", "noise")
STREAM = "stream"
NOISE_COLORS = {"white": 0.0, "pink": 1.0, "brown": 2.0}  # spectral slope exponent

# The manifest is the lake's keyword_clips table; the decisions its keyword_candidates table.
MANIFEST_SCHEMA: dict[str, pl.DataType] = KEYWORD_CLIPS.schema
CANDIDATES_SCHEMA: dict[str, pl.DataType] = KEYWORD_CANDIDATES.schema

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


def speaker_of_files(files: pl.DataFrame, config: DatasetConfig) -> pl.Series:
    """Each file's speaker (see ``DatasetConfig.speaker_column``/``speaker_pattern``), else its file_id.

    A name the pattern finds counts as a speaker only if some folder holds it and at least one
    other name: a prefix that every file of its folders shares (``speech_01.wav``,
    ``speech_02.wav``) says nothing about who speaks, and taking it as one speaker would put all
    those files in one split.
    """
    known = []
    if config.speaker_column in files.columns:
        known.append(pl.col(config.speaker_column).cast(pl.String).replace("", None))
    if config.speaker_pattern:
        parts = files.select(
            pl.col("source_path").str.extract(r"^(.*?)[^/\\]*$").alias("folder"),
            pl.col("source_path").str.extract(r"([^/\\]*)$").alias("name"),
        )
        named = parts.select(
            "folder",
            speaker=pl.col("name").str.extract_groups(config.speaker_pattern).struct.field("speaker").replace("", None),
        )
        folders = named.drop_nulls("speaker").group_by("folder").agg(pl.col("speaker").n_unique().alias("names"))
        informative = named.join(folders.filter(pl.col("names") >= 2), on="folder", how="semi")["speaker"].unique()
        files = files.with_columns(_named=named["speaker"])
        known.append(pl.when(pl.col("_named").is_in(informative.to_list())).then(pl.col("_named")))
    return files.select(pl.coalesce(*known, pl.col("file_id")).alias("speaker")).to_series()


def hash_split(values: pl.Series, config: DatasetConfig) -> pl.Series:
    """train / validation / test of each value by where its salted hash falls."""
    position = unit_hash(values, config.split_salt)
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


def split_scheme(config: DatasetConfig) -> str:
    """What decides a split; an earlier manifest's splits are reused only under the same scheme."""
    return f"{config.split_salt}|{config.val_fraction}|{config.test_fraction}|{config.min_speakers}"


def assign_splits(
    speakers: pl.DataFrame, config: DatasetConfig, previous: Mapping[str, str] | None = None
) -> pl.DataFrame:
    """train / validation / test per speaker (``speakers``: columns speaker, says_keyword).

    A speaker keeps the split an earlier build gave it (``previous``, under the same
    ``split_scheme``); a new one is placed by a salted hash of its name, so a speaker's split
    never depends on who else is in the data. When at least ``min_speakers`` speakers say the
    keyword but the hash left validation or test with too few of them (fewer than half their
    share, at least one), the train speakers of the keyword nearest to that split's hash band
    move there, new ones before those an earlier build placed.
    """
    earlier = dict(previous or {})
    frame = (
        speakers.select("speaker", "says_keyword")
        .with_columns(
            position=unit_hash(speakers["speaker"], config.split_salt),
            hashed=hash_split(speakers["speaker"], config),
            known=pl.col("speaker").is_in(list(earlier)),
            split=pl.col("speaker").replace_strict(earlier, default=None, return_dtype=pl.String),
        )
        .with_columns(split=pl.coalesce("split", "hashed"))
    )
    keyword_speakers = int(frame["says_keyword"].sum())
    if keyword_speakers >= config.min_speakers:
        split = dict(zip(frame["speaker"], frame["split"], strict=True))
        movable = frame.filter(pl.col("says_keyword")).sort("known", "position")["speaker"].to_list()
        for name, share in (("test", config.test_fraction), ("validation", config.val_fraction)):
            wanted = max(1, int(keyword_speakers * share / 2))
            missing = wanted - sum(1 for s in movable if split[s] == name)
            for speaker in [s for s in movable if split[s] == "train"][: max(missing, 0)]:
                split[speaker] = name
        frame = frame.with_columns(split=pl.col("speaker").replace_strict(split, return_dtype=pl.String))
    return frame.select("speaker", "split")


def previous_splits(manifest: pl.DataFrame | None, config: DatasetConfig) -> dict[str, str]:
    """speaker -> split of an earlier manifest built under the same split scheme (else empty)."""
    if manifest is None or not {"speaker", "split_scheme"} <= set(manifest.columns):
        return {}
    same = manifest.filter((pl.col("split_scheme") == split_scheme(config)) & pl.col("speaker").is_not_null())
    return dict(same.select("speaker", "split").unique("speaker", keep="first").iter_rows())


def _require_columns(frame: pl.DataFrame, name: str, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks columns {missing}; it has {frame.columns}")


def _centred_start(centre: pl.Expr, clip_s: float) -> pl.Expr:
    # Centred on the word, then moved inside the file where possible (short files are zero-padded).
    latest = pl.max_horizontal(pl.col("duration_s") - clip_s, pl.lit(0.0))
    return pl.max_horizontal(pl.min_horizontal(centre - clip_s / 2, latest), pl.lit(0.0))


def _with_clip_id(frame: pl.DataFrame, kind: str, start: str = "start_s") -> pl.DataFrame:
    millis = (pl.col(start) * 1000).round().cast(pl.Int64).cast(pl.String)
    return frame.with_columns(clip_id=pl.concat_str(pl.col("file_id"), pl.lit(f"@{kind}@"), millis))


def _keyword_occurrences(words: pl.DataFrame, tokens: list[str]) -> pl.DataFrame:
    """Runs of consecutive words in one segment that spell the (possibly multi-word) keyword."""
    ordered = words.sort("segment_id", "word_index")
    match = pl.col("norm") == tokens[0]
    for offset, token in enumerate(tokens[1:], start=1):
        match = match & (pl.col("norm").shift(-offset).over("segment_id") == token)
    last_end = pl.col("end_s").shift(1 - len(tokens)).over("segment_id")
    # A multi-word keyword is as sure as its least sure word.
    least_sure = pl.min_horizontal(
        [pl.col("probability").shift(-offset).over("segment_id") for offset in range(len(tokens))]
    )
    return ordered.with_columns(end_s=last_end, probability=least_sure).filter(match)


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


@dataclass(frozen=True)
class KeywordSelection:
    """A keyword dataset: the clip ``manifest`` and every candidate word with the decision on it."""

    manifest: pl.DataFrame  # schema MANIFEST_SCHEMA
    candidates: pl.DataFrame  # schema CANDIDATES_SCHEMA


def _policy_reason(config: DatasetConfig) -> pl.Expr:
    """Why a keyword occurrence is not taken as a positive (null: taken), first failed rule first."""
    clip_s, context = config.clip_s, config.min_context_s
    return (
        pl.when(pl.col("probability") < config.min_word_probability)
        .then(
            pl.format("word probability {} < {}", pl.col("probability").round(2), pl.lit(config.min_word_probability))
        )
        .when(pl.col("snr_db") < config.min_snr_db)
        .then(pl.format("segment SNR {} dB < {} dB", pl.col("snr_db").round(1), pl.lit(config.min_snr_db)))
        .when(pl.col("clipping_ratio") > config.max_clipping_ratio)
        .then(pl.format("clipping {} > {}", pl.col("clipping_ratio").round(4), pl.lit(config.max_clipping_ratio)))
        .when(pl.col("end_s") - pl.col("start_s") + 2 * context > clip_s)
        .then(
            pl.format(
                "keyword of {} s with {} s context on each side does not fit a {} s clip",
                (pl.col("end_s") - pl.col("start_s")).round(2),
                pl.lit(context),
                pl.lit(clip_s),
            )
        )
        .otherwise(None)
    )


def _flagged(frame: pl.DataFrame, members: pl.DataFrame, flag: str) -> pl.DataFrame:
    """``frame`` with a boolean column ``flag``: its clip_id is among ``members``' (a join, not a list)."""
    marks = members.select("clip_id").unique().with_columns(pl.lit(True).alias(flag))
    return frame.join(marks, on="clip_id", how="left").with_columns(pl.col(flag).fill_null(False))


def _negative_word_candidates(
    all_words: pl.DataFrame, tokens: list[str], forbidden: pl.DataFrame, config: DatasetConfig
) -> pl.DataFrame:
    """Every other word as a negative clip candidate, with the reason it is not taken (null: taken)."""
    clip_s = config.clip_s
    words = all_words.filter(pl.col("norm") != "")
    if len(tokens) == 1:  # the keyword itself is no negative; parts of a longer one may be
        words = words.filter(pl.col("norm") != tokens[0])
    centred = _centred_start((pl.col("start_s") + pl.col("end_s")) / 2, clip_s)
    candidates = _with_clip_id(words.with_columns(clip_start=centred, word="norm"), "negative_word", "clip_start")
    candidates = candidates.unique("clip_id", keep="first")
    near = _overlapping(candidates.select("clip_id", "file_id", start_s="clip_start"), forbidden, clip_s)
    candidates = _flagged(candidates, near, "near_keyword").with_columns(
        reason=pl.when(pl.col("norm").str.contains(r"\d"))
        .then(pl.lit("a number that may hide the keyword"))
        .when(pl.col("probability") < config.min_word_probability)
        .then(
            pl.format("word probability {} < {}", pl.col("probability").round(2), pl.lit(config.min_word_probability))
        )
        .when(pl.col("near_keyword"))
        .then(pl.lit("its clip overlaps the keyword, an unsure word or untranscribed speech"))
        .otherwise(None)
    )
    # Words that contain a keyword token ('sixty', 'sixteen') are the hard negatives: keep them first.
    confusable = pl.any_horizontal([pl.col("norm").str.contains(t, literal=True) for t in tokens])
    kept = _capped(candidates.filter(pl.col("reason").is_null()), config.max_negative_words, first=confusable)
    return _flagged(candidates, kept, "kept").with_columns(
        reason=pl.when(pl.col("reason").is_null() & ~pl.col("kept"))
        .then(pl.lit(f"beyond the {config.max_negative_words} negative words kept (max_negative_words)"))
        .otherwise("reason")
    )


def _reference_verdicts(
    audio_files: pl.DataFrame, files: pl.DataFrame, tokens: list[str], config: DatasetConfig
) -> pl.DataFrame:
    """file_id -> what its reference transcript (``config.reference_column``) says of the keyword:
    ``keyword_only`` (the whole utterance is the keyword), ``contains`` or ``free``."""
    if config.reference_column not in audio_files.columns:
        return pl.DataFrame(schema={"file_id": pl.String, "verdict": pl.String})
    references = audio_files.select("file_id", text=pl.col(config.reference_column).cast(pl.String)).drop_nulls()
    references = references.join(files.select("file_id"), on="file_id").unique("file_id", keep="first")

    def verdict(text: str) -> str:
        said = [w for w in (normalize_word(t) for t in re.split(r"[\s\-]+", text)) if w]
        if said == tokens:
            return "keyword_only"
        spans = (said[i : i + len(tokens)] for i in range(len(said) - len(tokens) + 1))
        return "contains" if tokens in spans else "free"

    return references.select("file_id", verdict=pl.col("text").map_elements(verdict, return_dtype=pl.String))


def _reference_positives(
    verdicts: pl.DataFrame,
    occurrences: pl.DataFrame,
    segments: pl.DataFrame,
    files: pl.DataFrame,
    config: DatasetConfig,
) -> pl.DataFrame:
    """A positive for each file whose reference is the keyword alone but where the ASR found no
    usable occurrence: the clip is centred on the file's speech (its VAD span; the whole file
    without one). The fit rule applies only to speech longer than a clip."""
    found = occurrences.filter(pl.col("reason").is_null()).select("file_id").unique()
    missing = verdicts.filter(pl.col("verdict") == "keyword_only").join(found, on="file_id", how="anti")
    speech = segments.group_by("file_id").agg(
        pl.col("start_s").min(), pl.col("end_s").max(), pl.col("snr_db").min(), pl.col("clipping_ratio").max()
    )
    spans = (
        missing.join(files.select("file_id", "duration_s"), on="file_id")
        .join(speech, on="file_id", how="left")
        .with_columns(
            start_s=pl.col("start_s").fill_null(0.0),
            end_s=pl.col("end_s").fill_null(pl.col("duration_s")),
            probability=pl.lit(None, pl.Float64),
        )
    )
    short = pl.col("end_s") - pl.col("start_s") <= config.clip_s
    return spans.select(
        "file_id",
        "start_s",
        "end_s",
        "snr_db",
        "clipping_ratio",
        "duration_s",
        "probability",
        segment_id=pl.lit(None, pl.String),
        word=pl.lit(config.keyword),
        evidence=pl.lit("reference"),
        reason=pl.when(short)
        .then(_policy_reason(replace(config, min_word_probability=0.0, min_context_s=0.0)))
        .otherwise(_policy_reason(replace(config, min_word_probability=0.0))),
    )


def select_keyword_clips(
    words: pl.DataFrame,
    segments: pl.DataFrame,
    audio_files: pl.DataFrame,
    config: DatasetConfig,
    previous: pl.DataFrame | None = None,
) -> KeywordSelection:
    """The clips for ``config.keyword`` and the decision on every candidate word (module docstring).

    ``words`` and ``segments`` cover everything transcribed, not the ASR curated set: keyword
    clips follow their own policy (``DatasetConfig``), and a keyword spoken anywhere, even where
    it is not taken, keeps negatives and false-accept streams away from that audio. ``previous``
    is the keyword's earlier manifest, whose speakers keep their splits (``assign_splits``).
    """
    _require_columns(words, "words", ("segment_id", "word_index", "word", "start_s", "end_s", "probability"))
    _require_columns(segments, "segments", ("segment_id", "file_id", "start_s", "end_s", "snr_db", "clipping_ratio"))
    _require_columns(audio_files, "audio_files", ("file_id", "shard", "source_path", "status", "duration_s"))
    tokens = [normalize_word(t) for t in config.keyword.split()]
    clip_s = config.clip_s

    files = audio_files.filter((pl.col("status") == "ok") & pl.col("duration_s").is_not_null()).unique(
        "file_id", keep="first"
    )
    files = files.select(
        "file_id",
        "shard",
        "source_path",
        pl.col("duration_s").cast(pl.Float64),
        speaker=speaker_of_files(files, config),
    )
    all_words = (
        words.select("segment_id", "word_index", "word", "start_s", "end_s", pl.col("probability").cast(pl.Float64))
        .join(segments.select("segment_id", "file_id", "snr_db", "clipping_ratio"), on="segment_id")
        .join(files.select("file_id", "duration_s"), on="file_id")
        .with_columns(norm=_normalized("word"))
    )

    verdicts = _reference_verdicts(audio_files, files, tokens, config)
    occurrences = (
        _keyword_occurrences(all_words, tokens)
        .join(verdicts, on="file_id", how="left")
        .with_columns(
            reason=pl.when(pl.col("verdict") == "free")
            .then(pl.lit(f"the reference transcript has no {config.keyword!r}"))
            # The reference vouches for the word the ASR was unsure of.
            .when(pl.col("verdict") == "keyword_only")
            .then(_policy_reason(replace(config, min_word_probability=0.0)))
            .otherwise(_policy_reason(config)),
            word=pl.lit(config.keyword),
            evidence=pl.lit("asr"),
        )
    )
    occurrences = pl.concat(
        [occurrences.drop("verdict"), _reference_positives(verdicts, occurrences, segments, files, config)],
        how="diagonal_relaxed",
    )
    # Audio that may hold the keyword unheard is kept clear of too: digits that are not one number
    # word ('1964'), words the ASR is unsure of (an isolated "stop" is often heard as "So." or
    # "stuff." at low probability), and speech the ASR wrote no word for. A reference transcript
    # settles it: a file whose reference lacks the keyword is clear, one that has it is not.
    unsure = all_words.filter(
        pl.col("norm").str.contains(r"\d") | (pl.col("probability") < config.min_word_probability)
    )
    silent_speech = segments.join(words.select("segment_id").unique(), on="segment_id", how="anti")
    keyword_files = files.join(verdicts.filter(pl.col("verdict") != "free"), on="file_id").select(
        "file_id", start_s=pl.lit(0.0), end_s="duration_s"
    )
    heard = pl.concat([frame.select("file_id", "start_s", "end_s") for frame in (occurrences, unsure, silent_speech)])
    forbidden = pl.concat(
        [heard.join(verdicts.filter(pl.col("verdict") == "free"), on="file_id", how="anti"), keyword_files]
    )

    # Splits per speaker, stratified by who says the keyword in a taken clip.
    says = occurrences.filter(pl.col("reason").is_null()).join(files.select("file_id", "speaker"), on="file_id")
    speakers = (
        files.select("speaker")
        .unique()
        .join(says.select("speaker").unique().with_columns(says_keyword=pl.lit(True)), on="speaker", how="left")
        .with_columns(pl.col("says_keyword").fill_null(False))
    )
    splits = assign_splits(speakers, config, previous_splits(previous, config))
    files = files.join(splits, on="speaker")

    centred = _centred_start((pl.col("start_s") + pl.col("end_s")) / 2, clip_s)
    positive_candidates = _with_clip_id(occurrences.with_columns(clip_start=centred), "positive", "clip_start")
    word_candidates = _negative_word_candidates(all_words, tokens, forbidden, config)

    candidates = (
        pl.concat(
            [
                frame.select(
                    "clip_id",
                    "file_id",
                    "segment_id",
                    "word",
                    "start_s",
                    "end_s",
                    "probability",
                    "snr_db",
                    "clipping_ratio",
                    "clip_start",
                    "reason",
                    kind=pl.lit(kind),
                    evidence=pl.col("evidence") if "evidence" in frame.columns else pl.lit("asr"),
                )
                for kind, frame in (("positive", positive_candidates), ("negative_word", word_candidates))
            ]
        )
        .join(files.select("file_id", "shard", "source_path", "speaker", "split"), on="file_id")
        .with_columns(keyword=pl.lit(config.keyword), taken=pl.col("reason").is_null())
    )

    taken = candidates.filter(pl.col("taken")).select(
        "clip_id",
        "file_id",
        "shard",
        "source_path",
        "speaker",
        "split",
        "word",
        "kind",
        start_s="clip_start",
        label=(pl.col("kind") == "positive").cast(pl.Int64),
    )
    non_speech = (
        _speech_free_windows(files, segments, config)
        .select("clip_id", "file_id", "start_s")
        .join(files.select("file_id", "shard", "source_path", "speaker", "split"), on="file_id")
        .with_columns(label=pl.lit(0), kind=pl.lit("non_speech"), word=pl.lit(None, pl.String))
    )
    streams = (
        files.filter(pl.col("split") == "test")
        .join(forbidden, on="file_id", how="anti")
        .filter(pl.col("duration_s") > 0)
        .select(
            "file_id",
            "shard",
            "source_path",
            "speaker",
            "split",
            clip_id=pl.col("file_id") + "@stream",
            start_s=pl.lit(0.0),
            end_s="duration_s",
            label=pl.lit(0),
            kind=pl.lit(STREAM),
            word=pl.lit(None, pl.String),
        )
    )
    manifest = pl.concat(
        [
            pl.concat([taken, non_speech], how="diagonal_relaxed").with_columns(end_s=pl.col("start_s") + clip_s),
            streams,
            _generated_rows(config),
        ],
        how="diagonal_relaxed",
    ).with_columns(keyword=pl.lit(config.keyword), split_scheme=pl.lit(split_scheme(config)))
    return KeywordSelection(
        manifest=manifest.select([pl.col(c).cast(t) for c, t in MANIFEST_SCHEMA.items()]).sort(
            "split", "kind", "clip_id"
        ),
        candidates=candidates.select([pl.col(c).cast(t) for c, t in CANDIDATES_SCHEMA.items()]).sort("kind", "clip_id"),
    )


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
    noise = noise.with_columns(split=hash_split(noise["clip_id"], config))
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


def dataset_shortfall(manifest: pl.DataFrame) -> str | None:
    """Why a model cannot be trained and judged on ``manifest`` (None: it can).

    Every split needs positive and negative clips (synthetic positives count for train only);
    the reason names the counts and what to add, so it can stand as an outcome in the UI.
    """
    clips = manifest.filter(pl.col("kind") != STREAM)
    keyword = str(manifest["keyword"][0]) if manifest.height else "?"
    counts = {split: {"positive": 0, "synthetic": 0, "negative": 0} for split in SPLITS}
    for split, kind, label, n in clips.group_by("split", "kind", "label").len().iter_rows():
        if split in counts:
            key = kind if kind in ("positive", "synthetic") else ("positive" if label else "negative")
            counts[split][key] += n
    short = [
        split
        for split, c in counts.items()
        if c["negative"] == 0 or c["positive"] + (c["synthetic"] if split == "train" else 0) == 0
    ]
    if not short:
        return None
    speakers = clips.filter(pl.col("kind") == "positive")["speaker"].n_unique()
    per_split = ", ".join(f"{split} {c['positive']}+/{c['negative']}-" for split, c in counts.items())
    return (
        f"not enough data for {keyword!r}: {', '.join(short)} lack(s) positive or negative clips "
        f"(recorded clips per split: {per_split}; {speakers} speaker(s) say the keyword in a taken clip). "
        "Add recordings of the keyword by more speakers (the split is by speaker), or see "
        "keyword_candidates for the occurrences that were not taken and why"
    )


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
