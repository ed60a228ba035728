from __future__ import annotations

import pytest

from audio_platform.evaluation.vad_metrics import (
    FrameCounts,
    FrameScores,
    frame_counts,
    frame_scores,
    pooled_frame_scores,
    speech_mask,
)


def _approx(scores: FrameScores, precision: float, recall: float, f1: float) -> None:
    assert (scores.precision, scores.recall, scores.f1) == pytest.approx((precision, recall, f1))


def test_perfect_prediction() -> None:
    spans = [(0.5, 1.0), (2.0, 3.5)]
    _approx(frame_scores(spans, spans, 4.0), 1.0, 1.0, 1.0)


def test_half_overlap() -> None:
    # 50 frames each of TP, FP and FN on a 10 ms grid.
    assert frame_counts([(0.5, 1.5)], [(0.0, 1.0)], 2.0) == FrameCounts(50, 50, 50)
    _approx(frame_scores([(0.5, 1.5)], [(0.0, 1.0)], 2.0), 0.5, 0.5, 0.5)


def test_unequal_precision_and_recall() -> None:
    # Predicted 0.0-1.0 inside reference 0.0-4.0: TP 100, FN 300, FP 0.
    _approx(frame_scores([(0.0, 1.0)], [(0.0, 4.0)], 5.0), 1.0, 0.25, 0.4)


def test_disjoint_spans_score_zero() -> None:
    _approx(frame_scores([(2.0, 3.0)], [(0.0, 1.0)], 4.0), 0.0, 0.0, 0.0)


def test_empty_denominators() -> None:
    # Nothing to find and nothing found: perfect.
    _approx(frame_scores([], [], 3.0), 1.0, 1.0, 1.0)
    # Nothing predicted: no false alarms, but nothing recalled.
    _approx(frame_scores([], [(0.0, 1.0)], 3.0), 1.0, 0.0, 0.0)
    # Speech predicted in a file without speech.
    _approx(frame_scores([(0.0, 1.0)], [], 3.0), 0.0, 1.0, 0.0)


def test_overlapping_spans_are_unioned_and_clipped() -> None:
    _approx(frame_scores([(0.0, 1.0), (0.5, 1.0), (-1.0, 0.2)], [(0.0, 1.0)], 2.0), 1, 1, 1)
    assert speech_mask([(1.5, 9.0)], 2.0).sum() == 50


def test_frames_count_when_their_centre_is_inside() -> None:
    assert speech_mask([(0.004, 0.016)], 0.03).tolist() == [True, True, False]
    assert speech_mask([(0.006, 0.014)], 0.03).tolist() == [False, False, False]
    assert speech_mask([], 0.025).size == 3  # a partial last frame still counts


def test_custom_frame_size() -> None:
    assert frame_counts([(0.0, 1.0)], [(0.5, 1.0)], 1.0, frame_s=0.1) == FrameCounts(5, 5, 0)


def test_pooled_scores_sum_counts_across_files() -> None:
    files = [
        ([(0.0, 10.0)], [(0.0, 10.0)], 10.0),  # TP 1000
        ([], [(0.0, 1.0)], 1.0),  # FN 100
    ]
    _approx(pooled_frame_scores(files), 1.0, 1000 / 1100, 2000 / 2100)
    # The macro mean of per-file F1 would be 0.5: pooling weighs files by their frames.
    _approx(pooled_frame_scores([]), 1.0, 1.0, 1.0)


def test_invalid_input() -> None:
    with pytest.raises(ValueError, match="span"):
        frame_scores([(1.0, 0.5)], [], 2.0)
    with pytest.raises(ValueError, match="span"):
        frame_scores([], [(0.0, float("nan"))], 2.0)
    with pytest.raises(ValueError, match="frame_s"):
        frame_scores([], [], 2.0, frame_s=0.0)
    with pytest.raises(ValueError, match="duration_s"):
        frame_scores([], [], -1.0)
