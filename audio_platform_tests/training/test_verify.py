"""Whisper as the keyword spotter's second stage: what it confirms, how training decides to keep
it, and how detection and evaluation use it. Real tiny.en and espeak-ng speech, no mocks."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.signal import resample_poly

from audio_platform.audio.asr import AsrConfig, WhisperTranscriber
from audio_platform.training.dataset import load_keyword_dataset
from audio_platform.training.detect import detect_stream
from audio_platform.training.evaluate import evaluate_bundle
from audio_platform.training.model import ModelBundle
from audio_platform.training.train import train_keyword_model
from audio_platform.training.verify import KeywordVerifier, keyword_said
from audio_platform_tests.training.helpers import FAST, SR, make_tone_manifest, tone, untrained_bundle


def _spoken(word: str) -> np.ndarray:
    from audio_platform.audio.tts import synthesize_speech  # the platform's offline TTS (espeak-ng)

    samples, rate = synthesize_speech(word, rate_wpm=140)
    speech = resample_poly(samples, SR, rate).astype(np.float32)
    silence = np.zeros(SR // 4, dtype=np.float32)
    return np.concatenate([silence, speech, silence])


def test_keyword_said_matches_whole_words_after_the_wer_normalisation() -> None:
    assert keyword_said(["Go.", "Stop!"], "stop")
    assert keyword_said(["6."], "six")  # Whisper writes a spoken number as digits
    assert keyword_said(["Hey, Marvin."], "hey marvin")
    assert not keyword_said(["Stopping.", "Top."], "stop")
    assert not keyword_said([], "stop")


def test_n_best_texts_come_likeliest_first_and_bad_requests_are_refused() -> None:
    transcriber = WhisperTranscriber(AsrConfig(cpu_threads=2))
    heard = transcriber.hypotheses([_spoken("stop"), _spoken("yes")], 3)
    assert [len(per_clip) for per_clip in heard] == [3, 3]
    assert keyword_said([heard[0][0].text], "stop") and keyword_said([heard[1][0].text], "yes")
    for per_clip in heard:  # likeliest first: mean log-probabilities fall
        scores = [h.avg_logprob for h in per_clip]
        assert scores == sorted(scores, reverse=True) and all(score < 0 for score in scores)
    assert transcriber.hypotheses([], 3) == []
    with pytest.raises(ValueError, match="count"):
        transcriber.hypotheses([_spoken("stop")], 0)
    with pytest.raises(ValueError, match="at most 30 s"):
        transcriber.hypotheses([np.zeros(31 * SR, dtype=np.float32)], 1)


def test_whisper_confirms_the_keyword_and_not_words_that_sound_like_it() -> None:
    verifier = KeywordVerifier("stop", "tiny.en", hypotheses=5)
    assert verifier.confirms([_spoken(w) for w in ("stop", "go", "up", "shop")]).tolist() == [True, False, False, False]
    assert verifier.confirms([]).tolist() == []
    go, stop = _spoken("go"), _spoken("stop")
    stream = np.concatenate([go, np.zeros(SR, dtype=np.float32), stop])
    spans = [(0.0, len(go) / SR), ((len(go) + SR) / SR, len(stream) / SR)]
    assert verifier.confirms_events(stream, spans).tolist() == [False, True]


def test_a_detection_counts_only_when_whisper_hears_the_keyword(tmp_path: Path) -> None:
    dataset = load_keyword_dataset(make_tone_manifest(tmp_path))
    spotter = train_keyword_model(dataset, FAST).bundle
    stream = np.concatenate([tone(1000.0, 0.3, np.random.default_rng(0)), np.zeros(2 * SR, dtype=np.float32)])
    assert detect_stream(spotter, stream, threshold=0.0)  # the spotter alone fires
    verified = replace(spotter, verifier_model="tiny.en")
    assert detect_stream(verified, stream, threshold=0.0) == []  # a tone is no word
    # Test clips too: with the verifier no tone clip is detected, so recall is 0.
    assert evaluate_bundle(spotter, dataset).recall > 0.5
    metrics = evaluate_bundle(verified, dataset)
    assert (metrics.recall, metrics.false_positives, metrics.false_accepts) == (0.0, 0, 0)


def test_training_drops_a_verifier_that_misses_the_keyword(tmp_path: Path) -> None:
    dataset = load_keyword_dataset(make_tone_manifest(tmp_path))
    result = train_keyword_model(dataset, replace(FAST, verifier_model="tiny.en", verifier_min_recall=0.5))
    # Whisper hears no "tone" in the 32 train and validation tones: the spotter ships alone.
    assert result.verifier_recall == 0.0
    assert result.bundle.verifier_model is None and result.bundle.verifier is None
    assert result.bundle.threshold == train_keyword_model(dataset, FAST).bundle.threshold


class _ShortOfMemory:
    """The CTranslate2 model, failing as a GPU out of memory does for any batch of several clips."""

    def __init__(self, model: Any) -> None:
        self._model, self.batches = model, []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def generate(self, features: Any, prompts: list[list[int]], **options: Any) -> Any:
        self.batches.append(len(prompts))
        if len(prompts) > 1:
            raise RuntimeError("CUDA failed with error out of memory")
        return self._model.generate(features, prompts, **options)


def test_n_best_decoding_halves_its_batch_when_memory_runs_out(monkeypatch: pytest.MonkeyPatch) -> None:
    transcriber = WhisperTranscriber(AsrConfig(cpu_threads=2, batch_size=4))
    short = _ShortOfMemory(transcriber._model.model)
    monkeypatch.setattr(transcriber._model, "model", short)
    words = ("stop", "yes", "stop")
    heard = transcriber.hypotheses([_spoken(word) for word in words], 2)
    assert all(keyword_said([said[0].text], word) for said, word in zip(heard, words, strict=True))
    # 3, then 2 (the decoders run batches at once, so a lone clip's batch may go in between), then 1s.
    assert short.batches[0] == 3 and 2 in short.batches and short.batches[-3:] == [1, 1, 1]
    assert transcriber.batch_size == 1  # kept for later calls


def test_the_bundle_keeps_its_verifier_and_older_bundles_load_without_one(tmp_path: Path) -> None:
    bundle = replace(untrained_bundle(), verifier_model="tiny.en", verifier_hypotheses=3)
    bundle.save(tmp_path / "verified.pt")
    loaded = ModelBundle.load(tmp_path / "verified.pt")
    assert (loaded.verifier_model, loaded.verifier_hypotheses) == ("tiny.en", 3)
    assert loaded.verifier is not None and loaded.verifier.hypotheses == 3

    import torch

    # Two stages are format 2, which releases before verification refuse (they accept only 1);
    # a spotter alone stays format 1, as before.
    payload = torch.load(tmp_path / "verified.pt", weights_only=True)
    assert payload["format"] == 2
    untrained_bundle().save(tmp_path / "spotter.pt")
    assert torch.load(tmp_path / "spotter.pt", weights_only=True)["format"] == 1
    # A bundle saved before verification existed: format 1 without the verifier's fields.
    del payload["verifier_model"], payload["verifier_hypotheses"]
    torch.save(payload | {"format": 1}, tmp_path / "older.pt")
    assert ModelBundle.load(tmp_path / "older.pt").verifier is None
    torch.save(payload | {"format": 3}, tmp_path / "newer.pt")
    with pytest.raises(ValueError, match="unsupported bundle format 3"):
        ModelBundle.load(tmp_path / "newer.pt")


def test_an_event_longer_than_whisper_hears_is_checked_in_pieces() -> None:
    verifier = KeywordVerifier("stop", "tiny.en", hypotheses=5)
    quiet = np.zeros(40 * SR, dtype=np.float32)
    whole = [(0.0, (len(quiet) + SR) / SR)]  # the spotter fired through 41 s
    assert verifier.confirms_events(np.concatenate([quiet, _spoken("stop")]), whole).tolist() == [True]
    assert verifier.confirms_events(np.concatenate([quiet, _spoken("go")]), whole).tolist() == [False]
    assert verifier.confirms_events(np.zeros(0, dtype=np.float32), [(0.0, 0.0)]).tolist() == [False]
