"""Shard partitions: one shard = one partition = one run."""

import warnings

from dagster import DynamicPartitionsDefinition, PreviewWarning

SHARDS = "shards"
shard_partitions = DynamicPartitionsDefinition(name=SHARDS)

# Partitioned asset checks are a preview feature in Dagster 1.13; they are what lets each shard's
# checks see their partition, so the warning is expected rather than actionable.
warnings.filterwarnings("ignore", category=PreviewWarning, message=".*partitions_def on an AssetCheckSpec.*")
