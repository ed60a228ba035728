"""keyword_dataset → keyword_model (MLflow) → keyword_champion (the alias), one partition per keyword.

A blocking check on keyword_model (candidate_meets_floors) is a pure read of the new version's
metrics; moving the alias is the work of the keyword_champion asset, never of a check."""

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
from pydantic import Field

from audio_platform.defs.automation import AFTER_UPSTREAM_UPDATES
from audio_platform.defs.curation import curated_segments
from audio_platform.defs.ingest import raw_audio_files
from audio_platform.defs.metering import MeteringResource
from audio_platform.defs.resources import PlatformStorage
from audio_platform.defs.transcription import WORDS_KEY
from audio_platform.defs.vad import vad_segments
from audio_platform.observability.plots import figure_png, markdown_image
from audio_platform.storage.tables import AUDIO_FILES, CURATED_SEGMENTS, SEGMENTS, WORDS
from audio_platform.training.config import DatasetConfig, PromotionFloors, TrainingConfig
from audio_platform.training.dataset import build_keyword_manifest, dataset_lineage

# The torch-backed training modules (pipeline, registry) are imported inside the training assets:
# every shard run loads these definitions, and importing torch would add ~300 MB to each one.

KEYWORD_CLIPS = "keyword_clips"
# espeak-ng voices × rates × pitches for synthetic positives (train split only).
TTS_VOICES = ("en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-us+f3", "en+m3")


