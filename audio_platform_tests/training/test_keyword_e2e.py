"""End to end on the real corpus: 'six' from platform-shaped tables to a registered, promoted,
reloaded model that detects in a whole recording. Skipped where the shared corpus is absent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from audio_platform.audio.decode import decode_mono_16k
from audio_platform.training.config import DatasetConfig, PromotionFloors, TrainingConfig
from audio_platform.training.dataset import dataset_lineage, load_keyword_dataset, select_keyword_clips
from audio_platform.training.detect import detect_stream
from audio_platform.training.pipeline import train_and_register
from audio_platform.training.registry import load_model_bundle, promote_if_better
from audio_platform_tests.training.corpus import CORPUS, corpus_tables

pytestmark = pytest.mark.skipif(not (CORPUS / "manifest.csv").is_file(), reason="shared corpus not present")

VOICES = ("en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-us+f3", "en+m3")
# Hash splits by speaker; with 7 'six' speakers this salt puts positives in every split (5/2/2).
DATASET = DatasetConfig(
    keyword="six",
    val_fraction=0.25,
    test_fraction=0.25,
    split_salt="s0",
    tts_variants=tuple((voice, rate, pitch) for voice in VOICES for rate in (130, 180) for pitch in (35, 65)),
)
TRAINING = TrainingConfig(epochs=12, steps_per_epoch=20, batch_size=32, device="cpu")


def test_six_end_to_end(tmp_path: Path) -> None:
    from audio_platform.audio.tts import synthesize_speech  # the platform's offline TTS (espeak-ng)

    tables = corpus_tables()
    manifest = select_keyword_clips(tables["words"], tables["segments"], tables["audio_files"], DATASET).manifest
    lineage = dataset_lineage(manifest)
    assert [lineage[f"{split}.positive"] for split in ("train", "validation", "test")] == [5, 2, 2]
    assert lineage["train.synthetic"] == len(DATASET.tts_variants) and int(lineage["test.stream_files"]) > 0

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    outcome = train_and_register(
        manifest,
        TRAINING,
        tracking_uri=uri,
        model_name="kws-six",
        artifact_location=str(tmp_path / "artifacts"),
        tts=synthesize_speech,
    )
    metrics = outcome.metrics
    print(
        f"\n'six': params={outcome.n_parameters} train_s={outcome.train_seconds:.1f} epochs={outcome.best_epoch} "
        f"F1={metrics.f1:.3f} P={metrics.precision:.3f} R={metrics.recall:.3f} FRR={metrics.false_reject_rate:.3f} "
        f"FA/h={metrics.false_accepts_per_hour:.1f} ({metrics.false_accepts} in {metrics.stream_hours * 60:.1f} min) "
        f"threshold={metrics.threshold:.3f} test={metrics.positives}+/{metrics.negatives}-"
    )
    assert outcome.n_parameters < 100_000
    assert metrics.positives == 2 and np.isfinite(metrics.false_accepts_per_hour)

    # The corpus is far too small for the platform's real floors; these only exercise the gate.
    floors = PromotionFloors(min_f1=0.0, max_false_accepts_per_hour=1e6)
    decision = promote_if_better(
        manifest, tracking_uri=uri, model_name="kws-six", version=outcome.version.version, floors=floors
    )
    assert decision.promoted, decision.reason

    bundle = load_model_bundle("models:/kws-six@champion", uri)
    dataset = load_keyword_dataset(manifest, synthesize_speech)
    train = dataset.mask("train")
    scores = bundle.score(dataset.waves[train])
    assert scores[dataset.labels[train] == 1].mean() > scores[dataset.labels[train] == 0].mean() + 0.3

    positive = manifest.filter((pl.col("split") == "test") & (pl.col("kind") == "positive")).row(0, named=True)
    audio = decode_mono_16k(Path(positive["source_path"]))
    detections = detect_stream(bundle, audio)
    assert all(0 <= d.start_s < d.end_s <= len(audio) / 16000 for d in detections)
    centre = positive["start_s"] + DATASET.clip_s / 2
    print(f"detections in {Path(positive['source_path']).name} ('six' near {centre:.2f} s): {detections}")
