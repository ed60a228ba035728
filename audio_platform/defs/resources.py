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


# The domain configs hold the defaults; the resources only describe them for the launchpad.
_VAD, _ASR = VadConfig(), AsrConfig()


class VadResource(ConfigurableResource):
    """Silero VAD segmentation (stage vad_segments). Durations are in seconds."""

    threshold: float = Field(default=_VAD.threshold, description="Speech probability that starts a speech span.")
    min_speech_s: float = Field(
        default=_VAD.min_speech_s,
        description="Shorter speech spans are dropped (0.1 s keeps a clipped one-syllable word such as 'six').",
    )
    min_silence_s: float = Field(default=_VAD.min_silence_s, description="Silence that ends a speech span.")
    speech_pad_s: float = Field(default=_VAD.speech_pad_s, description="Padding added to both ends of each span.")
    merge_gap_s: float = Field(default=_VAD.merge_gap_s, description="Neighbouring spans closer than this are merged.")
    max_segment_s: float = Field(
        default=_VAD.max_segment_s,
        description="Longer spans are split at their lowest-probability frame (30 s = Whisper's window).",
    )
    use_onnx: bool = Field(default=_VAD.use_onnx, description="Run the ONNX model (else the TorchScript one).")
    num_threads: int = Field(default=_VAD.num_threads, description="CPU threads of the VAD model.")

    def build(self) -> SileroVad:
        return SileroVad(VadConfig(**{name: getattr(self, name) for name in type(self).model_fields}))


class AsrResource(ConfigurableResource):
    """faster-whisper transcription with word timestamps (stage transcripts/words)."""

    model_path: str | None = Field(
        default=None,
        description="AUDIO_PLATFORM_ASR_MODEL_PATH: a CTranslate2 Whisper folder; null: packaged tiny.en.",
    )
    device: str = Field(default="auto", description="AUDIO_PLATFORM_ASR_DEVICE: cpu, cuda or auto.")
    compute_type: str = Field(default="default", description="AUDIO_PLATFORM_ASR_COMPUTE_TYPE (CTranslate2).")
    beam_size: int = Field(default=_ASR.beam_size, description="AUDIO_PLATFORM_ASR_BEAM_SIZE: decoder beam width.")
    batch_size: int = Field(
        default=0,
        description="AUDIO_PLATFORM_ASR_BATCH_SIZE: 30-s windows decoded together; 0 = automatic "
        "(4 on CPU; on CUDA fitted to free GPU memory, halved on out-of-memory).",
    )
    cpu_threads: int = Field(default=0, description="AUDIO_PLATFORM_ASR_CPU_THREADS: 0 = automatic.")
    language: str | None = Field(default="en", description="Language to transcribe; null: detect per segment.")
    pack_across_files: bool = Field(
        default=_ASR.pack_across_files,
        description="AUDIO_PLATFORM_ASR_PACK_ACROSS_FILES: let segments of different files share a window "
        "(faster on short files; their words may bleed into each other).",
    )
    context_pad_s: float = Field(
        default=_ASR.context_pad_s,
        description="Seconds of the file's own audio decoded around each segment (at most half the pause to "
        "the next one): context at the VAD cut instead of digital silence.",
    )
    temperature_fallback: bool = Field(
        default=_ASR.temperature_fallback,
        description="Decode a segment again with Whisper's temperature fallback when its decode failed by "
        "Whisper's own signs (repetitive text, unlikely tokens, too many words, a word stretched over speech).",
    )

    def build(self) -> WhisperTranscriber:
        return WhisperTranscriber(AsrConfig(**{name: getattr(self, name) for name in type(self).model_fields}))


_POLICY = CurationPolicy()


class CurationResource(ConfigurableResource):
    """Scoring weights and the selection policy. Changing these re-runs only scoring and selection."""

    criteria_overrides: dict[str, dict[str, float]] = Field(
        default={},
        description='Per-criterion overrides of weight / ideal / anti_ideal, e.g. {"snr_db": {"weight": 3.0}}; '
        "weight 0 disables a criterion; unknown names are rejected with the list of known ones.",
    )
    min_score: float = Field(default=_POLICY.min_score, description="Lowest TOPSIS score selected.")
    min_duration_s: float = Field(default=_POLICY.min_duration_s, description="Shorter segments are rejected.")
    max_duration_s: float = Field(default=_POLICY.max_duration_s, description="Longer segments are rejected.")
    languages: list[str] = Field(
        default=list(_POLICY.languages), description="Accepted transcript languages; empty: any."
    )
    max_no_speech_prob: float = Field(
        default=_POLICY.max_no_speech_prob, description="Segments the ASR deems likelier silent are rejected."
    )
    max_compression_ratio: float = Field(
        default=_POLICY.max_compression_ratio, description="More repetitive transcripts are rejected."
    )
    max_clipping_ratio: float = Field(
        default=_POLICY.max_clipping_ratio,
        description="More clipped segments are rejected whatever their score; 1.0 disables the gate.",
    )
    require_text: bool = Field(default=_POLICY.require_text, description="Reject segments with an empty transcript.")
    max_repeated_ngram_ratio: float = Field(
        default=_POLICY.max_repeated_ngram_ratio,
        description="Transcripts whose word 3-grams (2-grams under 8 words) repeat more often are rejected as "
        "decoding loops; 1.0 disables the gate.",
    )
    max_word_chars: int = Field(
        default=_POLICY.max_word_chars,
        description="Transcripts with a longer word (letters and digits) are rejected as decoder garbage; raise "
        "it for languages with long compounds.",
    )
    max_chars_per_second: float = Field(
        default=_POLICY.max_chars_per_second,
        description="More letters and digits per second of segment than anyone says: the text was not heard there.",
    )
    min_chars_per_second: float = Field(
        default=_POLICY.min_chars_per_second,
        description="Fewer letters and digits per second, on segments of 2 s or more: the ASR missed the speech; "
        "0 disables the gate.",
    )
    reject_filler_phrases: bool = Field(
        default=_POLICY.reject_filler_phrases,
        description='Reject stock ASR hallucinations: a transcript that is only "Thank you." / "you" and the '
        'like, or holds a credits formula ("thanks for watching", "subtitles by").',
    )

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
            max_repeated_ngram_ratio=self.max_repeated_ngram_ratio,
            max_word_chars=self.max_word_chars,
            max_chars_per_second=self.max_chars_per_second,
            min_chars_per_second=self.min_chars_per_second,
            reject_filler_phrases=self.reject_filler_phrases,
        )
