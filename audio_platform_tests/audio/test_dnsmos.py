"""DNSMOS P.835 with the real model shipped in speechmos: the reference's numbers, its windowing of
short and long clips, and speech scoring above noise and silence."""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
import polars as pl
import pytest

from audio_platform.audio import dnsmos
from audio_platform.audio.decode import decode_mono_16k
from audio_platform.audio.dnsmos import WINDOW_SAMPLES, DnsmosScorer, window_starts, windows
from audio_platform.audio.dsp import SAMPLE_RATE
from audio_platform.audio.onnx_models import cpu_session
from audio_platform.audio.segments import segment_rows
from audio_platform.audio.vad import SpeechSegment
from audio_platform.storage.tables import SEGMENTS
from audio_platform_tests.conftest import CORPUS, requires_corpus

# 9.78 s of clean read speech: one 9.01-s window.
LJ = CORPUS / "audio/ljspeech/LJ050-0161.wav"


def _reference(audio: np.ndarray) -> tuple[float, float, float]:
    """speechmos.dnsmos.DNSMOS.__call__ (0.0.1.1), P.835 part, personalized=False, line for line;
    only the session is ours (speechmos's module needs librosa)."""
    fs, input_length = 16000, 9.01
    session = cpu_session(dnsmos.model_path(), 1)
    len_samples = int(input_length * fs)
    while len(audio) < len_samples:
        audio = np.append(audio, audio)
    num_hops = int(np.floor(len(audio) / fs) - input_length) + 1
    sig, bak, ovr = [], [], []
    for idx in range(num_hops):
        audio_seg = audio[int(idx * fs) : int((idx + input_length) * fs)]
        if len(audio_seg) < len_samples:
            continue
        raw = session.run(None, {"input_1": np.array(audio_seg).astype("float32")[np.newaxis, :]})[0][0]
        sig.append(np.poly1d([-0.08397278, 1.22083953, 0.0052439])(raw[0]))
        bak.append(np.poly1d([-0.13166888, 1.60915514, -0.39604546])(raw[1]))
        ovr.append(np.poly1d([-0.06766283, 1.11546468, 0.04602535])(raw[2]))
    return float(np.mean(sig)), float(np.mean(bak)), float(np.mean(ovr))


@requires_corpus
def test_speech_scores_above_white_noise_and_silence() -> None:
    scorer = DnsmosScorer()
    speech = scorer.score(decode_mono_16k(LJ))
    noise = scorer.score((0.1 * np.random.default_rng(0).standard_normal(5 * SAMPLE_RATE)).astype(np.float32))
    silence = scorer.score(np.zeros(5 * SAMPLE_RATE, dtype=np.float32))
    for scores in (speech, noise, silence):
        assert all(1.0 <= value <= 5.0 for value in scores), scores
    speech_ovrl, noise_ovrl, silence_ovrl = speech[2], noise[2], silence[2]
    assert speech_ovrl > 3.0  # LJSpeech is studio-clean read speech
    assert noise_ovrl < 1.5 and silence_ovrl < 2.0
    assert speech[1] > noise[1]  # background: white noise is the worst there is


@requires_corpus
def test_scores_are_the_references_for_clips_shorter_than_the_window() -> None:
    audio = decode_mono_16k(LJ)
    short = [audio[SAMPLE_RATE : SAMPLE_RATE + round(1.2 * SAMPLE_RATE)], audio[: 3 * SAMPLE_RATE]]
    # batch_windows=2: the 1.2-s clip's window and the first of the 3-s clip's three share a batch.
    scores = DnsmosScorer(batch_windows=2).score_many(short)
    for clip, got in zip(short, scores, strict=True):
        assert (got.sig, got.bak, got.ovrl) == pytest.approx(_reference(clip), abs=1e-5)
        assert 1.0 <= got.ovrl <= 5.0


def test_short_clips_are_doubled_until_they_fill_a_window() -> None:
    clip = np.linspace(-0.5, 0.5, round(1.2 * SAMPLE_RATE), dtype=np.float32)
    (window,) = windows(clip)  # 8 copies: 9.6 s, one window
    assert window.shape == (WINDOW_SAMPLES,) and window.dtype == np.float32
    assert np.array_equal(window, np.tile(clip, 8)[:WINDOW_SAMPLES])
    # 0.5 s: 32 copies, 16 s, seven windows 1 s apart.
    assert windows(clip[: SAMPLE_RATE // 2]).shape == (7, WINDOW_SAMPLES)
    # One sample is a clip too.
    assert windows(np.full(1, 0.1, dtype=np.float32)).shape[1] == WINDOW_SAMPLES


def test_window_positions_follow_the_reference_including_the_windows_it_skips() -> None:
    seconds = SAMPLE_RATE
    assert window_starts(WINDOW_SAMPLES) == [0]
    assert window_starts(11 * seconds) == [0, seconds]
    # Float rounding makes the reference's windows 7-23 one sample short, so it skips them:
    # a 30-s clip is scored on its first seven windows.
    assert window_starts(30 * seconds) == [i * seconds for i in range(7)]
    assert window_starts(40 * seconds) == [i * seconds for i in (*range(7), *range(24, 31))]


def test_clip_values_are_checked() -> None:
    with pytest.raises(ValueError, match="at least one sample"):
        windows(np.zeros(0, dtype=np.float32))
    with pytest.raises(ValueError, match="1-D"):
        windows(np.zeros((2, 100), dtype=np.float32))
    with pytest.raises(ValueError, match="float"):
        windows(np.zeros(100, dtype=np.int16))
    with pytest.raises(ValueError, match="NaN"):
        windows(np.array([0.0, np.nan], dtype=np.float32))
    # Resampling overshoot past full scale is clipped, as the reference only accepts [-1, 1].
    assert windows(np.full(100, 1.2, dtype=np.float32)).max() == 1.0
    with pytest.raises(ValueError, match="num_threads"):
        DnsmosScorer(num_threads=0)


def test_a_missing_speechmos_package_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    find_spec = importlib.util.find_spec

    def without_speechmos(name: str, *args: Any) -> Any:
        return None if name == "speechmos" else find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_speechmos)
    with pytest.raises(RuntimeError, match="pip install speechmos"):
        DnsmosScorer()


@requires_corpus
def test_segment_rows_carry_dnsmos() -> None:
    audio = decode_mono_16k(LJ)
    spans = [SpeechSegment(0.2, 5.0, 0.9), SpeechSegment(5.0, 9.7, 0.9)]  # one window each
    rows = segment_rows("f" * 64, "s-0000", audio, spans, DnsmosScorer())
    frame = SEGMENTS.conform(pl.DataFrame(rows, schema=SEGMENTS.schema))
    assert frame.select("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl").null_count().sum_horizontal().item() == 0
    assert frame["dnsmos_ovrl"].is_between(2.5, 4.0).all()
    (first,) = DnsmosScorer().score_many([audio[round(0.2 * SAMPLE_RATE) : 5 * SAMPLE_RATE]])
    row = frame.row(0, named=True)
    assert (row["dnsmos_sig"], row["dnsmos_bak"], row["dnsmos_ovrl"]) == (first.sig, first.bak, first.ovrl)
