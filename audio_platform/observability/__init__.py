"""Observability domain code (no Dagster import): stage usage and cost, the ``stage_runs`` facts,
progress reporting, charts for asset metadata and MLflow, and the Prometheus collector."""
