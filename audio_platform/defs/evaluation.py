"""asr_evaluation: each shard's transcripts scored against the drop's reference transcripts."""

import polars as pl
from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset
from pydantic import Field

from audio_platform.audio.inventory import OK
from audio_platform.defs.ingest import raw_audio_files
from audio_platform.defs.metering import MeteringResource
from audio_platform.defs.partitions import shard_partitions
from audio_platform.defs.resources import PlatformStorage
from audio_platform.defs.transcription import TRANSCRIPTS_KEY
from audio_platform.evaluation.asr_accuracy import (
    NORMALIZATION,
    evaluate_files,
    file_hypotheses,
    pooled,
    referenced_files,
)
from audio_platform.observability.plots import markdown_cell
from audio_platform.storage.tables import ASR_EVALUATION, AUDIO_FILES, FILE_METADATA, SEGMENTS, TRANSCRIPTS


class AsrEvaluationConfig(Config):
    source_group_depth: int = Field(
        default=1,
        ge=1,
        description="Folders under the drop that name a file's source group (1: the top-level folder).",
    )


@asset(
    deps=[TRANSCRIPTS_KEY, raw_audio_files],
    partitions_def=shard_partitions,
    group_name="speech",
    kinds={"polars", "parquet"},
    description="Word and character error rates of the shard's transcripts against the reference "
    "transcripts of the drop's metadata.csv / metadata.jsonl, per file (table asr_evaluation) and "
    "per source group (metadata). Empty where the drop carries no references.",
)
def asr_evaluation(
    context: AssetExecutionContext, config: AsrEvaluationConfig, storage: PlatformStorage, metering: MeteringResource
) -> MaterializeResult:
    shard = context.partition_key
    lake = storage.lake
    meter = metering.start(context)
    files = lake.read(AUDIO_FILES.name, shard).filter(pl.col("status") == OK)
    # Shards ingested before drop metadata existed have no file_metadata: nothing to compare with.
    references = referenced_files(files, lake.read_many(FILE_METADATA.name, [shard]))
    transcripts = lake.read(TRANSCRIPTS.name, shard)
    evaluation = evaluate_files(
        references, file_hypotheses(lake.read(SEGMENTS.name, shard), transcripts), config.source_group_depth
    )
    models = transcripts["asr_model"].unique().to_list()
    evaluation = evaluation.with_columns(
        shard=pl.lit(shard),
        drop_id=pl.lit(files["drop_id"][0] if files.height else ""),
        asr_model=pl.lit(", ".join(sorted(m for m in models if m))),
    )
    lake.write_table(ASR_EVALUATION, shard, evaluation)
    overall = pooled(evaluation, by=None).row(0, named=True)
    counts: dict[str, object] = {
        "files_with_reference": evaluation.height,
        "reference_words": int(overall["reference_words"] or 0),
        "normalization": NORMALIZATION,
    }
    # Numeric entries only where they exist, so the UI's plot across shards skips shards without references.
    if overall["wer"] is not None:
        counts |= {"wer": round(overall["wer"], 4), "cer": round(overall["cer"], 4)}
    if evaluation.height:
        counts["by_source_group"] = MetadataValue.md(source_group_markdown(pooled(evaluation)))
    return MaterializeResult(metadata=meter.finish(lake, counts, files=evaluation.height))


def source_group_markdown(groups: pl.DataFrame) -> str:
    """The per-group table of ``pooled`` as Markdown (WER and CER in percent)."""
    lines = ["| source group | files | reference words | WER | CER |", "|---|---|---|---|---|"]
    for row in groups.iter_rows(named=True):
        wer = "–" if row["wer"] is None else f"{100 * row['wer']:.1f} %"
        cer = "–" if row["cer"] is None else f"{100 * row['cer']:.1f} %"
        group = markdown_cell(row["source_group"])
        lines.append(f"| {group} | {row['files']} | {row['reference_words']} | {wer} | {cer} |")
    return "\n".join(lines)
