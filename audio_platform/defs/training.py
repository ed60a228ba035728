"""keyword_dataset → keyword_model (MLflow) → champion promotion check, one partition per keyword."""

from pathlib import Path

from dagster import (
    AllPartitionMapping,
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetDep,
    AssetExecutionContext,
    AssetsDefinition,
    ConfigurableResource,
    MaterializeResult,
    MetadataValue,
    StaticPartitionsDefinition,
    asset,
    asset_check,
)

from audio_platform.defs.automation import AFTER_UPSTREAM_UPDATES
from audio_platform.defs.curation import curated_segments
from audio_platform.defs.ingest import raw_audio_files
from audio_platform.defs.metering import StageMeter
from audio_platform.defs.resources import PlatformStorage
from audio_platform.defs.transcription import WORDS_KEY
from audio_platform.defs.vad import vad_segments
from audio_platform.storage.tables import AUDIO_FILES, CURATED_SEGMENTS, MODELS, SEGMENTS, WORDS
from audio_platform.training.config import DatasetConfig, PromotionFloors, TrainingConfig
from audio_platform.training.dataset import build_keyword_manifest, dataset_lineage
from audio_platform.training.pipeline import train_and_register
from audio_platform.training.registry import mlflow_client, promote_if_better, registry_table

KEYWORD_CLIPS = "keyword_clips"
# espeak-ng voices × rates × pitches for synthetic positives (train split only).
TTS_VOICES = ("en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-us+f3", "en+m3")


class TrainingResource(ConfigurableResource):
    """MLflow location, dataset cutting, training budget and the promotion floors."""

    tracking_uri: str
    artifact_root: str
    model_prefix: str = "kws-"
    clip_s: float = 1.0
    val_fraction: float = 0.25
    test_fraction: float = 0.25
    split_salt: str = "kws-split-v1"
    synthetic_positives: bool = True
    seed: int = 0
    epochs: int = 40
    steps_per_epoch: int = 40
    batch_size: int = 64
    device: str = "auto"
    min_f1: float = 0.5
    max_false_accepts_per_hour: float = 10.0

    def model_name(self, keyword: str) -> str:
        return f"{self.model_prefix}{keyword}"

    def dataset_config(self, keyword: str) -> DatasetConfig:
        variants = (
            tuple((voice, rate, pitch) for voice in TTS_VOICES for rate in (130, 180) for pitch in (35, 65))
            if self.synthetic_positives
            else ()
        )
        return DatasetConfig(
            keyword=keyword,
            clip_s=self.clip_s,
            val_fraction=self.val_fraction,
            test_fraction=self.test_fraction,
            split_salt=self.split_salt,
            tts_variants=variants,
        )

    def training_config(self) -> TrainingConfig:
        return TrainingConfig(
            seed=self.seed,
            epochs=self.epochs,
            steps_per_epoch=self.steps_per_epoch,
            batch_size=self.batch_size,
            device=self.device,
        )

    def floors(self) -> PromotionFloors:
        return PromotionFloors(min_f1=self.min_f1, max_false_accepts_per_hour=self.max_false_accepts_per_hour)


def keyword_partitions(keywords: tuple[str, ...]) -> StaticPartitionsDefinition:
    return StaticPartitionsDefinition(list(keywords))


