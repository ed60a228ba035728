"""The table of contents: the `dg` project's definitions.

Everything that is the same in every deployment (assets, checks, static jobs, sensors) is
discovered in the ``audio_platform/defs`` folder by ``load_from_defs_folder``; what the settings
shape (the transcription asset's pool and op tags, one training partition per keyword, the
executor, the resources bound from the environment) is built here and merged in.
"""

from __future__ import annotations

from pathlib import Path

from dagster import (
    AssetSelection,
    ConfigurableResource,
    Definitions,
    ExecutorDefinition,
    define_asset_job,
    definitions,
    in_process_executor,
    load_from_defs_folder,
)

from audio_platform.defs.config import bind
from audio_platform.defs.metering import MeteringResource
from audio_platform.defs.resources import AsrResource, CurationResource, PlatformStorage, VadResource
from audio_platform.defs.sensors import InboxResource
from audio_platform.defs.training import TrainingResource, build_training_assets
from audio_platform.defs.transcription import build_transcription_asset
from audio_platform.settings import ENV_PREFIX, Settings, load_settings


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


# Training resource fields that settings derive, with the variable that sets them.
MLFLOW_LOCATIONS = {
    "tracking_uri": f"{ENV_PREFIX}MLFLOW_TRACKING_URI_OVERRIDE",
    "artifact_root": f"{ENV_PREFIX}MLFLOW_ARTIFACT_URI",
}
# The dg project whose defs folder holds the definitions: the checkout the package is installed
# from (editable, as `make setup` and the images do).
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def platform_resources(settings: Settings) -> dict[str, ConfigurableResource]:
    """Every resource, bound from ``settings``: deployment values, and the resource fields set by
    ``AUDIO_PLATFORM_<RESOURCE>_<FIELD>`` (``settings.resource_config``). A value the domain
    config refuses fails here, when the definitions load, not in the middle of a run."""
    bound = settings.resource_config
    for name, variable in MLFLOW_LOCATIONS.items():
        if name in bound.get("training", {}):
            # One MLflow store for training and for the CLI's models/export/train summaries.
            raise ValueError(f"{ENV_PREFIX}TRAINING_{name.upper()}: set {variable} instead")
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
    dnsmos_weight = next((c.weight for c in curation.criteria() if c.name == "dnsmos_ovrl"), 0.0)
    if (dnsmos_weight > 0 or curation.policy().min_dnsmos_ovrl > 0) and not vad.config().dnsmos:
        # Unmeasured, every segment would sit at the criterion's anti-ideal or fail the floor.
        raise ValueError(
            f"the dnsmos_ovrl criterion or floor is on but DNSMOS is not measured: set {ENV_PREFIX}VAD_DNSMOS=true"
        )
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


def settings_definitions(settings: Settings) -> Definitions:
    """The definitions that ``settings`` shape (see the module docstring)."""
    transcribe_segments = build_transcription_asset(pool=settings.asr_pool, op_tags=settings.asr_op_tags)
    (keyword_dataset, keyword_model, keyword_champion), training_checks = build_training_assets(settings.keyword_list)
    train_keyword_job = define_asset_job(
        "train_keyword",
        selection=AssetSelection.assets(keyword_dataset, keyword_model, keyword_champion),
        partitions_def=keyword_model.partitions_def,
        description="Cut the keyword dataset from all curated shards, train, register, gate, promote.",
    )
    return Definitions(
        assets=[transcribe_segments, keyword_dataset, keyword_model, keyword_champion],
        asset_checks=training_checks,
        jobs=[train_keyword_job],
        executor=_executor(settings),
        resources=platform_resources(settings),
    )


def build_definitions(settings: Settings) -> Definitions:
    """The platform's definitions under ``settings`` (tests and the CLI pass their own)."""
    if not (PROJECT_ROOT / "pyproject.toml").is_file():
        raise RuntimeError(
            f"audio_platform loads its definitions from its dg project ([tool.dg] in pyproject.toml), looked for "
            f"in {PROJECT_ROOT}: install the checkout editable (pip install -e <checkout>), as make setup and "
            "k8s/Dockerfile do"
        )
    return Definitions.merge(
        load_from_defs_folder(path_within_project=Path(__file__).parent), settings_definitions(settings)
    )


@definitions
def defs() -> Definitions:
    """What the code location loads (workspace.yaml, `dg`), with the settings of its environment."""
    return build_definitions(load_settings())
