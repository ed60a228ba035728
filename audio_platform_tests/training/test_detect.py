from __future__ import annotations

import numpy as np
import pytest

from audio_platform.training.detect import Detection, detect_stream, events_from_scores, window_scores
from audio_platform_tests.training.helpers import untrained_bundle


def _events(scores: list[float], **kwargs: float) -> list[Detection]:
    settings = {"hop_s": 0.1, "window_s": 1.0, "threshold": 0.5, "smoothing": 1, "refractory_s": 1.0} | kwargs
    return events_from_scores(np.array(scores), **settings)  # type: ignore[arg-type]


def test_one_burst_is_one_event_with_its_peak() -> None:
    assert _events([0, 0, 0.9, 0.95, 0.9, 0, 0]) == [Detection(0.2, 1.4, 0.95)]


def test_refractory_period_merges_repeats() -> None:
    near = [0, 0.9, 0, 0, 0, 0, 0.8, 0]  # second crossing 0.5 s after the first
    assert _events(near) == [Detection(0.1, 1.6, 0.9)]
    far = [0.9] + [0.0] * 14 + [0.8]  # 1.5 s apart
    assert _events(far) == [Detection(0.0, 1.0, 0.9), Detection(1.5, 2.5, 0.8)]
    assert len(_events(near, refractory_s=0.0)) == 2
    assert len(_events([0.9, 0.9, 0.9], refractory_s=0.0)) == 1  # adjacent windows are always one event


def test_smoothing_suppresses_a_single_spike() -> None:
    assert _events([0, 0, 1.0, 0, 0], smoothing=3) == []
    # Causal average of the last 3 windows: fires from the second high window on.
    assert _events([0, 0, 1.0, 1.0, 1.0, 0, 0], smoothing=3) == [Detection(0.3, 1.5, 1.0)]


def test_nothing_above_threshold_and_bad_arguments() -> None:
    assert _events([0.1, 0.2]) == []
    with pytest.raises(ValueError, match="smoothing >= 1"):
        _events([0.1], smoothing=0)


@pytest.mark.parametrize(("seconds", "windows"), [(0.3, 1), (0.5, 1), (1.0, 6), (1.05, 7), (2.0, 16)])
def test_windows_run_until_their_centre_passes_the_end(seconds: float, windows: int) -> None:
    assert len(window_scores(untrained_bundle(), np.zeros(round(seconds * 16000), np.float32))) == windows


def test_window_scores_match_scoring_each_slice() -> None:
    bundle = untrained_bundle()
    audio = np.random.default_rng(0).standard_normal(16000 * 3).astype(np.float32) * 0.1
    padded = np.concatenate([audio, np.zeros(16000, np.float32)])
    slices = np.stack([padded[i * 1600 : i * 1600 + 16000] for i in range(26)])
    np.testing.assert_allclose(window_scores(bundle, audio), bundle.score(slices), rtol=1e-5, atol=1e-6)


def test_detect_stream_uses_the_bundle_threshold_unless_given() -> None:
    audio = np.zeros(16000 * 3, np.float32)
    assert detect_stream(untrained_bundle(threshold=1.01), audio) == []
    assert [(d.start_s, d.end_s) for d in detect_stream(untrained_bundle(threshold=1.01), audio, threshold=0.0)] == [
        (0.0, 3.0)
    ]
    with pytest.raises(ValueError, match="1-D mono"):
        detect_stream(untrained_bundle(), np.zeros((2, 16000), np.float32))
