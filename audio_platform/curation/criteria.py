"""Per-segment quality criteria for curation.

Two kinds of criteria feed the TOPSIS score (see ``topsis.py``):

* acoustic features, computed by the VAD stage while the audio is still in
  memory (:func:`acoustic_features`) and stored as columns of the segments
  table, and
* derived criteria computed from table columns only (:func:`add_text_criteria`),
  so re-scoring never needs to decode audio or re-run ASR. Among them are the
  text-plausibility criteria (:func:`add_plausibility_criteria`), which catch
  transcripts the ASR invented rather than heard.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

from audio_platform.audio.dsp import SAMPLE_RATE
from audio_platform.evaluation.wer import normalize_text

# SNR estimator framing: the usual 25 ms / 10 ms speech analysis frames.
FRAME_LENGTH = 400
FRAME_HOP = 160
# Frames at or below this percentile of frame power are taken as noise-only.
# Speech segments cut by a VAD keep short pauses (between words, plus the
# VAD's edge padding), so the quietest 10% of frames are noise in practice.
NOISE_PERCENTILE = 10.0
SNR_MIN_DB = -10.0
SNR_MAX_DB = 100.0

CLIP_LEVEL = 0.99
LOUDNESS_FLOOR_DBFS = -120.0
# Power below the loudness floor counts as digital silence.
_SILENCE_POWER = 10.0 ** (LOUDNESS_FLOOR_DBFS / 10.0)
# Keeps log10 finite when the noise floor is exactly zero (digitally silent
# pauses); the result is then clamped to SNR_MAX_DB anyway.
_TINY_POWER = 1e-20

# Natural read-speech rate in words per second (about 160 wpm; LibriSpeech
# averages roughly 2.7 w/s).
NATURAL_SPEAKING_RATE = 2.7
# Target RMS level of well-recorded speech (the EBU R128 -23 LUFS
# programme level, used here as a plain RMS dBFS target).
LOUDNESS_TARGET_DBFS = -23.0
# Segment lengths that suit ASR/TTS training: shorter clips carry little
# context, and 30 s is Whisper's window and a common trainer maximum.
IDEAL_DURATION_MIN_S = 2.0
IDEAL_DURATION_MAX_S = 15.0
MAX_USEFUL_DURATION_S = 30.0

# Text plausibility. Whisper-style decoders fail on noise, music and silence in
# ways that leave traces in the text alone, which is what NVIDIA Granary / the
# NeMo speech-data-processor filter on: decoding loops that repeat a phrase,
# runaway "words" with no spaces, more text than the audio can hold, and stock
# phrases learnt from subtitle credits. The compression ratio only sees the
# first, and only once the loop is long.
#
# Repeated n-grams are counted on word 3-grams: in ordinary text a repeated
# trigram is rare, while bigrams such as "of the" recur by chance in any long
# sentence. Below SHORT_TEXT_WORDS words a text has too few trigrams for a loop
# to show ("go on go on go on" has four), so bigrams are used there; below
# MIN_NGRAM_WORDS words a repeat ("yes yes", "no no no") is as likely emphasis
# as a loop, so the ratio is 0.
NGRAM_WORDS = 3
SHORT_TEXT_NGRAM_WORDS = 2
SHORT_TEXT_WORDS = 8
MIN_NGRAM_WORDS = 4
# A "word" for longest_word_chars: a run of letters, combining marks, digits and
# apostrophes. Hyphens split words: Whisper spells letters out as "P-I-T-T-S-B-U-R-G-H"
# and hyphenated compounds are real speech, while a hyphenated loop ("la-la-la...") is
# caught by repeated_ngram_ratio. Scripts written without spaces between words are
# left out, or every Chinese or Japanese sentence would read as one enormous word.
_WORD_PATTERN = (
    r"[[\p{L}\p{M}\p{N}'’]--[\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}\p{Tibetan}]]+"
)
# Spoken content for chars_per_second: letters and digits only, so punctuation,
# spacing and Whisper's annotations ("...", "--") do not count as speech.
_SPOKEN_CHAR_PATTERN = r"[\p{L}\p{N}]"

# Stock phrases Whisper writes on non-speech (from the subtitle credits in its
# training data), in normalize_text form: lower case, no punctuation, digits as
# words. English only; extend per language.
#
# Flagged only when they are the whole transcript, alone or repeated ("Thank
# you." on a noise burst or a mumbled digit): inside a longer transcript they
# are ordinary speech ("thank you very much for coming to the meeting").
FILLER_WHOLE_TEXTS: tuple[str, ...] = (
    "you",
    "thank you",
    "thank you very much",
    "thank you so much",
    "thanks",
    "thank you for listening",
    "thanks for listening",
)
# Subtitle and channel credits: flagged wherever they occur, since a segment
# holding one is a credits card or a video outro, never content worth training on.
FILLER_FORMULAS: tuple[str, ...] = (
    "thanks for watching",
    "thanks so much for watching",
    "thank you for watching",
    "thank you very much for watching",
    "thank you so much for watching",
    "thank you all for watching",
    "please subscribe",
    "like and subscribe",
    "subscribe to my channel",
    "subscribe to our channel",
    "subscribe to the channel",
    "subtitles by",
    "subtitled by",
    "subtitling by",
    "captions by",
    "captioned by",
    "captioning by",
    "closed captioning",
    "transcribed by",
    "transcription by",
    "amara org",
)


def _phrase_alternation(phrases: Iterable[str]) -> str:
    # Longest first, so "thank you very much" wins over its prefix "thank you".
    return "|".join(re.escape(p) for p in sorted(phrases, key=len, reverse=True))


_WHOLE_FILLER_RE = re.compile(rf"(?:(?:{_phrase_alternation(FILLER_WHOLE_TEXTS)})(?: |$))+")
_FORMULA_RE = re.compile(rf"(?:^| )(?:{_phrase_alternation(FILLER_FORMULAS)})(?: |$)")


@dataclass(frozen=True)
class AcousticFeatures:
    """Acoustic quality features of one segment (see :func:`acoustic_features`)."""

    snr_db: float
    clipping_ratio: float
    loudness_dbfs: float
    dc_offset: float


def acoustic_features(audio_16k: np.ndarray, start_s: float, end_s: float) -> AcousticFeatures:
    """Measure the segment ``[start_s, end_s)`` of 16 kHz mono audio.

    * ``clipping_ratio``: fraction of raw samples with ``|x| >= 0.99``.
    * ``dc_offset``: mean of the raw samples.
    * ``loudness_dbfs``: RMS level in dBFS after removing the DC offset (DC is
      inaudible and reported separately); a full-scale square wave reads
      0 dBFS and a full-scale sine -3.01 dBFS. Floor: -120 dBFS.
    * ``snr_db``: see :func:`estimate_snr_db`.
    """
    audio = np.asarray(audio_16k)
    if audio.ndim != 1:
        raise ValueError(f"audio must be 1-D mono, got shape {audio.shape}")
    if not (math.isfinite(start_s) and math.isfinite(end_s)) or start_s < 0 or end_s <= start_s:
        raise ValueError(f"invalid segment bounds: start_s={start_s}, end_s={end_s}")
    first = round(start_s * SAMPLE_RATE)
    last = min(round(end_s * SAMPLE_RATE), audio.size)
    if last <= first:
        raise ValueError(
            f"segment [{start_s}, {end_s}) s lies outside the audio ({audio.size / SAMPLE_RATE:.3f} s)"
        )
    raw = audio[first:last].astype(np.float64)
    dc_offset = float(raw.mean())
    centred = raw - dc_offset
    power = float(np.mean(centred**2))
    loudness = 10.0 * math.log10(power) if power > _SILENCE_POWER else LOUDNESS_FLOOR_DBFS
    return AcousticFeatures(
        snr_db=estimate_snr_db(centred),
        clipping_ratio=float(np.mean(np.abs(raw) >= CLIP_LEVEL)),
        loudness_dbfs=loudness,
        dc_offset=dc_offset,
    )


def estimate_snr_db(samples: npt.NDArray[np.float64]) -> float:
    """Blind SNR estimate from the distribution of frame energies.

    The noise power is the 10th percentile of the 25 ms frame powers (the
    quietest frames are pauses, holding noise only); the signal power is the
    mean power minus that noise power: ``SNR = 10 log10((P - N) / N)``. This
    is the global (whole-segment) SNR, matching ``10 log10(sum s^2 / sum n^2)``
    for additive stationary noise.

    Chosen over WADA-SNR because it makes no assumption about the clean
    signal's amplitude distribution; its known bias is towards *lower* SNR
    when a segment has no pauses at all (the quietest frames then contain
    speech), which errs on the safe side for curation.

    The result is clamped to [-10, 100] dB. Digital silence returns -10 dB
    (no usable signal); a segment shorter than one frame has a single frame
    power, so noise cannot be separated and it also lands on -10 dB.
    """
    total = float(np.mean(samples**2)) if samples.size else 0.0
    if total <= _SILENCE_POWER:
        return SNR_MIN_DB
    if samples.size >= FRAME_LENGTH:
        frames = np.lib.stride_tricks.sliding_window_view(samples, FRAME_LENGTH)[::FRAME_HOP]
    else:
        frames = samples[np.newaxis, :]
    noise = float(np.percentile(np.mean(frames**2, axis=1), NOISE_PERCENTILE))
    signal = total - noise
    snr = 10.0 * math.log10(max(signal, _TINY_POWER) / max(noise, _TINY_POWER))
    return min(max(snr, SNR_MIN_DB), SNR_MAX_DB)


def add_text_criteria(frame: pl.DataFrame) -> pl.DataFrame:
    """Add the table-only derived criteria used by scoring.

    Needs ``duration_s``, ``text`` and ``loudness_dbfs``; adds:

    * ``speaking_rate``: whitespace-separated words per second of segment.
    * ``speaking_rate_deviation``: ``|log2(speaking_rate / 2.7)|``, i.e. how
      many doublings/halvings away from a natural rate; symmetric in ratio
      because both a too-fast (hallucinated extra words) and a too-slow
      (dropped words) transcript signal an audio/text mismatch. Empty text
      gives ``inf``.
    * ``loudness_deviation_db``: ``|loudness_dbfs - (-23)|``.
    * ``duration_fitness``: 1.0 for 2-15 s, linear down to 0 at 0 s and at
      30 s. It depends on duration only; empty transcripts are already
      penalized by ``speaking_rate_deviation`` and rejected by the policy.
    * the text-plausibility criteria of :func:`add_plausibility_criteria`
      (``repeated_ngram_ratio``, ``longest_word_chars``, ``chars_per_second``,
      ``filler_phrase``).

    Rates and duration fitness are null when ``duration_s`` is null or not
    positive (scoring then treats them as the anti-ideal).
    """
    missing = {"duration_s", "text", "loudness_dbfs"} - set(frame.columns)
    if missing:
        raise ValueError(f"add_text_criteria: missing columns {sorted(missing)}")
    duration = pl.col("duration_s").cast(pl.Float64)
    valid_duration = duration.is_not_null() & (duration > 0)
    text = pl.col("text").cast(pl.String).fill_null("")
    words = text.str.count_matches(r"\S+").cast(pl.Float64)
    return add_plausibility_criteria(frame).with_columns(
        speaking_rate=pl.when(valid_duration).then(words / duration),
        duration_fitness=pl.when(valid_duration).then(
            pl.min_horizontal(
                pl.lit(1.0),
                duration / IDEAL_DURATION_MIN_S,
                (MAX_USEFUL_DURATION_S - duration) / (MAX_USEFUL_DURATION_S - IDEAL_DURATION_MAX_S),
            ).clip(0.0, 1.0)
        ),
        loudness_deviation_db=(pl.col("loudness_dbfs").cast(pl.Float64) - LOUDNESS_TARGET_DBFS).abs(),
    ).with_columns(
        speaking_rate_deviation=(pl.col("speaking_rate") / NATURAL_SPEAKING_RATE).log(2).abs(),
    )


def repeated_ngram_ratio(text: str | None) -> float:
    """Share of the word n-grams of ``text`` that repeat an earlier n-gram of it, in [0, 1).

    Words are those of :func:`~audio_platform.evaluation.wer.normalize_text` (case and
    punctuation ignored). n is 3, or 2 for texts under ``SHORT_TEXT_WORDS`` words; texts under
    ``MIN_NGRAM_WORDS`` words give 0. A phrase of k words looped to L words gives about
    ``1 - k / L``: "we are going to do this" said four times reads 0.73.
    """
    words = normalize_text(text or "").split()
    if len(words) < MIN_NGRAM_WORDS:
        return 0.0
    n = SHORT_TEXT_NGRAM_WORDS if len(words) < SHORT_TEXT_WORDS else NGRAM_WORDS
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return 1.0 - len(set(grams)) / len(grams)


def is_filler_phrase(text: str | None) -> bool:
    """Whether ``text`` is a stock ASR hallucination: it consists only of
    ``FILLER_WHOLE_TEXTS`` phrases (once or repeated), or it contains a ``FILLER_FORMULAS``
    credits formula. Matched on :func:`~audio_platform.evaluation.wer.normalize_text` form."""
    normalized = normalize_text(text or "")
    return bool(normalized) and (
        _WHOLE_FILLER_RE.fullmatch(normalized) is not None or _FORMULA_RE.search(normalized) is not None
    )


def add_plausibility_criteria(frame: pl.DataFrame) -> pl.DataFrame:
    """Add the text-plausibility (hallucination) criteria of each segment's transcript.

    Needs ``duration_s`` and ``text``; adds:

    * ``repeated_ngram_ratio``: see :func:`repeated_ngram_ratio` (0 for empty text).
    * ``longest_word_chars``: characters of the longest word (run of letters, digits and
      apostrophes, outside scripts written without spaces); 0 for empty text.
      English words beyond ~28 letters do not occur in speech; longer runs are decoder garbage.
    * ``chars_per_second``: letters and digits per second of segment; null when ``duration_s``
      is null or not positive. Language-independent, unlike words per second.
    * ``filler_phrase``: see :func:`is_filler_phrase` (false for empty text).
    """
    missing = {"duration_s", "text"} - set(frame.columns)
    if missing:
        raise ValueError(f"add_plausibility_criteria: missing columns {sorted(missing)}")
    duration = pl.col("duration_s").cast(pl.Float64)
    text = pl.col("text").cast(pl.String).fill_null("")
    spoken = text.str.count_matches(_SPOKEN_CHAR_PATTERN).cast(pl.Float64)
    # Python per distinct text: n-gram counting and normalize_text have no polars
    # equivalent, and transcripts repeat ("Yes.") often enough for the cache to pay.
    texts = frame.get_column("text").cast(pl.String)
    distinct = texts.unique().to_list()
    ratios = {t: repeated_ngram_ratio(t) for t in distinct}
    fillers = {t: is_filler_phrase(t) for t in distinct}
    return frame.with_columns(
        repeated_ngram_ratio=pl.Series([ratios[t] for t in texts.to_list()], dtype=pl.Float64),
        longest_word_chars=text.str.extract_all(_WORD_PATTERN)
        .list.eval(pl.element().str.len_chars())
        .list.max()
        .fill_null(0)
        .cast(pl.Int64),
        chars_per_second=pl.when(duration.is_not_null() & (duration > 0)).then(spoken / duration),
        filler_phrase=pl.Series([fillers[t] for t in texts.to_list()], dtype=pl.Boolean),
    )
