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


@dataclass(frozen=True)
class CurationPolicy:
    """Thresholds for :func:`decide`. An empty ``languages`` accepts any language."""

    min_score: float = 0.5
    min_duration_s: float = 1.0
    max_duration_s: float = 30.0
    languages: tuple[str, ...] = ("en",)
    max_no_speech_prob: float = 0.6
    max_compression_ratio: float = 2.4
    require_text: bool = True
    # Not in the score alone: TOPSIS is compensatory, so a heavily clipped
    # segment with otherwise perfect criteria still scores ~0.75, yet
    # clipping is irrecoverable distortion. 1% matches the criterion's
    # anti-ideal; 1.0 disables the gate.
    max_clipping_ratio: float = 0.01

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
        if not 0.0 <= self.max_no_speech_prob <= 1.0:
            raise ValueError(f"max_no_speech_prob must be in [0, 1], got {self.max_no_speech_prob}")
        if not self.max_compression_ratio > 0:
            raise ValueError(f"max_compression_ratio must be > 0, got {self.max_compression_ratio}")
        if not 0.0 <= self.max_clipping_ratio <= 1.0:
            raise ValueError(f"max_clipping_ratio must be in [0, 1], got {self.max_clipping_ratio}")


# The rules of ``decide`` by stable name, in order: metadata keys and metrics labels.
REJECTION_RULES = (
    "empty_transcript",
    "language",
    "duration",
    "clipping_ratio",
    "no_speech_prob",
    "compression_ratio",
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
    3. ``duration 0.6 s < 1.0 s`` / ``duration 31.0 s > 30.0 s``
    4. ``clipping_ratio 0.048 > 0.010``
    5. ``no_speech_prob 0.82 > 0.60``
    6. ``compression_ratio 2.71 > 2.40``
    7. ``topsis_score 0.41 < 0.50``

    A null/NaN value fails its rule as ``<column> missing``. Shown values are
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
    rules += [
        _bound_rule("duration_s", "duration", "<", policy.min_duration_s, 1, " s"),
        _bound_rule("duration_s", "duration", ">", policy.max_duration_s, 1, " s"),
        _bound_rule("clipping_ratio", "clipping_ratio", ">", policy.max_clipping_ratio, 3),
        _bound_rule("no_speech_prob", "no_speech_prob", ">", policy.max_no_speech_prob, 2),
        _bound_rule("compression_ratio", "compression_ratio", ">", policy.max_compression_ratio, 2),
        _bound_rule("topsis_score", "topsis_score", "<", policy.min_score, 2),
    ]
    return rules


def _bound_rule(
    column: str, label: str, op: str, limit: float, decimals: int, unit: str = ""
) -> tuple[str, pl.Expr, pl.Expr]:
    value = pl.col(column).cast(pl.Float64)
    missing = value.is_null() | value.is_nan()
    out_of_bounds = value < limit if op == "<" else value > limit
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
    text = pl.concat_str(
        sign,
        (digits // scale).cast(pl.String),
        pl.lit("."),
        (digits % scale).cast(pl.String).str.zfill(decimals),
    )
    return pl.when(value.is_finite()).then(text).otherwise(value.cast(pl.String))
