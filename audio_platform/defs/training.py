"""keyword_dataset → keyword_model (MLflow) → keyword_champion (the alias), one partition per keyword.

A blocking check on keyword_model (candidate_meets_floors) is a pure read of the new version's
metrics; moving the alias is the work of the keyword_champion asset, never of a check."""

from collections.abc import Iterator

import polars as pl
from dagster import (
    AllPartitionMapping,
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetDep,
    AssetExecutionContext,
    AssetsDefinition,
    Failure,
    MaterializeResult,
    MetadataValue,
    StaticPartitionsDefinition,
    asset,
    asset_check,
)
from pydantic import Field

from audio_platform.config_fields import described_fields
from audio_platform.defs.automation import AFTER_UPSTREAM_UPDATES
from audio_platform.defs.config import declared_fields_resource, domain_config
from audio_platform.defs.ingest import raw_audio_files
from audio_platform.defs.metering import MeteringResource
from audio_platform.defs.resources import PlatformStorage
from audio_platform.defs.transcription import WORDS_KEY
from audio_platform.defs.vad import vad_segments
from audio_platform.observability.plots import figure_png, markdown_image
from audio_platform.storage.tables import (
    AUDIO_FILES,
    FILE_METADATA,
    KEYWORD_CANDIDATES,
    KEYWORD_CLIPS,
    SEGMENTS,
    WORDS,
)
from audio_platform.training.config import DatasetConfig, PromotionFloors, TrainingConfig
from audio_platform.training.dataset import dataset_lineage, dataset_shortfall, select_keyword_clips

# The torch-backed training modules (pipeline, registry) are imported inside the training assets:
# every shard run loads these definitions, and importing torch would add ~300 MB to each one.

# espeak-ng voices × rates × pitches for synthetic positives (train split only).
TTS_VOICES = ("en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-us+f3", "en+m3")

# The fields of the domain configs a deployment tunes; each is declared once, in its dataclass.
_DECLARED = declared_fields_resource(
    described_fields(
        DatasetConfig,
        include=(
            "clip_s",
            "min_word_probability",
            "min_snr_db",
            "max_clipping_ratio",
            "min_context_s",
            "speaker_pattern",
            "min_speakers",
            "val_fraction",
            "test_fraction",
            "split_salt",
        ),
    ),
    described_fields(
        TrainingConfig,
        include=(
            "seed",
            "epochs",
            "steps_per_epoch",
            "batch_size",
            "device",
            "target_recall",
            "verifier_model",
            "verifier_hypotheses",
            "verifier_min_recall",
        ),
    ),
    described_fields(PromotionFloors, include=("min_f1", "max_false_accepts_per_hour")),
)


class TrainingResource(_DECLARED):  # type: ignore[misc,valid-type]  # fields generated from the dataclasses
    """MLflow location, dataset cutting, training budget and the promotion floors."""

    tracking_uri: str = Field(description="MLflow tracking and registry store (see the MLflow settings).")
    artifact_root: str = Field(description="Artifact location of a newly created MLflow experiment.")
    model_prefix: str = Field(default="kws-", description="Registered model name = prefix + keyword.")
    synthetic_positives: bool = Field(
        default=True, description="Add espeak-ng keyword clips (train split only) to the real positives."
    )

    def model_name(self, keyword: str) -> str:
        return f"{self.model_prefix}{keyword}"

    def dataset_config(self, keyword: str) -> DatasetConfig:
        variants = (
            tuple((voice, rate, pitch) for voice in TTS_VOICES for rate in (130, 180) for pitch in (35, 65))
            if self.synthetic_positives
            else ()
        )
        return domain_config(self, DatasetConfig, keyword=keyword, tts_variants=variants)

    def training_config(self) -> TrainingConfig:
        return domain_config(self, TrainingConfig)

    def floors(self) -> PromotionFloors:
        return domain_config(self, PromotionFloors)


def keyword_partitions(keywords: tuple[str, ...]) -> StaticPartitionsDefinition:
    return StaticPartitionsDefinition(list(keywords))


