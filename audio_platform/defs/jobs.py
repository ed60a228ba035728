"""The jobs whose selection does not depend on settings (train_keyword is built with the keywords)."""

from dagster import AssetKey, AssetSelection, define_asset_job

from audio_platform.defs.partitions import shard_partitions
from audio_platform.defs.registration import PROCESS_SHARD_JOB

# By key: the transcription asset is built from settings (its pool and op tags), outside this folder.
SHARD_ASSETS = AssetSelection.assets(
    "raw_audio_files",
    "vad_segments",
    "near_duplicates",
    AssetKey("transcripts"),
    AssetKey("words"),
    "segment_scores",
    "curated_segments",
    "asr_evaluation",
)

process_shard_job = define_asset_job(
    PROCESS_SHARD_JOB,
    selection=SHARD_ASSETS,
    partitions_def=shard_partitions,
    description="Everything for one shard: inventory → VAD → ASR and near-duplicate lookup → scores → curated "
    "set, with checks; "
    "ASR accuracy where the drop carries reference transcripts.",
)
rescore_shard_job = define_asset_job(
    "rescore_shard",
    selection=AssetSelection.assets("near_duplicates", "segment_scores", "curated_segments"),
    partitions_def=shard_partitions,
    description="Re-score and re-select one shard after changing weights or policy (and look its segments up "
    "again for near-duplicates in every drop); never re-transcribes.",
)
refresh_warehouse_job = define_asset_job("refresh_warehouse", selection=AssetSelection.assets("warehouse"))
