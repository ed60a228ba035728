"""Dagster resources: configuration surfaces over the domain code, nothing more.

Defaults come from :mod:`audio_platform.settings` (environment variables); every field can also
be changed per run from the Dagster launchpad.
"""

from pathlib import Path

import numpy as np
from dagster import ConfigurableResource
from pydantic import Field

from audio_platform.audio.asr import AsrConfig, WhisperTranscriber
from audio_platform.audio.decode import stream_mono_16k
from audio_platform.audio.pcm_cache import PcmCache
from audio_platform.audio.vad import SileroVad, VadConfig
from audio_platform.curation.selection import CurationPolicy
from audio_platform.curation.topsis import DEFAULT_CRITERIA, Criterion, parse_criteria
from audio_platform.storage.content_index import INDEX_DIR, ContentIndex
from audio_platform.storage.lake import Lake


class PlatformStorage(ConfigurableResource):
    """Where the lake, the audio cache, the content index and the warehouse live."""

    # Field descriptions show in the launchpad and in docs/configuration.md.
    home: str = Field(description="AUDIO_PLATFORM_HOME: the audio cache and the warehouse file live under it")
    lake_root: str | None = Field(
        default=None,
        description="The lake and its content index: a folder or s3://bucket/prefix (default: <home>/lake). The "
        "audio cache and the warehouse file are always under home, on local or volume disk.",
    )
    max_file_duration_s: float = Field(default=4 * 3600.0, description="Longer files are quarantined.")

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


class VadResource(ConfigurableResource):
    """Silero VAD segmentation (stage vad_segments). Durations are in seconds."""

    threshold: float = Field(default=0.5, description="Speech probability that starts a speech span.")
    min_speech_s: float = Field(default=0.25, description="Shorter speech spans are dropped.")
    min_silence_s: float = Field(default=0.1, description="Silence that ends a speech span.")
    speech_pad_s: float = Field(default=0.03, description="Padding added to both ends of each span.")
    merge_gap_s: float = Field(default=0.3, description="Neighbouring spans closer than this are merged.")
    max_segment_s: float = Field(
        default=30.0, description="Longer spans are split at their lowest-probability frame (30 s = Whisper's window)."
    )
    use_onnx: bool = Field(default=True, description="Run the ONNX model (else the TorchScript one).")
    num_threads: int = Field(default=1, description="CPU threads of the VAD model.")

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
    """faster-whisper transcription with word timestamps (stage transcripts/words)."""

    model_path: str | None = Field(
        default=None,
        description="AUDIO_PLATFORM_ASR_MODEL_PATH: a CTranslate2 Whisper folder; null: packaged tiny.en.",
    )
    device: str = Field(default="auto", description="AUDIO_PLATFORM_ASR_DEVICE: cpu, cuda or auto.")
    compute_type: str = Field(default="default", description="AUDIO_PLATFORM_ASR_COMPUTE_TYPE (CTranslate2).")
    beam_size: int = Field(default=5, description="AUDIO_PLATFORM_ASR_BEAM_SIZE: decoder beam width.")
    batch_size: int = Field(
        default=0,
        description="AUDIO_PLATFORM_ASR_BATCH_SIZE: 30-s windows decoded together; 0 = automatic "
        "(4 on CPU; on CUDA fitted to free GPU memory, halved on out-of-memory).",
    )
    cpu_threads: int = Field(default=0, description="AUDIO_PLATFORM_ASR_CPU_THREADS: 0 = automatic.")
    language: str | None = Field(default="en", description="Language to transcribe; null: detect per segment.")
    pack_across_files: bool = Field(
        default=False,
        description="AUDIO_PLATFORM_ASR_PACK_ACROSS_FILES: let segments of different files share a window "
        "(faster on short files; their words may bleed into each other).",
    )

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
                pack_across_files=self.pack_across_files,
            )
        )


class CurationResource(ConfigurableResource):
    """Scoring weights and the selection policy. Changing these re-runs only scoring and selection."""

    criteria_overrides: dict[str, dict[str, float]] = Field(
        default={},
        description='Per-criterion overrides of weight / ideal / anti_ideal, e.g. {"snr_db": {"weight": 3.0}}; '
        "weight 0 disables a criterion; unknown names are rejected with the list of known ones.",
    )
    min_score: float = Field(default=0.5, description="Lowest TOPSIS score selected.")
    min_duration_s: float = Field(default=1.0, description="Shorter segments are rejected.")
    max_duration_s: float = Field(default=30.0, description="Longer segments are rejected.")
    languages: list[str] = Field(default=["en"], description="Accepted transcript languages; empty: any.")
    max_no_speech_prob: float = Field(default=0.6, description="Segments the ASR deems likelier silent are rejected.")
    max_compression_ratio: float = Field(default=2.4, description="More repetitive transcripts are rejected.")
    max_clipping_ratio: float = Field(
        default=0.01, description="More clipped segments are rejected whatever their score; 1.0 disables the gate."
    )
    require_text: bool = Field(default=True, description="Reject segments with an empty transcript.")

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
