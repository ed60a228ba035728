from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from audio_platform.training.config import PromotionFloors
from audio_platform.training.dataset import KeywordDataset, load_keyword_dataset
from audio_platform.training.evaluate import EvalMetrics, evaluate_bundle
from audio_platform.training.registry import (
    CHAMPION,
    load_model_bundle,
    log_and_register,
    mlflow_client,
    promote_if_better,
    should_promote,
)
from audio_platform.training.train import train_keyword_model
from audio_platform_tests.training.helpers import FAST

FLOORS = PromotionFloors(min_f1=0.6, max_false_accepts_per_hour=5.0)
GOOD = EvalMetrics(0.5, 0.9, 0.8, 0.85, 0.2, 1, 1.0, 1.0, 10, 100, 1, "digest")


@pytest.mark.parametrize(
    ("candidate", "champion", "promoted", "reason"),
    [
        (GOOD, None, True, "no champion yet"),
        (replace(GOOD, f1=0.5), None, False, "below the floor"),
        (replace(GOOD, false_accepts_per_hour=6.0), None, False, "exceeds the ceiling"),
        (replace(GOOD, false_accepts_per_hour=math.nan), None, False, "unknown"),
        (GOOD, replace(GOOD, f1=0.80), True, "beats the champion"),
        (GOOD, replace(GOOD, f1=0.90), False, "does not beat"),
        (GOOD, replace(GOOD, false_accepts_per_hour=2.0), True, "false accepts/hour drop"),
        (GOOD, GOOD, False, "does not beat"),
        (GOOD, replace(GOOD, f1=0.5, test_digest="other"), False, "different test set"),
        (replace(GOOD, f1=0.5), replace(GOOD, f1=0.4), False, "below the floor"),
    ],
)
def test_should_promote(candidate: EvalMetrics, champion: EvalMetrics | None, promoted: bool, reason: str) -> None:
    decision, why = should_promote(candidate, champion, FLOORS)
    assert decision is promoted
    assert reason in why


def test_register_load_and_promote(tmp_path: Path, tone_manifest: pl.DataFrame, tone_dataset: KeywordDataset) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    lenient = PromotionFloors(min_f1=0.0, max_false_accepts_per_hour=1e9)
    result = train_keyword_model(tone_dataset, FAST)
    metrics = evaluate_bundle(result.bundle, tone_dataset)
    register = {
        "tracking_uri": uri,
        "model_name": "tone-kws",
        "artifact_location": str(tmp_path / "artifacts"),
    }

    first = log_and_register(result, metrics, tone_manifest, FAST, **register)
    decision = promote_if_better(
        tone_manifest, tracking_uri=uri, model_name="tone-kws", version=first.version, floors=lenient
    )
    assert decision.promoted and decision.champion is None and decision.candidate == metrics

    client = mlflow_client(uri)
    assert str(client.get_registered_model("tone-kws").aliases[CHAMPION]) == first.version
    run = client.get_run(first.run_id)
    assert run.data.params["data.train.positive"] == "24" and run.data.metrics["test_f1"] == metrics.f1
    assert len(client.get_metric_history(first.run_id, "val_loss")) == len(result.history)
    assert (tmp_path / "artifacts").is_dir()

    for model_uri in (f"models:/tone-kws@{CHAMPION}", first.model_uri, first.run_id, f"runs:/{first.run_id}"):
        loaded = load_model_bundle(model_uri, uri)
        assert loaded.threshold == result.bundle.threshold and loaded.keyword == "tone"
        assert all(torch.equal(v, result.bundle.state_dict[k]) for k, v in loaded.state_dict.items())
    with pytest.raises(ValueError, match="not a models:/ URI"):
        load_model_bundle("champion", uri)

    scripted = torch.jit.load(client.download_artifacts(first.run_id, "model/model.ts.pt", str(tmp_path)))
    waves = torch.from_numpy(tone_dataset.waves[:5])
    torch.testing.assert_close(scripted(waves), result.bundle.spotter(waves))
    manifest_copy = client.download_artifacts(first.run_id, "dataset/manifest.parquet", str(tmp_path))
    assert pl.read_parquet(manifest_copy).equals(tone_manifest)
    plots = sorted(a.path for a in client.list_artifacts(first.run_id, "plots"))
    assert plots == ["plots/confusion_matrix.png", "plots/training_curves.png"]
    for plot in plots:
        png = Path(client.download_artifacts(first.run_id, plot, str(tmp_path))).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"

    # The same model again only ties the champion: it stays a challenger.
    second = log_and_register(result, metrics, tone_manifest, FAST, **register)
    decision = promote_if_better(
        tone_manifest, tracking_uri=uri, model_name="tone-kws", version=second.version, floors=lenient
    )
    assert not decision.promoted and decision.champion_version == first.version
    assert client.get_model_version("tone-kws", second.version).tags["promotion_decision"] == "challenger"
    assert str(client.get_registered_model("tone-kws").aliases[CHAMPION]) == first.version

    # A changed test set: the champion is re-scored on it before the comparison.
    smaller = tone_manifest.filter(pl.col("clip_id") != "test-positive-1000.0-0")
    metrics_smaller = evaluate_bundle(result.bundle, load_keyword_dataset(smaller))
    third = log_and_register(result, metrics_smaller, smaller, FAST, **register)
    decision = promote_if_better(
        smaller, tracking_uri=uri, model_name="tone-kws", version=third.version, floors=lenient
    )
    assert decision.champion is not None and decision.champion.test_digest == metrics_smaller.test_digest
    assert decision.champion.f1 == metrics_smaller.f1 and not decision.promoted
    assert np.isclose(decision.champion.false_accepts_per_hour, metrics_smaller.false_accepts_per_hour)
