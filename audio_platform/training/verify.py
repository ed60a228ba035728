"""Second-stage keyword verification: Whisper confirms (or not) what the keyword spotter fired on.

The spotter (TC-ResNet, ~65k parameters) runs on every hop of a stream. Trained on a few hundred
speakers, its false accepts on new speakers are words that sound like the keyword ("go", "up",
"five" for "stop"), and no recipe change measured on ``../shared/kws`` (seed ensembles, focal
loss, more epochs) moved them: the errors are systematic. Whisper, trained on 680,000 hours,
tells those words apart. It hears only the audio around each event the spotter fires on, so a
stream's cost stays the spotter's; an event is kept when the keyword is among Whisper's
``hypotheses`` likeliest texts of it, so a keyword Whisper finds plausible but not likeliest
still passes (a wake word must not be missed for a spelling).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence

import numpy as np

from audio_platform.audio.asr import AsrConfig, WhisperTranscriber
from audio_platform.audio.dsp import SAMPLE_RATE
from audio_platform.evaluation.wer import normalize_text

# Audio heard around an event's windows: the onset or tail of a word cut at a window's edge.
VERIFY_PAD_S = 0.25
# Whisper hears 30 s at once: a longer event (the spotter firing through a stretch of speech) is
# heard in pieces of this length, and confirmed when any piece holds the keyword.
_PIECE_S = 20.0


def keyword_said(texts: Sequence[str], keyword: str) -> bool:
    """Whether one of ``texts`` holds ``keyword`` as whole words, after the WER normalisation
    (case, punctuation, and digits as words: "6." says "six")."""
    wanted = f" {normalize_text(keyword)} "
    return any(wanted in f" {normalize_text(text)} " for text in texts)


_LOAD_LOCK = threading.Lock()


def _transcriber(model: str) -> WhisperTranscriber:
    # One per model and process, shared by the detector of every keyword (and loaded once even
    # when several threads ask at the same time).
    with _LOAD_LOCK:
        return _cached_transcriber(model)


@functools.cache
def _cached_transcriber(model: str) -> WhisperTranscriber:
    return WhisperTranscriber(AsrConfig(model=model, language="en"))


class KeywordVerifier:
    """Confirms keyword clips by Whisper ``model``'s ``hypotheses`` likeliest texts."""

    def __init__(self, keyword: str, model: str, hypotheses: int) -> None:
        if hypotheses < 1:
            raise ValueError(f"hypotheses must be >= 1, got {hypotheses}")
        self.keyword, self.model, self.hypotheses = keyword, model, hypotheses

    def confirms(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """One boolean per 16 kHz clip: the keyword is among its likeliest texts."""
        if not len(clips):
            return np.zeros(0, dtype=bool)
        heard = _transcriber(self.model).hypotheses(list(clips), self.hypotheses)
        return np.array([keyword_said([h.text for h in said], self.keyword) for said in heard], dtype=bool)

    def confirms_events(self, audio_16k: np.ndarray, spans: Sequence[tuple[float, float]]) -> np.ndarray:
        """One boolean per ``(start_s, end_s)`` event of ``audio_16k``, heard with ``VERIFY_PAD_S``
        of audio either side (an event longer than ``_PIECE_S`` in overlapping pieces of that length,
        confirmed when any piece is)."""
        audio_16k = np.asarray(audio_16k, dtype=np.float32)
        pad, piece = round(VERIFY_PAD_S * SAMPLE_RATE), round(_PIECE_S * SAMPLE_RATE)
        clips: list[np.ndarray] = []
        owners: list[int] = []
        for event, (start, end) in enumerate(spans):
            first, last = max(0, round(start * SAMPLE_RATE) - pad), min(len(audio_16k), round(end * SAMPLE_RATE) + pad)
            if last <= first:
                continue  # no audio to hear: not confirmed
            # Pieces overlap by 2 pads, so that a word cut at one piece's end is whole in the next.
            for offset in range(first, max(first + 1, last - 2 * pad), piece - 2 * pad):
                clips.append(audio_16k[offset : min(last, offset + piece)])
                owners.append(event)
        confirmed = np.zeros(len(spans), dtype=bool)
        np.logical_or.at(confirmed, owners, self.confirms(clips))
        return confirmed