class TrainingResource(ConfigurableResource):
    """MLflow location, dataset cutting, training budget and the promotion floors."""

    tracking_uri: str = Field(description="MLflow tracking and registry store (see the MLflow settings).")
    artifact_root: str = Field(description="Artifact location of a newly created MLflow experiment.")
    model_prefix: str = Field(default="kws-", description="Registered model name = prefix + keyword.")
    clip_s: float = Field(default=1.0, description="Length of every training clip in seconds.")
    val_fraction: float = Field(default=0.25, description="Share of source recordings in the validation split.")
    test_fraction: float = Field(default=0.25, description="Share of source recordings in the test split.")
    split_salt: str = Field(
        default="kws-split-v1", description="Salt of the per-recording split hash; changing it reshuffles splits."
    )
    synthetic_positives: bool = Field(
        default=True, description="Add espeak-ng keyword clips (train split only) to the real positives."
    )
    seed: int = Field(default=0, description="Seed of sampling, augmentation and initialization.")
    epochs: int = Field(default=40, description="Upper bound on epochs (early stopping may end sooner).")
    steps_per_epoch: int = Field(default=40, description="Balanced batches per epoch.")
    batch_size: int = Field(default=64, description="Clips per batch.")
    device: str = Field(default="auto", description="cpu, cuda or auto.")
    min_f1: float = Field(default=0.5, description="Promotion floor: lowest test F1 a champion may have.")
    max_false_accepts_per_hour: float = Field(
        default=10.0, description="Promotion ceiling: most false accepts per hour a champion may have."
    )

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
) -> tuple[AssetsDefinition, AssetsDefinition, AssetsDefinition, AssetChecksDefinition]:
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
        context: AssetExecutionContext, storage: PlatformStorage, training: TrainingResource, metering: MeteringResource
    ) -> MaterializeResult:
        keyword = context.partition_key
        meter = metering.start(context)
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
        return MaterializeResult(metadata=meter.finish(lake, dataset_lineage(manifest)))

    @asset(
        deps=[keyword_dataset],
        partitions_def=partitions,
        automation_condition=AFTER_UPSTREAM_UPDATES,
        pool="audio_models",
        group_name="training",
        kinds={"pytorch", "mlflow"},
        description="A keyword-spotting model trained on keyword_dataset, logged to MLflow and registered "
        "as a new version of kws-<keyword>; the champion alias moves only in keyword_champion.",
    )
    def keyword_model(
        context: AssetExecutionContext, storage: PlatformStorage, training: TrainingResource, metering: MeteringResource
    ) -> MaterializeResult:
        keyword = context.partition_key
        meter = metering.start(context)
        manifest = storage.lake.read(KEYWORD_CLIPS, keyword)
        from audio_platform.audio.tts import synthesize_speech
        from audio_platform.training.pipeline import train_and_register
        from audio_platform.training.registry import floors_shortfall, record_decision, training_figures

        outcome = train_and_register(
            manifest,
            training.training_config(),
            tracking_uri=training.tracking_uri,
            model_name=training.model_name(keyword),
            artifact_location=training.artifact_root,
            tts=synthesize_speech if training.synthetic_positives else None,
        )
        metrics = outcome.metrics
        meter.device = outcome.device
        shortfall = floors_shortfall(metrics, training.floors())
        if shortfall is not None:
            # keyword_champion will not run for it (the floors check blocks): record why here.
            name = training.model_name(keyword)
            record_decision(training.tracking_uri, name, outcome.version.version, False, shortfall)
        mirror_registry(storage, training, keyword)
        charts = {
            name: MetadataValue.md(markdown_image(figure_png(figure), name.replace("_", " ")))
            for name, figure in training_figures(outcome.history, metrics).items()
        }
        return MaterializeResult(
            metadata=meter.finish(
                storage.lake,
                {
                    "model_uri": outcome.version.model_uri,
                    "version": int(outcome.version.version),
                    "run_id": outcome.version.run_id,
                    "parameters": outcome.n_parameters,
                    "train_seconds": round(outcome.train_seconds, 2),
                    "best_epoch": outcome.best_epoch,
                    "device": outcome.device,
                    **{f"test_{k}": v for k, v in metrics.numeric().items()},
                    **charts,
                },
            )
        )

    @asset_check(asset=keyword_model, partitions_def=partitions, blocking=True)
    def candidate_meets_floors(context: AssetCheckExecutionContext, training: TrainingResource) -> AssetCheckResult:
        """The newest version meets the promotion floors (F1, false accepts per hour): a pure read of
        its stored test metrics through the one rule (``floors_shortfall``). Failing blocks
        ``keyword_champion``, so a version below the floors can never become champion."""
        from audio_platform.training.registry import floors_shortfall, newest_version, version_metrics

        name = training.model_name(context.partition_key)
        version = newest_version(training.tracking_uri, name)
        candidate = version_metrics(training.tracking_uri, name, version)
        shortfall = floors_shortfall(candidate, training.floors())
        return AssetCheckResult(
            passed=shortfall is None,
            severity=AssetCheckSeverity.ERROR,
            description=shortfall or "meets the floors",
            metadata={
                "version": int(version),
                "reason": shortfall or "meets the floors",
                "candidate_f1": MetadataValue.float(candidate.f1),
                "candidate_false_accepts_per_hour": MetadataValue.float(candidate.false_accepts_per_hour),
            },
        )

    @asset(
        deps=[keyword_model],
        partitions_def=partitions,
        automation_condition=AFTER_UPSTREAM_UPDATES,
        group_name="training",
        kinds={"mlflow"},
        description="The @champion alias of kws-<keyword>: the newest version takes it when it meets the "
        "floors (blocking check on keyword_model) and beats the champion on the same test set; otherwise "
        "it stays a challenger, with the reason on the version and here.",
    )
    def keyword_champion(
        context: AssetExecutionContext, storage: PlatformStorage, training: TrainingResource, metering: MeteringResource
    ) -> MaterializeResult:
        from audio_platform.training.registry import newest_version, promote_if_better

        keyword = context.partition_key
        meter = metering.start(context)
        name = training.model_name(keyword)
        version = newest_version(training.tracking_uri, name)
        decision = promote_if_better(
            storage.lake.read(KEYWORD_CLIPS, keyword),
            tracking_uri=training.tracking_uri,
            model_name=name,
            version=version,
            floors=training.floors(),
        )
        mirror_registry(storage, training, keyword)
        context.log.info(f"{name} v{version}: {'champion' if decision.promoted else 'challenger'} ({decision.reason})")
        return MaterializeResult(
            metadata=meter.finish(
                storage.lake,
                {
                    "version": int(version),
                    "promoted": decision.promoted,
                    "reason": decision.reason,
                    "champion_version": int(version) if decision.promoted else int(decision.champion_version or 0),
                    "previous_champion": decision.champion_version or "none",
                    "candidate_f1": MetadataValue.float(decision.candidate.f1),
                    "candidate_false_accepts_per_hour": MetadataValue.float(decision.candidate.false_accepts_per_hour),
                },
            )
        )

    return keyword_dataset, keyword_model, keyword_champion, candidate_meets_floors


def mirror_registry(storage: PlatformStorage, training: TrainingResource, keyword: str) -> None:
    """Copy the registry's view of kws-<keyword> into the lake (see ``mirror_to_lake``)."""
    from audio_platform.training.registry import mirror_to_lake

    mirror_to_lake(storage.lake, training.tracking_uri, training.model_name(keyword), keyword)
