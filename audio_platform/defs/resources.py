"""Dagster resources: configuration surfaces over the domain code, nothing more.

Defaults come from :mod:`audio_platform.settings` (environment variables); every field can also
be changed per run from the Dagster launchpad.
"""

from pathlib import Path

import numpy as np
from dagster import ConfigurableResource

from audio_platform.audio.asr import AsrConfig, WhisperTranscriber
from audio_platform.audio.decode import stream_mono_16k
from audio_platform.audio.pcm_cache import PcmCache
from audio_platform.audio.vad import SileroVad, VadConfig
from audio_platform.curation.selection import CurationPolicy
from audio_platform.curation.topsis import DEFAULT_CRITERIA, Criterion, parse_criteria
from audio_platform.storage.content_index import ContentIndex
from audio_platform.storage.lake import Lake


class PlatformStorage(ConfigurableResource):
    """Where the lake, the audio cache, the content index and the warehouse live."""

    home: str
    max_file_duration_s: float = 4 * 3600.0

    @property
    def lake(self) -> Lake:
        return Lake(Path(self.home) / "lake")

    @property
    def content_index(self) -> ContentIndex:
        return ContentIndex(Path(self.home) / "lake" / "_content_index")

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


class VadResource(ConfigurableResource):
    threshold: float = 0.5
    min_speech_s: float = 0.25
    min_silence_s: float = 0.1
    speech_pad_s: float = 0.03
    merge_gap_s: float = 0.3
    max_segment_s: float = 30.0
    use_onnx: bool = True
    num_threads: int = 1

    def build(self) -> SileroVad:
        return SileroVad(
            VadConfig(
                threshold=self.threshold,
                min_speech_s=self.min_speech_s,
                min_silence_s=self.min_silence_s,
                speech_pad_s=self.speech_pad_s,
                merge_gap_s=self.merge_gap_s,
                max_segment_s=self.max_segment_s,
                use_onnx=self.use_onnx,
                num_threads=self.num_threads,
            )
        )


class AsrResource(ConfigurableResource):
    model_path: str | None = None
    device: str = "auto"
    compute_type: str = "default"
    beam_size: int = 1
    batch_size: int = 8
    cpu_threads: int = 0
    language: str | None = "en"

    def build(self) -> WhisperTranscriber:
        return WhisperTranscriber(
            AsrConfig(
                model_path=self.model_path,
                device=self.device,
                compute_type=self.compute_type,
                beam_size=self.beam_size,
                batch_size=self.batch_size,
                cpu_threads=self.cpu_threads,
                language=self.language,
            )
        )


class CurationResource(ConfigurableResource):
    """Scoring weights and the selection policy. Changing these re-runs only scoring and selection."""

    # Per-criterion overrides of weight / ideal / anti_ideal, e.g. {"snr_db": {"weight": 3.0}};
    # weight 0 disables a criterion; unknown names are rejected with the list of known ones.
    criteria_overrides: dict[str, dict[str, float]] = {}
    min_score: float = 0.5
    min_duration_s: float = 1.0
    max_duration_s: float = 30.0
    languages: list[str] = ["en"]
    max_no_speech_prob: float = 0.6
    max_compression_ratio: float = 2.4
    max_clipping_ratio: float = 0.01
    require_text: bool = True

    def criteria(self) -> tuple[Criterion, ...]:
        if not self.criteria_overrides:
            return DEFAULT_CRITERIA
        return parse_criteria(self.criteria_overrides)

    def policy(self) -> CurationPolicy:
        return CurationPolicy(
            min_score=self.min_score,
            min_duration_s=self.min_duration_s,
            max_duration_s=self.max_duration_s,
            languages=tuple(self.languages),
            max_no_speech_prob=self.max_no_speech_prob,
            max_compression_ratio=self.max_compression_ratio,
            max_clipping_ratio=self.max_clipping_ratio,
            require_text=self.require_text,
        )
