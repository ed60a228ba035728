"""TOPSIS scoring of segments.

Textbook TOPSIS (Hwang & Yoon 1981) takes its ideal and anti-ideal points
from the batch being ranked, so a segment's score changes whenever other
segments are added or removed: scores from different shards or runs are not
comparable. :func:`topsis_fixed` instead normalizes every criterion against a
*fixed* anti-ideal..ideal range, so a row's score depends on that row alone.
:func:`topsis_classic` is kept as the reference implementation (and is what
the shared distance/closeness step is verified against).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Criterion:
    """One scoring criterion with fixed reference points.

    Values at or beyond ``ideal`` score as the ideal, values at or beyond
    ``anti_ideal`` as the anti-ideal; ``benefit`` states the direction and
    must agree with the reference points (``ideal > anti_ideal`` iff benefit).
    """

    name: str
    weight: float
    benefit: bool
    ideal: float
    anti_ideal: float

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("criterion name must be non-empty")
        if not math.isfinite(self.weight) or self.weight < 0:
            raise ValueError(f"criterion {self.name!r}: weight must be finite and >= 0, got {self.weight}")
        if not (math.isfinite(self.ideal) and math.isfinite(self.anti_ideal)):
            raise ValueError(f"criterion {self.name!r}: ideal and anti_ideal must be finite")
        if self.ideal == self.anti_ideal:
            raise ValueError(f"criterion {self.name!r}: ideal and anti_ideal must differ")
        if self.benefit != (self.ideal > self.anti_ideal):
            kind = "benefit" if self.benefit else "cost"
            raise ValueError(
                f"criterion {self.name!r}: a {kind} criterion needs ideal "
                f"{'>' if self.benefit else '<'} anti_ideal "
                f"(got ideal={self.ideal}, anti_ideal={self.anti_ideal})"
            )


# Column names refer to the segments table after criteria.add_text_criteria.
DEFAULT_CRITERIA: tuple[Criterion, ...] = (
    # >= 40 dB is studio-clean; at 0 dB noise is as loud as the speech.
    Criterion("snr_db", weight=2.0, benefit=True, ideal=40.0, anti_ideal=0.0),
    # DNSMOS P.835 overall quality (audio.dnsmos), the one criterion that hears the speech
    # itself: SNR misses reverberation, codec and bandwidth damage. OVRL cannot pass 3.93 (the
    # reference's mapping of the model's 5); on the shared corpus clean read speech (LJSpeech,
    # LibriVox, VCTK) scores 2.6-3.5 (LJSpeech median 3.26), environmental noise 1.1, and
    # everything under 2 is noise, music or a fragment. Weight 0 by default: the scores are only
    # measured with AUDIO_PLATFORM_VAD_DNSMOS=true (their CPU cost exceeds the ASR's); give it a
    # weight (e.g. 1.0) then. A zero weight leaves the null column out of every score.
    Criterion("dnsmos_ovrl", weight=0.0, benefit=True, ideal=3.5, anti_ideal=2.0),
    # Any full-scale sample is suspect; 1% of samples at full scale is
    # audibly, irrecoverably distorted.
    Criterion("clipping_ratio", weight=1.0, benefit=False, ideal=0.0, anti_ideal=0.01),
    # Level is fixable by gain, so only extremes matter: within 5 dB of the
    # -23 dBFS target is ideal; 30 dB below it (-53 dBFS) is so quiet that
    # quantization and noise dominate after gain.
    Criterion("loudness_deviation_db", weight=0.5, benefit=False, ideal=5.0, anti_ideal=30.0),
    # Mean VAD speech probability; 0.5 is the usual VAD decision threshold.
    Criterion("speech_prob", weight=1.0, benefit=True, ideal=1.0, anti_ideal=0.5),
    # Whisper treats avg_logprob < -1.0 as a failed decode (its
    # logprob_threshold); confident transcripts sit around -0.1..-0.3.
    Criterion("avg_logprob", weight=2.0, benefit=True, ideal=-0.1, anti_ideal=-1.0),
    # 0.6 is Whisper's no_speech_threshold.
    Criterion("no_speech_prob", weight=1.0, benefit=False, ideal=0.0, anti_ideal=0.6),
    # gzip ratio of the transcript: ordinary text stays below ~1.8; Whisper
    # flags > 2.4 as repetitive/hallucinated output.
    Criterion("compression_ratio", weight=1.5, benefit=False, ideal=1.8, anti_ideal=2.4),
    # Share of repeated word 3-grams (criteria.repeated_ngram_ratio): catches loops too
    # short for the gzip ratio to notice. Real speech stays below 0.1 (a rhetorical
    # repeat); 0.5 is the policy's rejection gate. Low weight: it overlaps
    # compression_ratio on long loops, and the gate handles clear cases.
    # The other plausibility columns are gates only: filler_phrase is a yes/no
    # verdict, longest_word_chars matters only past garbage length, and
    # chars_per_second would score the same rate as speaking_rate_deviation twice.
    Criterion("repeated_ngram_ratio", weight=0.5, benefit=False, ideal=0.1, anti_ideal=0.5),
    # Octaves from 2.7 words/s: within 2**0.5 (1.9-3.8 w/s) is natural;
    # 2**1.5 = 2.8x too slow or fast (< 0.95 or > 7.6 w/s) means the text
    # does not match the audio.
    Criterion("speaking_rate_deviation", weight=1.0, benefit=False, ideal=0.5, anti_ideal=1.5),
    # Already a [0, 1] fitness (1 inside the 2-15 s band).
    Criterion("duration_fitness", weight=1.0, benefit=True, ideal=1.0, anti_ideal=0.0),
)


def _closeness(weighted: FloatArray, ideal: FloatArray, anti_ideal: FloatArray) -> FloatArray:
    """TOPSIS distance step: closeness C = d- / (d+ + d-) per row.

    Rows equidistant at zero from both points (all criteria degenerate) get 0.5.
    """
    d_ideal = np.sqrt(np.sum((weighted - ideal) ** 2, axis=1))
    d_anti = np.sqrt(np.sum((weighted - anti_ideal) ** 2, axis=1))
    total = d_ideal + d_anti
    safe_total = np.where(total > 0, total, 1.0)
    return np.where(total > 0, d_anti / safe_total, 0.5)


def _as_matrix(matrix: np.ndarray, n_criteria: int) -> FloatArray:
    values = np.asarray(matrix, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != n_criteria:
        raise ValueError(f"matrix must have shape (n_rows, {n_criteria}), got {values.shape}")
    return values


def topsis_classic(matrix: np.ndarray, weights: Sequence[float], benefit: Sequence[bool]) -> FloatArray:
    """Textbook TOPSIS (Hwang & Yoon 1981): closeness of each row, in [0, 1].

    Vector normalization per column, weighting, ideal/anti-ideal taken from
    the batch (best/worst per column), Euclidean distances, C = d-/(d+ + d-).
    Scores are relative to the batch; use :func:`topsis_fixed` for scores
    that must be comparable across batches.
    """
    w = np.asarray(weights, dtype=np.float64)
    is_benefit = np.asarray(benefit, dtype=bool)
    if w.ndim != 1 or is_benefit.shape != w.shape:
        raise ValueError("weights and benefit must be 1-D sequences of equal length")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("weights must be finite and >= 0")
    values = _as_matrix(matrix, w.size)
    if not np.all(np.isfinite(values)):
        raise ValueError("topsis_classic needs a finite matrix")
    if values.shape[0] == 0:
        return np.zeros(0)
    norms = np.sqrt(np.sum(values**2, axis=0))
    normalized = np.divide(values, norms, out=np.zeros_like(values), where=norms > 0)
    weighted = normalized * w
    best = np.where(is_benefit, weighted.max(axis=0), weighted.min(axis=0))
    worst = np.where(is_benefit, weighted.min(axis=0), weighted.max(axis=0))
    return _closeness(weighted, best, worst)


def topsis_fixed(matrix: np.ndarray, criteria: Sequence[Criterion]) -> FloatArray:
    """Row-independent TOPSIS closeness in [0, 1] against fixed reference points.

    Each column is mapped linearly so that its criterion's anti-ideal is 0 and
    its ideal is 1, then clipped to [0, 1] (values beyond the ideal are no
    better than the ideal); NaN maps to 0, the anti-ideal. Weights are
    normalized to sum 1, so the ideal point is the weight vector and the
    anti-ideal point is the origin. Exactly 1.0 at the ideal, 0.0 at the
    anti-ideal.
    """
    _validate_criteria(criteria)
    values = _as_matrix(matrix, len(criteria))
    ideal = np.array([c.ideal for c in criteria])
    anti_ideal = np.array([c.anti_ideal for c in criteria])
    weights = np.array([c.weight for c in criteria])
    weights = weights / weights.sum()
    # Dividing by (ideal - anti_ideal) flips cost criteria, so both
    # directions end up as "1 = best".
    fitness = np.clip((values - anti_ideal) / (ideal - anti_ideal), 0.0, 1.0)
    fitness = np.nan_to_num(fitness, nan=0.0)
    return _closeness(fitness * weights, weights, np.zeros_like(weights))


def _validate_criteria(criteria: Sequence[Criterion]) -> None:
    if not criteria:
        raise ValueError("at least one criterion is required")
    names = [c.name for c in criteria]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate criteria: {duplicates}")
    if sum(c.weight for c in criteria) <= 0:
        raise ValueError("at least one criterion needs a positive weight")


def score_frame(frame: pl.DataFrame, criteria: Sequence[Criterion] = DEFAULT_CRITERIA) -> pl.DataFrame:
    """Return ``frame`` plus ``topsis_score`` (Float64, in [0, 1]) via :func:`topsis_fixed`.

    Every criterion needs a column of the same name. Null and NaN values are
    scored as the anti-ideal: an unmeasured segment must not outrank a
    measured good one.
    """
    _validate_criteria(criteria)
    missing = [c.name for c in criteria if c.name not in frame.columns]
    if missing:
        raise ValueError(f"score_frame: missing criterion columns {missing}")
    matrix = frame.select(pl.col(c.name).cast(pl.Float64).fill_null(float("nan")) for c in criteria).to_numpy()
    return frame.with_columns(topsis_score=pl.Series(topsis_fixed(matrix, criteria), dtype=pl.Float64))


_CRITERION_FIELDS = ("weight", "benefit", "ideal", "anti_ideal")


def parse_criteria(spec: Mapping[str, Mapping[str, Any]]) -> tuple[Criterion, ...]:
    """Build criteria from config: per-name overrides of :data:`DEFAULT_CRITERIA`.

    ``spec`` maps a default criterion's name to any of ``weight``,
    ``benefit``, ``ideal``, ``anti_ideal``; unspecified fields and criteria
    keep their defaults, and ``weight: 0`` disables a criterion. Criteria
    outside the defaults have no column producer, so they are rejected.
    Raises ValueError naming the offending criterion and field.
    """
    defaults = {c.name: c for c in DEFAULT_CRITERIA}
    unknown = sorted(set(spec) - set(defaults))
    if unknown:
        raise ValueError(f"unknown criteria {unknown}; known: {sorted(defaults)}")
    overrides: dict[str, Criterion] = {}
    for name, fields in spec.items():
        if not isinstance(fields, Mapping):
            raise ValueError(f"criterion {name!r}: expected a mapping of fields, got {fields!r}")
        bad_keys = sorted(set(fields) - set(_CRITERION_FIELDS))
        if bad_keys:
            raise ValueError(f"criterion {name!r}: unknown fields {bad_keys}; allowed: {list(_CRITERION_FIELDS)}")
        base = defaults[name]
        overrides[name] = Criterion(
            name=name,
            weight=_number(name, "weight", fields.get("weight", base.weight)),
            benefit=_flag(name, "benefit", fields.get("benefit", base.benefit)),
            ideal=_number(name, "ideal", fields.get("ideal", base.ideal)),
            anti_ideal=_number(name, "anti_ideal", fields.get("anti_ideal", base.anti_ideal)),
        )
    criteria = tuple(overrides.get(c.name, c) for c in DEFAULT_CRITERIA)
    _validate_criteria(criteria)
    return criteria


def _number(name: str, key: str, value: object) -> float:
    # bool is an int subclass, but `weight: true` is a config mistake, not 1.0.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"criterion {name!r}: {key} must be a number, got {value!r}")
    return float(value)


def _flag(name: str, key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"criterion {name!r}: {key} must be a bool, got {value!r}")
    return value
