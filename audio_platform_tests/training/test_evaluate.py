from __future__ import annotations

import numpy as np
import pytest

from audio_platform.training.dataset import KeywordDataset
from audio_platform.training.evaluate import EvalMetrics, choose_threshold, classification_metrics, evaluate_bundle
from audio_platform.training.train import train_keyword_model
from audio_platform_tests.training.helpers import FAST


def test_classification_metrics() -> None:
    scores = np.array([0.9, 0.8, 0.4, 0.3, 0.2])
    labels = np.array([1, 0, 1, 0, 0])
    assert classification_metrics(scores, labels, 0.5) == pytest.approx((0.5, 0.5, 0.5))
    assert classification_metrics(scores, labels, 0.95) == (0.0, 0.0, 0.0)


def test_threshold_sits_midway_when_classes_separate() -> None:
    assert choose_threshold(np.array([0.1, 0.2, 0.3, 0.7, 0.9]), np.array([0, 0, 0, 1, 1])) == pytest.approx(0.5)


def test_threshold_maximises_f1() -> None:
    # Cuts after 0.9, 0.8, 0.7, 0.1 give F1 0.67, 0.5, 0.8, 0.67: the best keeps both positives.
    assert choose_threshold(np.array([0.9, 0.8, 0.7, 0.1]), np.array([1, 0, 1, 0])) == pytest.approx(0.4)
    # Tied scores cannot be split.
    assert choose_threshold(np.array([0.5, 0.5, 0.2]), np.array([1, 0, 0])) == pytest.approx(0.35)
    with pytest.raises(ValueError, match="at least one positive"):
        choose_threshold(np.array([0.5]), np.array([0]))


def test_threshold_comes_from_validation(tone_dataset: KeywordDataset) -> None:
    bundle = train_keyword_model(tone_dataset, FAST).bundle
    mask = tone_dataset.mask("validation")
    assert bundle.threshold == choose_threshold(bundle.score(tone_dataset.waves[mask]), tone_dataset.labels[mask])


def test_metrics_round_trip_through_numbers() -> None:
    metrics = EvalMetrics(0.4, 0.5, 0.6, 0.55, 0.4, 3, 0.5, 6.0, 10, 90, 7, "abc")
    assert EvalMetrics.from_numeric(metrics.numeric(), "abc") == metrics


def test_confusion_counts_the_test_clips(tone_dataset: KeywordDataset) -> None:
    bundle = train_keyword_model(tone_dataset, FAST).bundle
    metrics = evaluate_bundle(bundle, tone_dataset)
    mask = tone_dataset.mask("test")
    predicted = bundle.score(tone_dataset.waves[mask]) >= bundle.threshold
    truth = tone_dataset.labels[mask] > 0.5
    expected = (predicted & truth, predicted & ~truth, ~predicted & truth, ~predicted & ~truth)
    assert metrics.confusion() == tuple(int(cell.sum()) for cell in expected)
    assert sum(metrics.confusion()) == metrics.positives + metrics.negatives


def test_threshold_for_a_target_recall_is_the_highest_that_keeps_it() -> None:
    scores = np.array([0.95, 0.9, 0.8, 0.6, 0.5, 0.4, 0.3])
    labels = np.array([1, 0, 1, 1, 0, 1, 0])
    assert choose_threshold(scores, labels, target_recall=0.5) == pytest.approx(0.7)  # 2 of 4 positives
    assert choose_threshold(scores, labels, target_recall=0.75) == pytest.approx(0.55)
    assert choose_threshold(scores, labels, target_recall=1.0) == pytest.approx(0.35)
    # Ties are never split: both 0.5 scores fall on the same side.
    assert choose_threshold(np.array([0.9, 0.5, 0.5]), np.array([1, 1, 0]), target_recall=1.0) == pytest.approx(0.4995)
