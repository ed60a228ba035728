"""Shard partitions: one shard = one partition = one run."""

from dagster import DynamicPartitionsDefinition

SHARDS = "shards"
shard_partitions = DynamicPartitionsDefinition(name=SHARDS)
