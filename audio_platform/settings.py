"""Typed platform settings: where state lives and the knobs users turn most.

Everything defaults to an embedded, single-machine layout under ``AUDIO_PLATFORM_HOME``
(default ``./.audio_platform``). Each field can be overridden by an environment variable
``AUDIO_PLATFORM_<FIELD>`` (upper case), which is how the Kubernetes deployment configures it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from audio_platform.audio.whisper_models import PROFILES

DEFAULT_HOME = ".audio_platform"
# Characters a home path cannot hold: SQLAlchemy unquotes `%XX` in sqlite:/// URLs, both it and
# DuckDB (for its write-ahead log) cut a path at `?`, and DuckDB reads `\` as a path separator.
HOME_URI_CHARACTERS = "?%\\"
ENV_PREFIX = "AUDIO_PLATFORM_"
# Resources whose fields are read from AUDIO_PLATFORM_<RESOURCE>_<FIELD> (see resource_config).
RESOURCE_SECTIONS = ("vad", "asr", "curation", "training")
# Values of AUDIO_PLATFORM_EXECUTOR: all steps in the run's process, a subprocess per step (Dagster's
# default), or dagster_k8s.k8s_job_executor.
EXECUTORS = ("in_process", "multiprocess", "k8s")
# The op tag dagster-k8s reads per step (dagster_k8s.job.USER_DEFINED_K8S_CONFIG_KEY), and the keys
# of its value (USER_DEFINED_K8S_JOB_CONFIG_SCHEMA); test_k8s.py checks both against dagster_k8s.
K8S_CONFIG_TAG = "dagster-k8s/config"
K8S_STEP_CONFIG_KEYS = (
    "container_config",
    "pod_spec_config",
    "pod_template_spec_metadata",
    "job_config",
    "job_metadata",
    "job_spec_config",
    "merge_behavior",
)


def parse_k8s_step_config(raw: str) -> dict[str, Any]:
    """AUDIO_PLATFORM_ASR_K8S_CONFIG as the dict dagster-k8s reads from a step's op tag; a clear
    error for invalid JSON, a non-object, an unknown key or a value of the wrong shape."""
    name = f"{ENV_PREFIX}ASR_K8S_CONFIG"
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ValueError(f"{name} is not valid JSON: {err}") from err
    if not isinstance(config, dict):
        raise ValueError(f"{name} must be a JSON object, got {type(config).__name__}")
    unknown = sorted(set(config) - set(K8S_STEP_CONFIG_KEYS))
    if unknown:
        raise ValueError(f"{name}: unknown keys {unknown}; dagster-k8s accepts {', '.join(K8S_STEP_CONFIG_KEYS)}")
    for key, value in config.items():
        if key == "merge_behavior":
            if value not in ("DEEP", "SHALLOW"):
                raise ValueError(f"{name}: merge_behavior must be DEEP or SHALLOW, got {value!r}")
        elif not isinstance(value, dict):
            raise ValueError(f"{name}: {key} must be a JSON object, got {type(value).__name__}")
    return config


@dataclass(frozen=True)
class Settings:
    # Each field's docstring is its entry in docs/configuration.md (python -m audio_platform.reference).
    home: Path
    """All state: lake, warehouse, Dagster instance, MLflow store, inbox, audio cache."""
    shard_size: int = 500
    """Files per shard partition (one shard = one run)."""
    inbox_quiet_period_s: float = 60.0
    """An inbox drop without a ready marker counts as complete after this long unchanged."""
    max_file_duration_s: float = 4 * 3600.0
    """Longer files are quarantined."""
    # Prices behind every stage's estimated_cost (metadata, stage_runs, metrics), in any currency.
    # Defaults are on-demand USD list prices: a compute-optimized vCPU-hour with its memory (as in
    # docs/capacity_plan.md) and an A10G-class GPU-hour.
    price_per_cpu_hour: float = 0.045
    """Price of a CPU-hour behind every stage's `estimated_cost`."""
    price_per_gpu_hour: float = 1.0
    """Price of a GPU-hour behind every stage's `estimated_cost`."""
    keywords: str = "six"
    """Comma-separated keywords: one keyword-spotting model (`kws-<keyword>`) each."""
    mlflow_tracking_uri_override: str | None = None
    """An MLflow tracking server or SQL store; unset: SQLite under `<home>/mlflow`."""
    mlflow_artifact_uri: str | None = None
    """Where MLflow stores artifacts of newly created experiments, e.g. `s3://bucket/mlflow`; the
    default folder under home only suits a tracking store on the same machine."""
    lake_uri: str | None = None
    """The lake (and its content index) on an object store, e.g. `s3://bucket/prefix`, or a folder;
    unset: `<home>/lake`. The audio cache, inbox and warehouse file stay under home either way."""
    executor: str = "in_process"
    """How a launched run executes its steps: `in_process` (every step in the run's process or pod:
    models and imports are loaded once per run, so a run from the UI or the inbox sensor costs what
    the CLI's does), `multiprocess` (Dagster's default executor: each step in its own subprocess)
    or `k8s` (`dagster_k8s.k8s_job_executor`: one Kubernetes
    Job per step, so only the ASR step's pod holds a GPU). CLI commands run in-process either way."""
    asr_pool: str = "audio_models"
    """Dagster pool of the ASR step (`transcripts`/`words`); its slots are set with `dagster instance
    concurrency set <pool> <n>`. Default: the pool VAD and training share."""
    asr_k8s_config: str | None = None
    """With `executor=k8s`: the ASR step's `dagster-k8s/config` op tag, a JSON object with the keys
    of dagster-k8s's per-step config (`container_config`, `pod_spec_config`,
    `pod_template_spec_metadata`, `job_config`, `job_metadata`, `job_spec_config`, `merge_behavior`),
    e.g. a GPU limit, node selector and toleration (k8s/gpu-settings.yaml)."""
    code_location: str = "audio_platform"
    """The Dagster code location serving these definitions (workspace.yaml and `dg dev`:
    `audio_platform`; the Helm chart: the user deployment's name). The CLI files its runs under it,
    so the UI lists them with its own and the run-retry daemon finds their code."""
    resource_config: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, hash=False)
    """Values of resource fields by resource and field name, e.g. ``{"asr": {"beam_size": 1}}``:
    `load_settings` fills it from the `AUDIO_PLATFORM_<RESOURCE>_<FIELD>` variables (text, parsed
    and checked against the field when the definitions are built)."""

    def __post_init__(self) -> None:
        unsafe = sorted(set(str(self.home)) & set(HOME_URI_CHARACTERS))
        if unsafe:
            # Checked before anything is written: these stores would otherwise open another path.
            raise ValueError(
                f"{ENV_PREFIX}HOME {str(self.home)!r} contains {' and '.join(map(repr, unsafe))}: the Dagster "
                "and MLflow SQLite stores (SQLAlchemy URLs) and DuckDB read them as URI or path syntax; choose a "
                "home without them (drop folders may hold any character)"
            )
        if self.shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {self.shard_size}")
        if not self.keyword_list:
            raise ValueError("keywords must name at least one keyword")
        if self.max_file_duration_s <= 0:
            raise ValueError(f"max_file_duration_s must be > 0, got {self.max_file_duration_s}")
        if self.price_per_cpu_hour < 0 or self.price_per_gpu_hour < 0:
            raise ValueError(f"prices must be >= 0, got {self.price_per_cpu_hour} and {self.price_per_gpu_hour}")
        # No credentials in the URI (they would show in logs and the UI): they come from AWS_* variables.
        if self.lake_uri and "://" in self.lake_uri and not re.fullmatch(r"s3://[^/:@]+(/.*)?", self.lake_uri):
            raise ValueError("lake_uri must be a folder or s3://bucket[/prefix] (credentials go in AWS_* variables)")
        if self.executor not in EXECUTORS:
            raise ValueError(f"{ENV_PREFIX}EXECUTOR must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        if not self.asr_pool.strip():
            raise ValueError(f"{ENV_PREFIX}ASR_POOL must name a pool")
        if self.asr_k8s_config and self.executor != "k8s":
            # The run launcher ignores op tags: without per-step pods the config would silently do nothing.
            raise ValueError(f"{ENV_PREFIX}ASR_K8S_CONFIG needs {ENV_PREFIX}EXECUTOR=k8s")
        if self.asr_k8s_config:
            parse_k8s_step_config(self.asr_k8s_config)

    @property
    def asr_op_tags(self) -> dict[str, Any]:
        """Op tags of the ASR step: ``{"dagster-k8s/config": <asr_k8s_config parsed>}`` when set, else none."""
        return {K8S_CONFIG_TAG: parse_k8s_step_config(self.asr_k8s_config)} if self.asr_k8s_config else {}

    @property
    def lake_root(self) -> Path | str:
        """AUDIO_PLATFORM_LAKE_URI (an s3:// URI or a folder), else ``<home>/lake``."""
        if not self.lake_uri:
            return self.home / "lake"
        return self.lake_uri if "://" in self.lake_uri else Path(self.lake_uri).expanduser()

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
    def mlflow_artifact_root(self) -> str:
        """AUDIO_PLATFORM_MLFLOW_ARTIFACT_URI (e.g. s3://bucket/mlflow), else a folder under home."""
        return self.mlflow_artifact_uri or str(self.home / "mlflow" / "artifacts")


def _coerce(raw: str, annotation: Any) -> Any:
    kind = str(annotation)
    if "bool" in kind:
        if raw.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if raw.strip().lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{raw!r} is not true/false")
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
    for setting in environment_fields():
        key = f"{ENV_PREFIX}{setting.name.upper()}"
        if setting.name != "home" and env.get(key, "") != "":
            try:
                values[setting.name] = _coerce(env[key], setting.type)
            except ValueError as err:
                raise ValueError(f"{key}={env[key]!r} is not a valid {setting.type}") from err
    # Folders are fixed where the command was typed: the servers run in the project folder, and a
    # run a daemon executes gets these values in its run config.
    for name in ("lake_uri", "mlflow_artifact_uri"):
        values[name] = _absolute_folder(values.get(name))
    own = {f"{ENV_PREFIX}{setting.name.upper()}" for setting in environment_fields()}
    resource_config: dict[str, dict[str, str]] = {}
    for key, raw in env.items():
        for section in RESOURCE_SECTIONS:
            prefix = f"{ENV_PREFIX}{section.upper()}_"
            if key.startswith(prefix) and key not in own and raw != "":
                resource_config.setdefault(section, {})[key.removeprefix(prefix).lower()] = raw
    asr_model = resource_config.get("asr", {}).get("model")
    if asr_model is not None and asr_model not in PROFILES:  # a model folder, not a profile name
        resource_config["asr"]["model"] = _absolute_folder(asr_model) or ""
    return Settings(**values, resource_config=resource_config)


def _absolute_folder(value: str | None) -> str | None:
    """A local folder as an absolute path; URIs (``s3://…``), ``null`` and unset stay as they are."""
    if not value or "://" in value or value.strip().lower() in ("null", "none"):
        return value
    return str(Path(value).expanduser().resolve())


def environment_fields() -> tuple[Any, ...]:
    """The Settings fields read from their own ``AUDIO_PLATFORM_<FIELD>`` variable."""
    return tuple(setting for setting in fields(Settings) if setting.name != "resource_config")
