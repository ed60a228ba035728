"""Typed platform settings: where state lives and the knobs users turn most.

Everything defaults to an embedded, single-machine layout under ``AUDIO_PLATFORM_HOME``
(default ``./.audio_platform``). Each field can be overridden by an environment variable
``AUDIO_PLATFORM_<FIELD>`` (upper case), which is how the Kubernetes deployment configures it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

DEFAULT_HOME = ".audio_platform"
ENV_PREFIX = "AUDIO_PLATFORM_"


@dataclass(frozen=True)
class Settings:
    home: Path
    shard_size: int = 500
    inbox_quiet_period_s: float = 60.0
    max_file_duration_s: float = 4 * 3600.0
    asr_model_path: str | None = None
    asr_device: str = "auto"
    asr_compute_type: str = "default"
    asr_batch_size: int = 8
    asr_beam_size: int = 1
    asr_cpu_threads: int = 0
    # Comma-separated keywords: one keyword-spotting model (kws-<keyword>) each.
    keywords: str = "six"
    mlflow_tracking_uri_override: str | None = None

    def __post_init__(self) -> None:
        if self.shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {self.shard_size}")
        if not self.keyword_list:
            raise ValueError("keywords must name at least one keyword")
        if self.max_file_duration_s <= 0:
            raise ValueError(f"max_file_duration_s must be > 0, got {self.max_file_duration_s}")

    @property
    def lake_root(self) -> Path:
        return self.home / "lake"

    @property
    def warehouse_path(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def audio_cache(self) -> Path:
        return self.home / "cache" / "pcm16k"

    @property
    def inbox(self) -> Path:
        return self.home / "inbox"

    @property
    def keyword_list(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(k.strip().lower() for k in self.keywords.split(",") if k.strip()))

    @property
    def mlflow_tracking_uri(self) -> str:
        """AUDIO_PLATFORM_MLFLOW_TRACKING_URI_OVERRIDE (e.g. a tracking server), else SQLite under home."""
        if self.mlflow_tracking_uri_override:
            return self.mlflow_tracking_uri_override
        return f"sqlite:///{(self.home / 'mlflow' / 'mlflow.db').resolve()}"

    @property
    def mlflow_artifact_root(self) -> Path:
        return self.home / "mlflow" / "artifacts"


def _coerce(raw: str, annotation: Any) -> Any:
    kind = str(annotation)
    if "int" in kind and "float" not in kind:
        return int(raw)
    if "float" in kind:
        return float(raw)
    if "Path" in kind:
        return Path(raw)
    return raw


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Build settings from ``AUDIO_PLATFORM_*`` environment variables; unset ones keep defaults."""
    env = dict(os.environ if environ is None else environ)
    values: dict[str, Any] = {"home": Path(env.get(f"{ENV_PREFIX}HOME", DEFAULT_HOME)).expanduser().resolve()}
    for field in fields(Settings):
        key = f"{ENV_PREFIX}{field.name.upper()}"
        if field.name != "home" and env.get(key, "") != "":
            try:
                values[field.name] = _coerce(env[key], field.type)
            except ValueError as err:
                raise ValueError(f"{key}={env[key]!r} is not a valid {field.type}") from err
    return Settings(**values)
