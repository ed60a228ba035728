"""Dagster resources: configuration surfaces over the domain code, nothing more.

Their fields are the domain configs' (and the settings') declared fields (see
:mod:`audio_platform.defs.config`): the definitions bind them from the environment, and every
field can also be changed per run from the Dagster launchpad.
"""

from pathlib import Path

import numpy as np
from pydantic import Field

from audio_platform.audio.asr import AsrConfig, WhisperTranscriber
from audio_platform.audio.decode import stream_mono_16k
from audio_platform.audio.pcm_cache import PcmCache
from audio_platform.audio.vad import SileroVad, VadConfig
from audio_platform.config_fields import described_fields
from audio_platform.curation.selection import CurationPolicy
from audio_platform.curation.topsis import DEFAULT_CRITERIA, Criterion, parse_criteria
from audio_platform.defs.config import declared_fields_resource, domain_config
from audio_platform.settings import Settings
from audio_platform.storage.content_index import INDEX_DIR, ContentIndex
from audio_platform.storage.lake import Lake


class PlatformStorage(declared_fields_resource(described_fields(Settings, include=("max_file_duration_s",)))):  # type: ignore[misc]
    """Where the lake, the audio cache, the content index and the warehouse live."""

    # Field descriptions show in the launchpad and in docs/configuration.md.
    home: str = Field(description="AUDIO_PLATFORM_HOME: the audio cache and the warehouse file live under it")
    lake_root: str | None = Field(
        default=None,
        description="The lake and its content index: a folder or s3://bucket/prefix (default: <home>/lake). The "
        "audio cache and the warehouse file are always under home, on local or volume disk.",
    )

    @property
    def lake(self) -> Lake:
        return Lake(self.lake_root or Path(self.home) / "lake")

    @property
    def content_index(self) -> ContentIndex:
        return ContentIndex(str(self.lake.root / INDEX_DIR))

    @property
    def pcm_cache(self) -> PcmCache:
        return PcmCache(Path(self.home) / "cache" / "pcm16k")

    @property
    def warehouse_path(self) -> Path:
        return Path(self.home) / "warehouse.duckdb"

    def load_audio(self, file_id: str, source_path: str) -> np.ndarray:
        """16 kHz mono samples of an inventoried file: from the cache, re-decoded if it was evicted."""
        cache = self.pcm_cache
        if not cache.has(file_id):
            cache.write(file_id, stream_mono_16k(Path(source_path), max_duration_s=self.max_file_duration_s))
        return cache.load(file_id)


class VadResource(declared_fields_resource(described_fields(VadConfig))):  # type: ignore[misc]
    """Silero VAD segmentation (stage vad_segments). Durations are in seconds."""

    def config(self) -> VadConfig:
        return domain_config(self, VadConfig)

    def build(self) -> SileroVad:
        return SileroVad(self.config())


class AsrResource(declared_fields_resource(described_fields(AsrConfig))):  # type: ignore[misc]
    """faster-whisper transcription with word timestamps (stage transcripts/words)."""

    def config(self) -> AsrConfig:
        return domain_config(self, AsrConfig)

    def build(self) -> WhisperTranscriber:
        return WhisperTranscriber(self.config())


class CurationResource(declared_fields_resource(described_fields(CurationPolicy))):  # type: ignore[misc]
    """Scoring weights and the selection policy. Changing these re-runs only scoring and selection."""

    criteria_overrides: dict[str, dict[str, float]] = Field(
        default={},
        description='Per-criterion overrides of weight / ideal / anti_ideal, e.g. {"snr_db": {"weight": 3.0}}; '
        "weight 0 disables a criterion; unknown names are rejected with the list of known ones.",
    )

    def criteria(self) -> tuple[Criterion, ...]:
        if not self.criteria_overrides:
            return DEFAULT_CRITERIA
        return parse_criteria(self.criteria_overrides)

    def policy(self) -> CurationPolicy:
        return domain_config(self, CurationPolicy)