def build_training_assets(
    keywords: tuple[str, ...],
) -> tuple[AssetsDefinition, AssetsDefinition, AssetChecksDefinition]:
    """The keyword assets for the configured keywords (static partitions are fixed per deployment)."""
    partitions = keyword_partitions(keywords)
    # Every keyword reads the curated data of ALL shards.
    all_shards = AllPartitionMapping()

    @asset(
        deps=[
            AssetDep(asset, partition_mapping=all_shards)
            for asset in (raw_audio_files, vad_segments, WORDS_KEY, curated_segments)
        ],
        partitions_def=partitions,
        automation_condition=AFTER_UPSTREAM_UPDATES,
        group_name="training",
        kinds={"polars", "parquet"},
        description="Keyword clips cut from curated segments with word timestamps (positives), other "
        "words, non-speech and noise (negatives), split by source recording. Table: keyword_clips.",
    )
    def keyword_dataset(
        context: AssetExecutionContext, storage: PlatformStorage, training: TrainingResource
    ) -> MaterializeResult:
        keyword = context.partition_key
        lake = storage.lake
        tables = {}
        for table in (WORDS, SEGMENTS, CURATED_SEGMENTS, AUDIO_FILES):
            frame = lake.read_many(table.name)
            if frame is None:
                raise RuntimeError(f"no {table.name} rows yet: process at least one drop before training")
            tables[table.name] = frame
        manifest = build_keyword_manifest(
            tables["words"],
            tables["segments"],
            tables["curated_segments"],
            tables["audio_files"],
            training.dataset_config(keyword),
        )
        lake.write(KEYWORD_CLIPS, keyword, manifest)
        lineage = dataset_lineage(manifest)
        return MaterializeResult(
            metadata={
                "clips": manifest.height,
                **{k: (MetadataValue.float(float(v)) if isinstance(v, float) else v) for k, v in lineage.items()},
            }
        )

    @asset(
        deps=[keyword_dataset],
        partitions_def=partitions,
        automation_condition=AFTER_UPSTREAM_UPDATES,
        pool="audio_models",
        group_name="training",
        kinds={"pytorch", "mlflow"},
        description="A keyword-spotting model trained on keyword_dataset, logged to MLflow and registered "
        "as a new version of kws-<keyword>; the champion alias moves only through the promotion check.",
    )
    def keyword_model(
        context: AssetExecutionContext, storage: PlatformStorage, training: TrainingResource
    ) -> MaterializeResult:
        keyword = context.partition_key
        meter = StageMeter()
        manifest = storage.lake.read(KEYWORD_CLIPS, keyword)
        from audio_platform.demo import synthesize_speech

        outcome = train_and_register(
            manifest,
            training.training_config(),
            tracking_uri=training.tracking_uri,
            model_name=training.model_name(keyword),
            artifact_location=str(Path(training.artifact_root)),
            tts=synthesize_speech if training.synthetic_positives else None,
        )
        metrics = outcome.metrics
        mirror_registry(storage, training, keyword)
        return MaterializeResult(
            metadata={
                **meter.metadata(),
                "model_uri": outcome.version.model_uri,
                "version": int(outcome.version.version),
                "run_id": outcome.version.run_id,
                "parameters": outcome.n_parameters,
                "train_seconds": MetadataValue.float(round(outcome.train_seconds, 2)),
                "best_epoch": outcome.best_epoch,
                "device": outcome.device,
                **{f"test_{k}": MetadataValue.float(v) for k, v in metrics.numeric().items()},
            }
        )

    @asset_check(asset=keyword_model, partitions_def=partitions, blocking=True)
    def champion_promotion(
        context: AssetCheckExecutionContext, storage: PlatformStorage, training: TrainingResource
    ) -> AssetCheckResult:
        """Promotes the newest version to @champion only if it meets the floors and beats the current
        champion on the same test set. Below the floors: ERROR (blocks). Above the floors but not
        better: WARN, the version stays a challenger."""
        keyword = context.partition_key
        name = training.model_name(keyword)
        versions = mlflow_client(training.tracking_uri).search_model_versions(f"name='{name}'")
        newest = max(versions, key=lambda v: int(v.version))
        manifest = storage.lake.read(KEYWORD_CLIPS, keyword)
        decision = promote_if_better(
            manifest,
            tracking_uri=training.tracking_uri,
            model_name=name,
            version=str(newest.version),
            floors=training.floors(),
        )
        mirror_registry(storage, training, keyword)
        meets_floors = decision.candidate.f1 >= training.min_f1 and not (
            decision.candidate.false_accepts_per_hour > training.max_false_accepts_per_hour
        )
        return AssetCheckResult(
            passed=decision.promoted,
            severity=AssetCheckSeverity.WARN if meets_floors else AssetCheckSeverity.ERROR,
            metadata={
                "version": int(newest.version),
                "promoted": decision.promoted,
                "reason": decision.reason,
                "previous_champion": decision.champion_version or "none",
                "candidate_f1": MetadataValue.float(decision.candidate.f1),
                "candidate_false_accepts_per_hour": MetadataValue.float(decision.candidate.false_accepts_per_hour),
            },
        )

    return keyword_dataset, keyword_model, champion_promotion


def mirror_registry(storage: PlatformStorage, training: TrainingResource, keyword: str) -> None:
    """Copy the registry's view of kws-<keyword> into the lake, so the warehouse's ``models`` view
    shows versions, metrics and aliases without another warehouse rebuild."""
    storage.lake.write_table(MODELS, keyword, registry_table(training.tracking_uri, training.model_name(keyword)))
