"""Streaming detection: score a sliding window, smooth, threshold, and merge repeats into events."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from audio_platform.audio.dsp import SAMPLE_RATE
from audio_platform.training.model import ModelBundle

DEFAULT_HOP_S = 0.1
DEFAULT_SMOOTHING = 3  # windows in the causal moving average
DEFAULT_REFRACTORY_S = 1.0
_WINDOWS_PER_BATCH = 256


@dataclass(frozen=True)
class Detection:
    """One keyword event: from the first to the end of the last window that fired, in seconds."""

    start_s: float
    end_s: float
    score: float


def window_scores(bundle: ModelBundle, audio_16k: np.ndarray, hop_s: float = DEFAULT_HOP_S) -> np.ndarray:
    """Probability for windows starting every ``hop_s`` until a window's centre passes the end.

    The audio is flushed with silence, as a live stream would go on, so that a keyword ending the
    recording is also seen centred in a window, as in training.
    """
    audio = np.asarray(audio_16k, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"audio_16k must be 1-D mono samples, got shape {audio.shape}")
    window, hop = bundle.clip_samples, round(hop_s * SAMPLE_RATE)
    if hop < 1:
        raise ValueError(f"hop_s must be at least one sample, got {hop_s}")
    count = max(1, math.ceil((len(audio) - window / 2) / hop) + 1)
    padded = np.zeros(window + (count - 1) * hop, dtype=np.float32)
    padded[: len(audio)] = audio
    # unfold is a strided view, so only one batch of windows is ever copied.
    windows = torch.from_numpy(padded).unfold(0, window, hop)
    return np.concatenate(
        [bundle.score(windows[i : i + _WINDOWS_PER_BATCH].numpy()) for i in range(0, count, _WINDOWS_PER_BATCH)]
    )


def events_from_scores(
    scores: np.ndarray,
    hop_s: float,
    window_s: float,
    threshold: float,
    smoothing: int = DEFAULT_SMOOTHING,
    refractory_s: float = DEFAULT_REFRACTORY_S,
) -> list[Detection]:
    """Events from per-window scores (window ``i`` covers ``[i*hop_s, i*hop_s + window_s]``).

    Scores are smoothed by a causal moving average of ``smoothing`` windows, so that this works
    on a live stream too. Windows at or above ``threshold`` fire. A firing window that is adjacent
    to, or at most ``refractory_s`` after, the previous firing window belongs to the same event,
    so one spoken keyword is counted once. The event score is the highest smoothed score in it.
    """
    if smoothing < 1 or refractory_s < 0 or hop_s <= 0:
        raise ValueError("need smoothing >= 1, refractory_s >= 0 and hop_s > 0")
    values = np.asarray(scores, dtype=np.float64)
    counts = np.minimum(np.arange(1, len(values) + 1), smoothing)
    smoothed = np.convolve(values, np.ones(smoothing))[: len(values)] / counts

    events: list[Detection] = []
    previous = -1
    for i in np.flatnonzero(smoothed >= threshold):
        start, end, score = (
            round(float(i * hop_s), 3),
            round(float(i * hop_s + window_s), 3),
            float(smoothed[i]),
        )
        if events and (i - previous == 1 or (i - previous) * hop_s <= refractory_s):
            last = events[-1]
            events[-1] = Detection(last.start_s, end, max(last.score, score))
        else:
            events.append(Detection(start, end, score))
        previous = int(i)
    return events


def detect_stream(
    model_bundle: ModelBundle,
    audio_16k: np.ndarray,
    threshold: float | None = None,
    hop_s: float = DEFAULT_HOP_S,
    *,
    smoothing: int = DEFAULT_SMOOTHING,
    refractory_s: float = DEFAULT_REFRACTORY_S,
) -> list[Detection]:
    """Keyword events in 16 kHz mono audio; ``threshold`` defaults to the bundle's own. With the
    bundle's verifier, only the events in which Whisper hears the keyword."""
    scores = window_scores(model_bundle, audio_16k, hop_s)
    chosen = model_bundle.threshold if threshold is None else threshold
    events = events_from_scores(scores, hop_s, model_bundle.clip_s, chosen, smoothing, refractory_s)
    duration = round(len(audio_16k) / SAMPLE_RATE, 3)
    events = [replace(event, end_s=min(event.end_s, duration)) for event in events]
    verifier = model_bundle.verifier
    if verifier is None or not events:
        return events
    confirmed = verifier.confirms_events(audio_16k, [(event.start_s, event.end_s) for event in events])
    return [event for event, kept in zip(events, confirmed, strict=True) if kept]
