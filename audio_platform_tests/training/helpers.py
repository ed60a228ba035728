"""Test helpers: a tiny synthetic 'tone' keyword manifest and an untrained model bundle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import soundfile as sf
import torch

from audio_platform.training.config import FeatureConfig, ModelConfig, TrainingConfig
from audio_platform.training.dataset import MANIFEST_SCHEMA
from audio_platform.training.model import KeywordSpotter, ModelBundle

SR = 16_000
# No Whisper verifier: a tone is no word (test_verify covers the verifier on tones and speech).
FAST = TrainingConfig(epochs=3, steps_per_epoch=4, batch_size=16, patience=3, verifier_model=None)


def tone(freq: float, seconds: float, rng: np.random.Generator, level: float = 0.3) -> np.ndarray:
    t = np.arange(round(seconds * SR)) / SR
    return (level * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def _clip(freq: float | None, rng: np.random.Generator) -> np.ndarray:
    """One second of faint noise with, if ``freq`` is set, a 0.3 s tone somewhere in the middle."""
    clip = (0.01 * rng.standard_normal(SR)).astype(np.float32)
    if freq is not None:
        start = int(rng.integers(3000, 8000))
        clip[start : start + int(0.3 * SR)] += tone(freq, 0.3, rng)
    return clip


def make_tone_manifest(folder: Path) -> pl.DataFrame:
    """A manifest of one-second wav clips: 'keyword' = a 1 kHz tone, negatives = 300 Hz / 2.5 kHz
    tones and faint noise, plus one keyword-free 5 s test stream."""
    rng = np.random.default_rng(0)
    kinds = (
        (1, 1000.0, "positive"),
        (0, 300.0, "negative_word"),
        (0, 2500.0, "negative_word"),
        (0, None, "non_speech"),
    )
    rows = []
    for split, n in (("train", 24), ("validation", 8), ("test", 8)):
        for i in range(n):
            for label, freq, kind in kinds:
                clip_id = f"{split}-{kind}-{freq}-{i}"
                path = folder / f"{clip_id}.wav"
                sf.write(path, _clip(freq, rng), SR)
                rows.append((clip_id, str(path), 1.0, label, kind, split))
    stream = folder / "stream.wav"
    sf.write(stream, np.concatenate([_clip(f, rng) for f in (300.0, None, 2500.0, None, 300.0)]), SR)
    rows.append(("stream", str(stream), 5.0, 0, "stream", "test"))
    frame = pl.DataFrame(rows, schema=["clip_id", "source_path", "end_s", "label", "kind", "split"], orient="row")
    return frame.with_columns(
        keyword=pl.lit("tone"),
        shard=pl.lit("tones"),
        start_s=pl.lit(0.0),
        file_id=pl.lit(None),
        word=pl.lit(None),
        speaker=pl.col("clip_id"),
        split_scheme=pl.lit("tones"),
    ).select([pl.col(c).cast(t) for c, t in MANIFEST_SCHEMA.items()])


def untrained_bundle(threshold: float = 0.5) -> ModelBundle:
    torch.manual_seed(0)
    spotter = KeywordSpotter(FeatureConfig(), ModelConfig())
    return ModelBundle("tone", 1.0, FeatureConfig(), ModelConfig(), spotter.state_dict(), threshold)
