"""Selection policy: hard gates plus a TOPSIS score threshold.

TOPSIS blends criteria, so one catastrophic criterion (e.g. a hallucinated
transcript) only lowers the score partway; the hard gates reject such
segments outright, and the score threshold handles the accumulated
"mediocre on many criteria" case.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import polars as pl

from audio_platform.audio.fingerprint import NEAR_DUPLICATE_MIN_SCORE


@dataclass(frozen=True)
class CurationPolicy:
    """Thresholds for :func:`decide`. An empty ``languages`` accepts any language."""

    min_score: float = 0.5
    """Lowest TOPSIS score selected."""
    min_duration_s: float = 1.0
    """Shorter segments are rejected."""
    max_duration_s: float = 30.0
    """Longer segments are rejected."""
    languages: tuple[str, ...] = ("en",)
    """Accepted transcript languages; empty: any."""
    # Only where the language was detected (ASR language null with a multilingual model): a
    # configured language has no probability, and a shard transcribed before it was measured
    # reads null; neither is rejected by this gate.
    min_language_probability: float = 0.0
    """Segments whose file's detected language has a lower Whisper probability are rejected
    (uncertain language ID: mixed or unclear speech, or another language than detected); 0 disables
    the gate. Granary (NVIDIA, 2025) keeps 0.7, Emilia (Amphion, 2024) 0.8."""
    max_no_speech_prob: float = 0.6
    """Segments the ASR deems likelier silent are rejected."""
    max_compression_ratio: float = 2.4
    """More repetitive transcripts are rejected."""
    require_text: bool = True
    """Reject segments with an empty transcript."""
    # Not in the score alone: TOPSIS is compensatory, so a heavily clipped
    # segment with otherwise perfect criteria still scores ~0.75, yet
    # clipping is irrecoverable distortion. 1% matches the criterion's
    # anti-ideal; 1.0 disables the gate.
    max_clipping_ratio: float = 0.01
    """More clipped segments are rejected whatever their score; 1.0 disables the gate."""
    # DNSMOS P.835 OVRL (segments.dnsmos_ovrl) is already a TOPSIS criterion; the floor is for
    # data sets that want a hard cut. Off by default: on the shared corpus, Emilia's 3.0 rejects
    # 80% of the LibriVox segments, a third of VCTK's and 11% of LJSpeech's; 2.0 rejects none of
    # those and all of the ESC-50 noise, but also short fragments of real speech.
    min_dnsmos_ovrl: float = 0.0
    """Segments whose DNSMOS P.835 overall quality (1-5) is lower are rejected whatever their score;
    0 disables the gate. Emilia (Amphion, 2024) keeps OVRL >= 3.0, which also rejects much clean read
    speech."""
    # Text-plausibility gates on the criteria.add_plausibility_criteria columns: a
    # hallucinated transcript on audio that is otherwise fine passes every acoustic
    # check and only loses part of its score. The defaults sit well outside real speech
    # (the shared corpus's transcripts reach a ratio of 0.05, 15-letter words and
    # 1.6-22.6 letters/s) and reject what a decoder, not a speaker, produces.
    # A k-word phrase looped to L words reads about 1 - k/L: said three times running
    # it is above 0.5, said twice (a speaker repeating themselves) below.
    max_repeated_ngram_ratio: float = 0.5
    """Transcripts whose word 3-grams (2-grams under 8 words) repeat more often are rejected as
    decoding loops; 1.0 disables the gate."""
    # Longest English words in use are ~28 letters; a longer run is decoder garbage.
    max_word_chars: int = 30
    """Transcripts with a longer word (letters and digits) are rejected as decoder garbage; raise
    it for languages with long compounds."""
    # Letters and digits per second: speech runs about 8-17 (Whisper's segments of the
    # corpus reach 16.9); twice the fastest speaker means the text was not heard here.
    max_chars_per_second: float = 35.0
    """More letters and digits per second of segment than anyone says: the text was not heard there."""
    # Only checked on segments of SLOW_TEXT_MIN_DURATION_S or more.
    min_chars_per_second: float = 1.0
    """Fewer letters and digits per second, on segments of 2 s or more: the ASR missed the speech;
    0 disables the gate."""
    # Whisper's stock outputs on non-speech (criteria.FILLER_WHOLE_TEXTS / FILLER_FORMULAS).
    reject_filler_phrases: bool = True
    """Reject stock ASR hallucinations: a transcript that is only "Thank you." / "you" and the
    like, or holds a credits formula ("thanks for watching", "subtitles by")."""

    # Only the copies that come after their first copy (near_duplicates table); the first stays.
    reject_near_duplicates: bool = True
    """Reject a segment whose audio repeats an earlier segment's (re-encoded, resampled, trimmed,
    noisier: the near_duplicates table), in any shard or drop, so one copy stays in the curated set."""
    # The fingerprint's own decision threshold is the floor: lower matches are not recorded.
    near_duplicate_min_similarity: float = NEAR_DUPLICATE_MIN_SCORE
    """Lowest fingerprint similarity that counts as a near-duplicate (copies of 2-12 s clips score
    >= 0.31, distinct clips <= 0.013 on the shared corpus); at least 0.15."""

    def __post_init__(self) -> None:
        # Config loaders hand over lists; keep the dataclass hashable.
        object.__setattr__(self, "languages", tuple(self.languages))
        if not 0.0 <= self.min_score <= 1.0:
            raise ValueError(f"min_score must be in [0, 1], got {self.min_score}")
        if not (math.isfinite(self.min_duration_s) and self.min_duration_s >= 0):
            raise ValueError(f"min_duration_s must be finite and >= 0, got {self.min_duration_s}")
        if not self.max_duration_s > self.min_duration_s:
            raise ValueError(
                f"max_duration_s ({self.max_duration_s}) must exceed min_duration_s ({self.min_duration_s})"
            )
        if not all(isinstance(lang, str) and lang for lang in self.languages):
            raise ValueError(f"languages must be non-empty strings, got {self.languages!r}")
        if not 0.0 <= self.min_language_probability <= 1.0:
            raise ValueError(f"min_language_probability must be in [0, 1], got {self.min_language_probability}")
        if not NEAR_DUPLICATE_MIN_SCORE <= self.near_duplicate_min_similarity <= 1.0:
            raise ValueError(
                f"near_duplicate_min_similarity must be in [{NEAR_DUPLICATE_MIN_SCORE}, 1] (lower matches are "
                f"not recorded), got {self.near_duplicate_min_similarity}"
            )
        if not 0.0 <= self.max_no_speech_prob <= 1.0:
            raise ValueError(f"max_no_speech_prob must be in [0, 1], got {self.max_no_speech_prob}")
        if not self.max_compression_ratio > 0:
            raise ValueError(f"max_compression_ratio must be > 0, got {self.max_compression_ratio}")
        if not 0.0 <= self.max_clipping_ratio <= 1.0:
            raise ValueError(f"max_clipping_ratio must be in [0, 1], got {self.max_clipping_ratio}")
        if not 0.0 <= self.min_dnsmos_ovrl <= 5.0:
            raise ValueError(f"min_dnsmos_ovrl must be in [0, 5] (the P.835 scale), got {self.min_dnsmos_ovrl}")
        if not 0.0 <= self.max_repeated_ngram_ratio <= 1.0:
            raise ValueError(f"max_repeated_ngram_ratio must be in [0, 1], got {self.max_repeated_ngram_ratio}")
        if not self.max_word_chars >= 1:
            raise ValueError(f"max_word_chars must be >= 1, got {self.max_word_chars}")
        if not (math.isfinite(self.min_chars_per_second) and self.min_chars_per_second >= 0):
            raise ValueError(f"min_chars_per_second must be finite and >= 0, got {self.min_chars_per_second}")
        if not self.max_chars_per_second > self.min_chars_per_second:
            raise ValueError(
                f"max_chars_per_second ({self.max_chars_per_second}) must exceed "
                f"min_chars_per_second ({self.min_chars_per_second})"
            )


# A one-word answer ("Yes.", "I.") on a short segment reads under 1 letter/s once the
# VAD's padding and the pause around it are counted; from 2 s on, that little text
# means the ASR heard far less than the audio holds.
SLOW_TEXT_MIN_DURATION_S = 2.0


# The rules of ``decide`` by stable name, in order: metadata keys and metrics labels.
REJECTION_RULES = (
    "empty_transcript",
    "language",
    "language_probability",
    "duration",
    "clipping_ratio",
    "dnsmos_ovrl",
    "no_speech_prob",
    "compression_ratio",
    "filler_phrase",
    "repeated_ngram_ratio",
    "longest_word_chars",
    "chars_per_second",
    "near_duplicate",
    "topsis_score",
)


def rejection_rule(reason: str) -> str:
    """The rule (one of ``REJECTION_RULES``) behind a ``rejection_reason`` of :func:`decide`."""
    rule = "empty_transcript" if reason == "empty transcript" else reason.split(" ", 1)[0]
    if rule not in REJECTION_RULES:
        raise ValueError(f"not a rejection reason of decide(): {reason!r}")
    return rule


def decide(scored: pl.DataFrame, policy: CurationPolicy) -> pl.DataFrame:
    """Return ``scored`` plus ``selected`` (bool) and ``rejection_reason`` (str).

    Rules, in order; ``rejection_reason`` names the first one that fails and
    is null for selected rows:

    1. ``empty transcript`` (when ``require_text``; null or whitespace text)
    2. ``language de not in (en)`` (when ``languages`` is non-empty)
    3. ``language_probability 0.42 < 0.70`` (when ``min_language_probability`` is
       above 0; a null probability, language not detected, passes)
    4. ``duration 0.6 s < 1.0 s`` / ``duration 31.0 s > 30.0 s``
    5. ``clipping_ratio 0.048 > 0.010``
    6. ``dnsmos_ovrl 2.41 < 3.00`` (when ``min_dnsmos_ovrl`` is above 0)
    7. ``no_speech_prob 0.82 > 0.60``
    8. ``compression_ratio 2.71 > 2.40``
    9. ``filler_phrase (stock ASR hallucination)`` (when ``reject_filler_phrases``)
    10. ``repeated_ngram_ratio 0.73 > 0.50``
    11. ``longest_word_chars 41 > 30``
    12. ``chars_per_second 41.2 > 35.0`` / ``chars_per_second 0.6 < 1.0`` (the lower
        bound only on segments of ``SLOW_TEXT_MIN_DURATION_S`` or more, and not on
        text-less ones when ``require_text`` is off)
    13. ``near_duplicate of <segment_id> (similarity 0.42 >= 0.15)`` (when
        ``reject_near_duplicates``; null similarity: no earlier copy)
    14. ``topsis_score 0.41 < 0.50``

    Rules 9-12 read the columns of
    :func:`~audio_platform.curation.criteria.add_plausibility_criteria`.

    A null/NaN value fails its rule as ``<column> missing``, except a null
    ``language_probability`` (the language was not detected). Shown values are
    rounded towards failing (floor for ``<``, ceil for ``>``) so the message
    never reads like ``0.50 < 0.50``.
    """
    rules = _rules(policy)
    needed = {column for column, _, _ in rules}
    missing = sorted(needed - set(scored.columns))
    if missing:
        raise ValueError(f"decide: missing columns {missing}")
    reason: pl.Expr = pl.lit(None, dtype=pl.String)
    # Build the when/then chain from the last rule backwards so the first
    # listed failing rule wins.
    for _, fails, message in reversed(rules):
        reason = pl.when(fails).then(message).otherwise(reason)
    return scored.with_columns(
        selected=~pl.any_horizontal(fails for _, fails, _ in rules),
        rejection_reason=reason,
    )


def _rules(policy: CurationPolicy) -> list[tuple[str, pl.Expr, pl.Expr]]:
    """(column, fails, message) per rule, in priority order."""
    rules: list[tuple[str, pl.Expr, pl.Expr]] = []
    if policy.require_text:
        # Cast: an all-null column arrives with dtype Null, which has no .str.
        text = pl.col("text").cast(pl.String)
        empty = text.is_null() | (text.str.strip_chars() == "")
        rules.append(("text", empty, pl.lit("empty transcript")))
    if policy.languages:
        language = pl.col("language").cast(pl.String)
        allowed = ", ".join(policy.languages)
        rules.append(
            (
                "language",
                language.is_null() | ~language.is_in(list(policy.languages)),
                pl.when(language.is_null())
                .then(pl.lit("language missing"))
                .otherwise(pl.concat_str(pl.lit("language "), language, pl.lit(f" not in ({allowed})"))),
            )
        )
    if policy.min_language_probability > 0:
        column, fails, message = _bound_rule(
            "language_probability", "language_probability", "<", policy.min_language_probability, 2
        )
        # Null: the language was configured, not detected, so there is nothing to gate.
        rules.append((column, fails & pl.col(column).is_not_null(), message))
    rules += [
        _bound_rule("duration_s", "duration", "<", policy.min_duration_s, 1, " s"),
        _bound_rule("duration_s", "duration", ">", policy.max_duration_s, 1, " s"),
        _bound_rule("clipping_ratio", "clipping_ratio", ">", policy.max_clipping_ratio, 3),
    ]
    if policy.min_dnsmos_ovrl > 0:
        rules.append(_bound_rule("dnsmos_ovrl", "dnsmos_ovrl", "<", policy.min_dnsmos_ovrl, 2))
    rules += [
        _bound_rule("no_speech_prob", "no_speech_prob", ">", policy.max_no_speech_prob, 2),
        _bound_rule("compression_ratio", "compression_ratio", ">", policy.max_compression_ratio, 2),
    ]
    if policy.reject_filler_phrases:
        filler = pl.col("filler_phrase").cast(pl.Boolean)
        rules.append(
            (
                "filler_phrase",
                filler.is_null() | filler,
                pl.when(filler.is_null())
                .then(pl.lit("filler_phrase missing"))
                .otherwise(pl.lit("filler_phrase (stock ASR hallucination)")),
            )
        )
    long_enough = pl.col("duration_s").cast(pl.Float64) >= SLOW_TEXT_MIN_DURATION_S
    if not policy.require_text:
        # Empty transcripts were asked for: they are not "too little text".
        long_enough = long_enough & (pl.col("chars_per_second").cast(pl.Float64) > 0)
    rules += [
        _bound_rule("repeated_ngram_ratio", "repeated_ngram_ratio", ">", policy.max_repeated_ngram_ratio, 2),
        _bound_rule("longest_word_chars", "longest_word_chars", ">", policy.max_word_chars, 0),
        _bound_rule("chars_per_second", "chars_per_second", ">", policy.max_chars_per_second, 1),
        _bound_rule("chars_per_second", "chars_per_second", "<", policy.min_chars_per_second, 1, when=long_enough),
    ]
    if policy.reject_near_duplicates:
        similarity = pl.col("near_duplicate_similarity").cast(pl.Float64)
        limit = policy.near_duplicate_min_similarity
        rules.append(
            (
                "near_duplicate_similarity",
                similarity.fill_null(0.0) >= limit,
                pl.format(
                    f"near_duplicate of {{}} (similarity {{}} >= {limit:.2f})",
                    pl.col("near_duplicate_of").fill_null("an unnamed segment"),
                    _format_fixed(similarity, 2, towards_floor=True),
                ),
            )
        )
    rules.append(_bound_rule("topsis_score", "topsis_score", "<", policy.min_score, 2))
    return rules


def _bound_rule(
    column: str, label: str, op: str, limit: float, decimals: int, unit: str = "", when: pl.Expr | None = None
) -> tuple[str, pl.Expr, pl.Expr]:
    """``when``: the bound is checked only where it holds (a missing value still fails)."""
    value = pl.col(column).cast(pl.Float64)
    missing = value.is_null() | value.is_nan()
    out_of_bounds = value < limit if op == "<" else value > limit
    if when is not None:
        out_of_bounds = out_of_bounds & when.fill_null(False)
    shown = _format_fixed(value, decimals, towards_floor=op == "<")
    message = (
        pl.when(missing)
        .then(pl.lit(f"{label} missing"))
        .otherwise(pl.format(f"{label} {{}}{unit} {op} {limit:.{decimals}f}{unit}", shown))
    )
    return column, missing | out_of_bounds, message


def _format_fixed(value: pl.Expr, decimals: int, *, towards_floor: bool) -> pl.Expr:
    """Format with exactly ``decimals`` decimals (polars has no printf-style format)."""
    scale = 10**decimals
    # round(6) first strips binary noise (0.29 * 100 = 28.999...) that would
    # otherwise floor/ceil to the wrong digit.
    scaled = (value * scale).round(6)
    rounded = scaled.floor() if towards_floor else scaled.ceil()
    # Non-finite values cannot go through the integer path; keep polars' text.
    digits = rounded.abs().cast(pl.Int64, strict=False)
    sign = pl.when(rounded < 0).then(pl.lit("-")).otherwise(pl.lit(""))
    # No decimal point for whole numbers (a word length reads "41", not "41.").
    fraction = [pl.lit("."), (digits % scale).cast(pl.String).str.zfill(decimals)] if decimals else []
    text = pl.concat_str(sign, (digits // scale).cast(pl.String), *fraction)
    return pl.when(value.is_finite()).then(text).otherwise(value.cast(pl.String))
