"""Frame-level voice activity detection metrics.

Spans are ``(start_s, end_s)`` pairs in seconds. Both sides are rasterised onto a common
grid of ``frame_s`` frames, and a frame counts as speech when its centre lies inside any
span (overlapping spans are simply unioned). No collar is applied around boundaries.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

Span = tuple[float, float]


@dataclass(frozen=True)
class FrameScores:
    precision: float
    recall: float
    f1: float


@dataclass(frozen=True)
class FrameCounts:
    """Speech-frame confusion counts; add them to pool files (micro-averaging)."""

    true_positive: int = 0
    false_positive: int = 0
    false_negative: int = 0

    def __add__(self, other: FrameCounts) -> FrameCounts:
        return FrameCounts(
            self.true_positive + other.true_positive,
            self.false_positive + other.false_positive,
            self.false_negative + other.false_negative,
        )

    def scores(self) -> FrameScores:
        """Precision, recall and F1; an empty denominator means nothing went wrong (1.0)."""
        tp, fp, fn = self.true_positive, self.false_positive, self.false_negative
        precision = tp / (tp + fp) if tp + fp else 1.0
        recall = tp / (tp + fn) if tp + fn else 1.0
        # 2TP / (2TP + FP + FN) equals the harmonic mean whenever both are defined.
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
        return FrameScores(precision, recall, f1)


def speech_mask(spans: Sequence[Span], duration_s: float, frame_s: float = 0.01) -> np.ndarray:
    """Boolean speech flag per ``frame_s`` frame of a ``duration_s`` file."""
    _check_grid(duration_s, frame_s)
    n_frames = math.ceil(round(duration_s / frame_s, 6))
    centres = (np.arange(n_frames) + 0.5) * frame_s
    mask = np.zeros(n_frames, dtype=bool)
    for start, end in spans:
        if not (math.isfinite(start) and math.isfinite(end) and start <= end):
            raise ValueError(f"invalid span ({start}, {end}): need finite start <= end")
        mask[np.searchsorted(centres, start) : np.searchsorted(centres, end)] = True
    return mask


def frame_counts(
    predicted: Sequence[Span],
    reference: Sequence[Span],
    duration_s: float,
    frame_s: float = 0.01,
) -> FrameCounts:
    pred = speech_mask(predicted, duration_s, frame_s)
    ref = speech_mask(reference, duration_s, frame_s)
    return FrameCounts(
        true_positive=int(np.count_nonzero(pred & ref)),
        false_positive=int(np.count_nonzero(pred & ~ref)),
        false_negative=int(np.count_nonzero(~pred & ref)),
    )


def frame_scores(
    predicted: Sequence[Span],
    reference: Sequence[Span],
    duration_s: float,
    frame_s: float = 0.01,
) -> FrameScores:
    """Frame-level precision/recall/F1 of predicted speech against reference speech."""
    return frame_counts(predicted, reference, duration_s, frame_s).scores()


def pooled_frame_scores(
    files: Iterable[tuple[Sequence[Span], Sequence[Span], float]],
    frame_s: float = 0.01,
) -> FrameScores:
    """Corpus-level scores from ``(predicted, reference, duration_s)`` per file.

    Counts are summed before dividing (micro-average), so long files weigh more and files
    with no reference speech still contribute their false alarms.
    """
    total = FrameCounts()
    for predicted, reference, duration_s in files:
        total += frame_counts(predicted, reference, duration_s, frame_s)
    return total.scores()


def _check_grid(duration_s: float, frame_s: float) -> None:
    if not (math.isfinite(frame_s) and frame_s > 0.0):
        raise ValueError(f"frame_s must be a finite number > 0, got {frame_s}")
    if not (math.isfinite(duration_s) and duration_s >= 0.0):
        raise ValueError(f"duration_s must be a finite number >= 0, got {duration_s}")
