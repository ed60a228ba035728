"""The table of contents: every asset, check, job and resource of the platform."""

from __future__ import annotations

from dagster import (
    AssetSelection,
    ConfigurableResource,
    Definitions,
    ExecutorDefinition,
    define_asset_job,
    in_process_executor,
    load_asset_checks_from_modules,
)

from audio_platform.defs import curation, ingest, scoring, transcription, vad
from audio_platform.defs import warehouse as warehouse_defs
from audio_platform.defs.config import bind
from audio_platform.defs.curation import curated_segments
from audio_platform.defs.evaluation import asr_evaluation
from audio_platform.defs.ingest import raw_audio_files
from audio_platform.defs.metering import MeteringResource
from audio_platform.defs.partitions import shard_partitions
from audio_platform.defs.recovery import run_recovery_sensor
from audio_platform.defs.resources import AsrResource, CurationResource, PlatformStorage, VadResource
from audio_platform.defs.scoring import segment_scores
from audio_platform.defs.sensors import InboxResource, automation_sensor, inbox_sensor
from audio_platform.defs.training import TrainingResource, build_training_assets
from audio_platform.defs.transcription import TRANSCRIPTS_KEY, WORDS_KEY, build_transcription_asset
from audio_platform.defs.vad import vad_segments
from audio_platform.defs.warehouse import warehouse
from audio_platform.settings import ENV_PREFIX, Settings, load_settings

# Transcription is built from settings (its pool and op tags), so it is selected by key.
SHARD_ASSETS = AssetSelection.assets(
    raw_audio_files, vad_segments, TRANSCRIPTS_KEY, WORDS_KEY, segment_scores, curated_segments, asr_evaluation
)

process_shard_job = define_asset_job(
    "process_shard",
    selection=SHARD_ASSETS,
    partitions_def=shard_partitions,
    description="Everything for one shard: inventory → VAD → ASR → scores → curated set, with checks; "
    "ASR accuracy where the drop carries reference transcripts.",
)
rescore_shard_job = define_asset_job(
    "rescore_shard",
    selection=AssetSelection.assets(segment_scores, curated_segments),
    partitions_def=shard_partitions,
    description="Re-score and re-select one shard after changing weights or policy; never re-transcribes.",
)
refresh_warehouse_job = define_asset_job("refresh_warehouse", selection=AssetSelection.assets(warehouse))


def _executor(settings: Settings) -> ExecutorDefinition | None:
    """AUDIO_PLATFORM_EXECUTOR: `in_process` (default) runs a launched run's steps in its one process,
    as the CLI does (a subprocess per step would import Dagster, the definitions and the models once
    per step: ~16x slower for a shard); `multiprocess` keeps Dagster's default; `k8s` gives every step
    its own Kubernetes Job, which reads the step's `dagster-k8s/config` op tag and inherits the run
    launcher's image, env, volumes and resources (the Helm values)."""
    if settings.executor == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    if settings.executor == "in_process":
        return in_process_executor
    return None


def platform_resources(settings: Settings) -> dict[str, ConfigurableResource]:
    """Every resource, bound from ``settings``: deployment values, and the resource fields set by
    ``AUDIO_PLATFORM_<RESOURCE>_<FIELD>`` (``settings.resource_config``). A value the domain
    config refuses fails here, when the definitions load, not in the middle of a run."""
    bound = settings.resource_config
    vad = bind(VadResource, bound.get("vad", {}), env_section="vad")
    asr = bind(AsrResource, bound.get("asr", {}), env_section="asr")
    curation = bind(CurationResource, bound.get("curation", {}), env_section="curation")
    training = bind(
        TrainingResource,
        {
            "tracking_uri": settings.mlflow_tracking_uri,
            "artifact_root": settings.mlflow_artifact_root,
            **bound.get("training", {}),
        },
        env_section="training",
    )
    for section, build in (
        ("vad", vad.config),
        ("asr", asr.config),
        ("curation", curation.policy),
        ("curation", curation.criteria),
        ("training", training.training_config),
        ("training", training.floors),
        ("training", lambda: training.dataset_config(settings.keyword_list[0])),
    ):
        try:
            build()
        except ValueError as err:
            raise ValueError(f"{ENV_PREFIX}{section.upper()}_*: {err}") from None
    return {
        "storage": PlatformStorage(
            home=str(settings.home), lake_root=str(settings.lake_root), max_file_duration_s=settings.max_file_duration_s
        ),
        "vad": vad,
        "asr": asr,
        "curation": curation,
        "metering": MeteringResource(
            price_per_cpu_hour=settings.price_per_cpu_hour, price_per_gpu_hour=settings.price_per_gpu_hour
        ),
        "training": training,
        "inbox": InboxResource(
            root=str(settings.inbox),
            inbox_quiet_period_s=settings.inbox_quiet_period_s,
            shard_size=settings.shard_size,
        ),
    }


def build_definitions(settings: Settings) -> Definitions:
    transcribe_segments = build_transcription_asset(pool=settings.asr_pool, op_tags=settings.asr_op_tags)
    (keyword_dataset, keyword_model, keyword_champion), training_checks = build_training_assets(settings.keyword_list)
    train_keyword_job = define_asset_job(
        "train_keyword",
        selection=AssetSelection.assets(keyword_dataset, keyword_model, keyword_champion),
        partitions_def=keyword_model.partitions_def,
        description="Cut the keyword dataset from all curated shards, train, register, gate, promote.",
    )
    return Definitions(
        assets=[
            raw_audio_files,
            vad_segments,
            transcribe_segments,
            segment_scores,
            curated_segments,
            asr_evaluation,
            warehouse,
            keyword_dataset,
            keyword_model,
            keyword_champion,
        ],
        asset_checks=[
            *load_asset_checks_from_modules([ingest, vad, transcription, scoring, curation, warehouse_defs]),
            *training_checks,
        ],
        jobs=[process_shard_job, rescore_shard_job, refresh_warehouse_job, train_keyword_job],
        executor=_executor(settings),
        sensors=[inbox_sensor, automation_sensor, run_recovery_sensor],
        resources=platform_resources(settings),
    )


defs = build_definitions(load_settings())