def build_training_assets(
    keywords: tuple[str, ...],
) -> tuple[tuple[AssetsDefinition, AssetsDefinition, AssetsDefinition], tuple[AssetChecksDefinition, ...]]:
    """(keyword_dataset, keyword_model, keyword_champion) and their checks, for the configured keywords
    (static partitions are fixed per deployment)."""
    partitions = keyword_partitions(keywords)
    # Every keyword reads the curated data of ALL shards.
    all_shards = AllPartitionMapping()

    @asset(
        deps=[AssetDep(asset, partition_mapping=all_shards) for asset in (raw_audio_files, vad_segments, WORDS_KEY)],
        partitions_def=partitions,
        automation_condition=AFTER_UPSTREAM_UPDATES,
        group_name="training",
        kinds={"polars", "parquet"},
        description="Keyword clips chosen by the keyword policy (not the ASR curated set) from every "
        "transcribed word: the keyword (positives), other words, non-speech and noise (negatives), split by "
        "speaker. Tables: keyword_clips, and keyword_candidates with the decision on every word. When the "
        "data cannot train a model, says why (metadata `shortfall`) and keyword_model skips.",
    )
    def keyword_dataset(
        context: AssetExecutionContext, storage: PlatformStorage, training: TrainingResource, metering: MeteringResource
    ) -> MaterializeResult:
        keyword = context.partition_key
        meter = metering.start(context)
        lake = storage.lake
        tables = {}
        for table in (WORDS, SEGMENTS, AUDIO_FILES):
            frame = lake.read_many(table.name)
            if frame is None:
                raise Failure(f"no {table.name} rows yet: process at least one drop before training")
            tables[table.name] = frame
        earlier = lake.read_many(KEYWORD_CLIPS.name, [keyword])
        audio_files = tables["audio_files"]
        metadata = lake.read_many(FILE_METADATA.name)
        if metadata is not None:  # the drop's own speakers and transcripts outrank names and the ASR
            labels = metadata.select("source_path", "speaker", "reference_text").unique("source_path", keep="first")
            audio_files = audio_files.join(labels, on="source_path", how="left")
        selection = select_keyword_clips(
            tables["words"], tables["segments"], audio_files, training.dataset_config(keyword), earlier
        )
        lake.write_table(KEYWORD_CLIPS, keyword, selection.manifest)
        lake.write_table(KEYWORD_CANDIDATES, keyword, selection.candidates)
        shortfall = dataset_shortfall(selection.manifest)
        if shortfall:
            context.log.warning(shortfall)
        # Reasons carry the measured values; the summary counts them with the numbers left out.
        rule = pl.col("reason").str.replace_all(r"-?\d+(\.\d+)?", "…").fill_null("taken")
        decisions = selection.candidates.group_by(pl.concat_str("kind", pl.lit(": "), rule)).len()
        return MaterializeResult(
            metadata=meter.finish(
                lake,
                {
                    **dataset_lineage(selection.manifest),
                    "trainable": shortfall is None,
                    "shortfall": shortfall or "none",
                    "candidate_decisions": MetadataValue.json(dict(decisions.sort("kind").iter_rows())),
                },
            )
        )

    @asset_check(asset=keyword_dataset, partitions_def=partitions, blocking=False)
    def keyword_dataset_is_trainable(context: AssetCheckExecutionContext, storage: PlatformStorage) -> AssetCheckResult:
        """Every split has positive and negative clips (a warning, not a failure: too little data is
        an outcome; keyword_model skips until more arrives)."""
        shortfall = dataset_shortfall(storage.lake.read(KEYWORD_CLIPS.name, context.partition_key))
        return AssetCheckResult(
            passed=shortfall is None,
            severity=AssetCheckSeverity.WARN,
            description=shortfall or "every split has positive and negative clips",
        )

    @asset(
        deps=[keyword_dataset],
        partitions_def=partitions,
        output_required=False,
        automation_condition=AFTER_UPSTREAM_UPDATES,
        pool="audio_models",
        group_name="training",
        kinds={"pytorch", "mlflow"},
        description="A keyword-spotting model trained on keyword_dataset, logged to MLflow and registered "
        "as a new version of kws-<keyword>; the champion alias moves only in keyword_champion.",
    )
    def keyword_model(
        context: AssetExecutionContext, storage: PlatformStorage, training: TrainingResource, metering: MeteringResource
    ) -> Iterator[MaterializeResult]:
        keyword = context.partition_key
        meter = metering.start(context)
        manifest = storage.lake.read(KEYWORD_CLIPS.name, keyword)
        shortfall = dataset_shortfall(manifest)
        if shortfall is not None:
            # Not a failure: a retry would find the same data. The next keyword_dataset update re-runs it.
            context.log.warning(f"skipped, no model trained: {shortfall}")
            return
        from audio_platform.audio.tts import synthesize_speech
        from audio_platform.training.pipeline import train_and_register
        from audio_platform.training.registry import floors_shortfall, record_decision, training_figures

        try:
            outcome = train_and_register(
                manifest,
                training.training_config(),
                tracking_uri=training.tracking_uri,
                model_name=training.model_name(keyword),
                artifact_location=training.artifact_root,
                tts=synthesize_speech if training.synthetic_positives else None,
            )
        except ValueError as err:  # a bad setting or dataset: the reason belongs in the run summary
            raise Failure(description=f"training {training.model_name(keyword)} failed: {err}") from err
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
        yield MaterializeResult(
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
            storage.lake.read(KEYWORD_CLIPS.name, keyword),
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

    return (keyword_dataset, keyword_model, keyword_champion), (keyword_dataset_is_trainable, candidate_meets_floors)


def mirror_registry(storage: PlatformStorage, training: TrainingResource, keyword: str) -> None:
    """Copy the registry's view of kws-<keyword> into the lake (see ``mirror_to_lake``)."""
    from audio_platform.training.registry import mirror_to_lake

    mirror_to_lake(storage.lake, training.tracking_uri, training.model_name(keyword), keyword)
