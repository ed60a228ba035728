"""MLflow on production stores, configured only through the platform's settings: tracking and
registry in PostgreSQL, artifacts on an S3-compatible object store (real servers, servers.py)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import psycopg2
import torch

from audio_platform.settings import load_settings
from audio_platform.training.config import PromotionFloors
from audio_platform.training.dataset import KeywordDataset
from audio_platform.training.evaluate import evaluate_bundle
from audio_platform.training.registry import (
    CHAMPION,
    DEFAULT_EXPERIMENT,
    load_model_bundle,
    log_and_register,
    promote_if_better,
)
from audio_platform.training.train import TrainResult
from audio_platform_tests.servers import PostgresServer, S3Server
from audio_platform_tests.training.helpers import FAST, untrained_bundle

LENIENT = PromotionFloors(min_f1=0.0, max_false_accepts_per_hour=1e9)


def test_register_promote_and_load_on_postgres_with_artifacts_on_the_object_store(
    postgres_server: PostgresServer,
    s3_server: S3Server,
    tmp_path: Path,
    tone_manifest: pl.DataFrame,
    tone_dataset: KeywordDataset,
) -> None:
    bucket, database = s3_server.new_bucket(), postgres_server.create_database()
    settings = load_settings(
        {
            "AUDIO_PLATFORM_HOME": str(tmp_path / "home"),
            "AUDIO_PLATFORM_MLFLOW_TRACKING_URI_OVERRIDE": postgres_server.url(database, "postgresql+psycopg2"),
            "AUDIO_PLATFORM_MLFLOW_ARTIFACT_URI": f"s3://{bucket}/mlflow",
        }
    )
    uri = settings.mlflow_tracking_uri
    # An untrained model is enough: what is under test is where MLflow puts it and gets it back from.
    bundle = untrained_bundle()
    result = TrainResult(
        bundle=bundle,
        history=[{"epoch": 0, "train_loss": 1.0, "val_loss": 1.0, "lr": 1e-3}],
        best_epoch=0,
        train_seconds=0.0,
        device="cpu",
        n_parameters=sum(t.numel() for t in bundle.state_dict.values()),
    )
    metrics = evaluate_bundle(bundle, tone_dataset)

    version = log_and_register(
        result,
        metrics,
        tone_manifest,
        FAST,
        tracking_uri=uri,
        model_name="kws-tone",
        artifact_location=settings.mlflow_artifact_root,
    )
    decision = promote_if_better(
        tone_manifest, tracking_uri=uri, model_name="kws-tone", version=version.version, floors=LENIENT
    )
    assert decision.promoted
    loaded = load_model_bundle(f"models:/kws-tone@{CHAMPION}", uri)
    assert loaded.keyword == "tone" and loaded.threshold == bundle.threshold
    assert all(torch.equal(value, bundle.state_dict[key]) for key, value in loaded.state_dict.items())

    # The files are objects in the bucket; runs, the registry and the alias are rows in PostgreSQL.
    artifacts = f"mlflow/{version.run_id}/artifacts"
    expected = {f"{artifacts}/{name}" for name in ("model/bundle.pt", "model/model.ts.pt", "dataset/manifest.parquet")}
    assert expected <= set(s3_server.keys(bucket, "mlflow/"))
    connection = psycopg2.connect(postgres_server.url(database))
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT artifact_location FROM experiments WHERE name = %s", [DEFAULT_EXPERIMENT])
            assert cursor.fetchall() == [(f"s3://{bucket}/mlflow",)]
            cursor.execute("SELECT name, alias, version FROM registered_model_aliases")
            assert cursor.fetchall() == [("kws-tone", CHAMPION, int(version.version))]
    finally:
        connection.close()
    assert not (settings.home / "mlflow").exists(), "nothing of MLflow may land on local disk"
