"""One call from a stored manifest to a registered model version (what the keyword_model asset runs)."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from audio_platform.training.config import TrainingConfig
from audio_platform.training.dataset import TtsFn, dataset_lineage, load_keyword_dataset
from audio_platform.training.evaluate import EvalMetrics, evaluate_bundle
from audio_platform.training.registry import DEFAULT_EXPERIMENT, RegisteredVersion, log_and_register
from audio_platform.training.train import train_keyword_model


@dataclass(frozen=True)
class TrainingOutcome:
    version: RegisteredVersion
    metrics: EvalMetrics
    lineage: dict[str, int | float | str]
    train_seconds: float
    n_parameters: int
    best_epoch: int
    device: str
    history: list[dict[str, float]]  # one row per epoch: epoch, train_loss, val_loss, lr


def train_and_register(
    manifest: pl.DataFrame,
    config: TrainingConfig,
    *,
    tracking_uri: str,
    model_name: str,
    experiment_name: str = DEFAULT_EXPERIMENT,
    artifact_location: str | None = None,
    tts: TtsFn | None = None,
) -> TrainingOutcome:
    """Decode, train, evaluate on the test split, log to MLflow and register a new version.

    Promotion is a separate step (``registry.promote_if_better``) so that it can gate releases.
    """
    dataset = load_keyword_dataset(manifest, tts)
    result = train_keyword_model(dataset, config)
    metrics = evaluate_bundle(result.bundle, dataset)
    version = log_and_register(
        result,
        metrics,
        manifest,
        config,
        tracking_uri=tracking_uri,
        model_name=model_name,
        experiment_name=experiment_name,
        artifact_location=artifact_location,
    )
    return TrainingOutcome(
        version=version,
        metrics=metrics,
        lineage=dataset_lineage(manifest),
        train_seconds=result.train_seconds,
        n_parameters=result.n_parameters,
        best_epoch=result.best_epoch,
        device=result.device,
        history=result.history,
    )
