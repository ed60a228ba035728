"""raw_audio_files: the inventory of a shard (identity, dedup, quarantine, the one decode)."""

from collections import Counter
from pathlib import Path

import polars as pl
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetExecutionContext,
    Backoff,
    Jitter,
    MaterializeResult,
    MetadataValue,
    RetryPolicy,
    asset,
    asset_check,
)

from audio_platform.audio.inventory import (
    FILE_STATUSES,
    OK,
    QUARANTINE_CATEGORIES,
    claimant_for,
    inventory_file,
    quarantine_category,
    removed_record,
)
from audio_platform.defs.checks import Problem, verdict
from audio_platform.defs.metering import MeteringResource
from audio_platform.defs.partitions import shard_partitions
from audio_platform.defs.resources import PlatformStorage
from audio_platform.storage.metadata import drop_metadata
from audio_platform.storage.tables import AUDIO_FILES, FILE_METADATA, SHARD_FILES

# Transient I/O (network filesystems, object-store mounts) is retried; bad content is not an
# error at all (it is quarantined), so retries never mask a broken file.
IO_RETRY = RetryPolicy(max_retries=3, delay=2, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)


@asset(
    partitions_def=shard_partitions,
    retry_policy=IO_RETRY,
    group_name="ingest",
    kinds={"python", "parquet"},
    description="Inventory of every input file of the shard: content hash, format found by decoding, "
    "status ok / quarantined (with reason) / duplicate / removed. Table: audio_files; the drop's "
    "metadata.csv / metadata.jsonl rows (reference text, speaker, language): file_metadata.",
)
def raw_audio_files(
    context: AssetExecutionContext, storage: PlatformStorage, metering: MeteringResource
) -> MaterializeResult:
    shard = context.partition_key
    lake = storage.lake
    files = lake.read(SHARD_FILES.name, shard)
    index = storage.content_index
    cache = storage.pcm_cache
    meter = metering.start(context)
    progress = meter.progress("ingest", files.height)
    # What the last run knew of files that have left the drop since (kept on their `removed` rows).
    before = lake.read_many(AUDIO_FILES.name, [shard])
    last_known = {row["source_path"]: row for row in before.iter_rows(named=True)} if before is not None else {}
    rows = []
    for source_path, rel_path, drop_root, removed_at in files.select(
        "source_path", "rel_path", "drop_root", "removed_at"
    ).iter_rows():
        if removed_at is not None:
            rows.append(removed_record(last_known.get(source_path), source_path, rel_path, removed_at).as_row())
            progress.advance(audio_s=0.0)
            continue
        record = inventory_file(
            Path(source_path),
            rel_path,
            Path(drop_root),
            claimant_for(shard, source_path),
            index.claim,
            cache,
            storage.max_file_duration_s,
            index.release,
        )
        rows.append(record.as_row())
        decoded_s = record.duration_s if record.status == OK and record.duration_s else 0.0
        meter.audio_s += decoded_s
        if record.reason:  # every quarantine and duplicate, and notes on ok files
            context.log.info(f"{record.status}: {rel_path}: {record.reason}")
        progress.advance(audio_s=decoded_s)
    drop_id = files["drop_id"][0] if files.height else ""
    record_schema = {k: v for k, v in AUDIO_FILES.schema.items() if k not in ("shard", "drop_id")}
    frame = pl.DataFrame(rows, schema=record_schema).with_columns(
        pl.lit(shard).alias("shard"), pl.lit(drop_id).alias("drop_id")
    )
    lake.write_table(AUDIO_FILES, shard, frame)
    present = files.filter(pl.col("removed_at").is_null())
    metadata, problems = drop_metadata(
        Path(present["drop_root"][0]) if present.height else Path("."),
        present["rel_path"],
        memo_dir=Path(storage.home) / "cache" / "metadata_checks",
    )
    for problem in problems:
        context.log.warning(f"drop metadata: {problem}")
    metadata = metadata.join(frame.select("rel_path", "file_id", "source_path"), on="rel_path", how="left")
    lake.write_table(FILE_METADATA, shard, metadata.with_columns(shard=pl.lit(shard), drop_id=pl.lit(drop_id)))
    statuses = Counter(frame["status"].to_list())
    reasons = Counter(r for r in frame.filter(pl.col("status") == "quarantined")["reason"].to_list())
    categories = Counter(quarantine_category(reason) for reason in reasons.elements())
    return MaterializeResult(
        metadata=meter.finish(
            lake,
            {
                "ok": statuses.get("ok", 0),
                "quarantined": statuses.get("quarantined", 0),
                "duplicate": statuses.get("duplicate", 0),
                "removed": statuses.get("removed", 0),
                "metadata_rows": metadata.filter(pl.col("fields").is_not_null()).height,
                "metadata_problems": MetadataValue.md("\n".join(f"- {p}" for p in problems) or "none"),
                "quarantine_reasons": MetadataValue.md(
                    "\n".join(f"- {count} × {reason}" for reason, count in reasons.most_common()) or "none"
                ),
            },
            files=frame.height,
            failures={category: categories[category] for category in QUARANTINE_CATEGORIES},
            failure_label="quarantined",
        )
    )


@asset_check(asset=raw_audio_files, partitions_def=shard_partitions, blocking=True)
def every_input_accounted_for(context: AssetCheckExecutionContext, storage: PlatformStorage) -> AssetCheckResult:
    """Conservation: each input of the shard appears exactly once, with a valid status, and every
    quarantined or duplicate file carries a reason."""
    shard = context.partition_key
    inputs = storage.lake.read(SHARD_FILES.name, shard)["source_path"]
    inventory = storage.lake.read(AUDIO_FILES.name, shard)
    missing = set(inputs.to_list()) - set(inventory["source_path"].to_list())
    repeated = inventory.height - inventory["source_path"].n_unique()
    bad_status = inventory.filter(~pl.col("status").is_in(FILE_STATUSES)).height
    unexplained = inventory.filter((pl.col("status") != "ok") & pl.col("reason").is_null()).height
    counts = inventory.group_by("status").len()
    status_counts = dict(zip(counts["status"].to_list(), counts["len"].to_list(), strict=True))
    unknown = len(set(inventory["source_path"].to_list()) - set(inputs.to_list()))
    return verdict(
        [
            Problem("missing", len(missing), "inputs missing from the inventory"),
            Problem("unknown", unknown, "inventory rows for files that are not inputs of the shard"),
            Problem("repeated", repeated, "inputs inventoried more than once"),
            Problem("bad_status", bad_status, f"rows with a status other than {', '.join(FILE_STATUSES)}"),
            Problem("unexplained", unexplained, "quarantined, duplicate or removed files without a reason"),
        ],
        ok=f"each of {inputs.len()} inputs accounted for once",
        metadata={
            "inputs": inputs.len(),
            "ok": status_counts.get("ok", 0),
            "quarantined": status_counts.get("quarantined", 0),
            "duplicate": status_counts.get("duplicate", 0),
            "removed": status_counts.get("removed", 0),
        },
    )
