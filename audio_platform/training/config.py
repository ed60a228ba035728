"""Validated settings for keyword-spotting datasets, features, model, training and promotion.

Every dataclass checks itself in ``__post_init__`` and raises ``ValueError`` naming the field,
so a bad value in the platform settings fails at start-up instead of mid-training.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from audio_platform.audio.dsp import SAMPLE_RATE

# The keyword must be among this many of Whisper's likeliest texts (also what a bundle saved
# before the count was stored uses).
DEFAULT_VERIFIER_HYPOTHESES = 5


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _check_range(name: str, pair: tuple[float, float]) -> None:
    _require(
        len(pair) == 2 and pair[0] <= pair[1],
        f"{name} must be a (low, high) pair with low <= high, got {pair!r}",
    )


# Speech Commands' `<speaker>_nohash_<n>.wav` and `<speaker>_<n>.<ext>` (FSDD, ../shared/kws).
DEFAULT_SPEAKER_PATTERN = r"^(?P<speaker>.+?)(?:_nohash)?_\d+\.[^.]+$"


@dataclass(frozen=True)
class DatasetConfig:
    """How clips are chosen and cut from the platform tables (see ``dataset.select_keyword_clips``).

    The keyword selection is its own policy, apart from the ASR curated set: a one-word
    recording is too short for an ASR training segment but is the best keyword source there is.
    """

    keyword: str
    clip_s: float = 1.0
    """Length of every training clip in seconds."""
    min_context_s: float = 0.05
    """Keyword policy: room a positive needs on each side of the keyword in its clip."""
    # The word's probability is also required of negative words, so a misheard keyword never
    # becomes a negative.
    min_word_probability: float = 0.3
    """Keyword policy: lowest ASR probability of a keyword occurrence (positive) or another word
    (negative) to be taken; a less sure word is only kept away from."""
    min_snr_db: float = 0.0
    """Keyword policy: lowest SNR (dB) of a positive's segment."""
    max_clipping_ratio: float = 0.01
    """Keyword policy: highest share of clipped samples in a positive's segment."""
    # Validation needs only enough for early stopping and the threshold; test is the verdict on
    # unseen speakers, so it gets more.
    val_fraction: float = 0.15
    """Share of speakers in the validation split."""
    test_fraction: float = 0.25
    """Share of speakers in the test split."""
    # Part of the dataset's identity.
    split_salt: str = "kws-split-v1"
    """Salt of the per-speaker split hash; changing it reshuffles splits."""
    # A recording's speaker: this audio_files column where it exists and is set, else the named
    # group `speaker` of this pattern matched on the file name ("" disables it), else the file.
    speaker_column: str = "speaker"
    # audio_files column with the drop's reference transcript (file_metadata): where it is the
    # keyword alone, the file is a positive even if the ASR missed the word; where it lacks the
    # keyword, the file is keyword-free whatever the ASR heard.
    reference_column: str = "reference_text"
    speaker_pattern: str = DEFAULT_SPEAKER_PATTERN
    """Regular expression with a named group (?P<speaker>...) matched on each file name, for files
    the drop metadata gives no speaker; files with the same speaker share a split. Empty: every
    such file is its own speaker."""
    min_speakers: int = 6
    """With at least this many speakers of the keyword, validation and test each receive some."""
    max_negative_words: int = 5000
    non_speech_windows_per_file: int = 8
    max_non_speech_clips: int = 5000
    # Non-speech windows keep this distance from every VAD speech segment.
    speech_margin_s: float = 0.25
    noise_clips: int = 64
    # (voice, rate_wpm, pitch) of synthetic positives; they only ever go to the train split.
    tts_variants: tuple[tuple[str, int, int], ...] = ()

    def __post_init__(self) -> None:
        _require(bool(self.keyword.strip()), "keyword must not be empty")
        _require(0.3 <= self.clip_s <= 3.0, f"clip_s must be within [0.3, 3.0] s, got {self.clip_s}")
        _require(
            0.0 <= self.min_context_s < self.clip_s / 2,
            f"min_context_s must be in [0, clip_s/2), got {self.min_context_s}",
        )
        _require(
            0.0 <= self.min_word_probability <= 1.0,
            f"min_word_probability must be in [0, 1], got {self.min_word_probability}",
        )
        _require(
            0.0 <= self.max_clipping_ratio <= 1.0,
            f"max_clipping_ratio must be in [0, 1], got {self.max_clipping_ratio}",
        )
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            _require(0.0 < value < 1.0, f"{name} must be in (0, 1), got {value}")
        _require(
            self.val_fraction + self.test_fraction < 1.0,
            "val_fraction + test_fraction must leave room for a train split (< 1)",
        )
        _require(bool(self.speaker_column), "speaker_column must name an audio_files column")
        if self.speaker_pattern:
            try:
                compiled = re.compile(self.speaker_pattern)
            except re.error as err:
                raise ValueError(f"speaker_pattern is not a regular expression: {err}") from err
            _require(
                "speaker" in compiled.groupindex,
                f"speaker_pattern needs a named group (?P<speaker>...), got {self.speaker_pattern!r}",
            )
        for name in (
            "min_speakers",
            "max_negative_words",
            "non_speech_windows_per_file",
            "max_non_speech_clips",
            "noise_clips",
        ):
            value = getattr(self, name)
            _require(isinstance(value, int) and value >= 0, f"{name} must be an integer >= 0, got {value!r}")
        _require(self.speech_margin_s >= 0.0, f"speech_margin_s must be >= 0, got {self.speech_margin_s}")
        for variant in self.tts_variants:
            _require(len(variant) == 3, f"tts_variants entries are (voice, rate_wpm, pitch), got {variant!r}")
        _require(len(set(self.tts_variants)) == len(self.tts_variants), "tts_variants must not repeat")


@dataclass(frozen=True)
class FeatureConfig:
    """Log-mel front end; stored in the model bundle so inference computes identical features."""

    n_mels: int = 40
    win_ms: float = 25.0
    hop_ms: float = 10.0
    f_min: float = 20.0
    f_max: float = 7600.0

    def __post_init__(self) -> None:
        _require(8 <= self.n_mels <= 128, f"n_mels must be within [8, 128], got {self.n_mels}")
        _require(0.0 < self.hop_ms <= self.win_ms <= 64.0, "need 0 < hop_ms <= win_ms <= 64")
        _require(
            0.0 <= self.f_min < self.f_max <= SAMPLE_RATE / 2,
            f"need 0 <= f_min < f_max <= {SAMPLE_RATE // 2} Hz, got {self.f_min}, {self.f_max}",
        )

    @property
    def win_length(self) -> int:
        return round(SAMPLE_RATE * self.win_ms / 1000)

    @property
    def hop_length(self) -> int:
        return round(SAMPLE_RATE * self.hop_ms / 1000)

    @property
    def n_fft(self) -> int:
        return 1 << (self.win_length - 1).bit_length()


@dataclass(frozen=True)
class ModelConfig:
    """TC-ResNet widths: a stem then one residual block per further entry (stride 2 each)."""

    channels: tuple[int, ...] = (16, 24, 32, 48)
    kernel_size: int = 9
    dropout: float = 0.1

    def __post_init__(self) -> None:
        _require(len(self.channels) >= 2, "channels needs a stem width and at least one block width")
        _require(all(c >= 1 for c in self.channels), f"channels must be positive, got {self.channels}")
        _require(
            self.kernel_size >= 1 and self.kernel_size % 2 == 1,
            f"kernel_size must be odd, got {self.kernel_size}",
        )
        _require(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class TrainingConfig:
    """Optimisation and train-time augmentation. One epoch is ``steps_per_epoch`` sampled batches."""

    seed: int = 0
    """Seed of sampling, augmentation and initialization."""
    epochs: int = 40
    """Upper bound on epochs (early stopping may end sooner)."""
    steps_per_epoch: int = 40
    """Balanced batches per epoch."""
    batch_size: int = 64
    """Clips per batch."""
    learning_rate: float = 3e-3  # OneCycle peak
    weight_decay: float = 1e-3
    ema_decay: float = 0.995
    patience: int = 8  # epochs without validation improvement before stopping
    min_delta: float = 1e-4
    device: str = "auto"
    """cpu, cuda or auto."""
    mixed_precision: bool = True  # autocast + GradScaler, CUDA only
    positive_fraction: float = 0.5  # expected share of positives per batch
    # The F1-maximising threshold, on a validation split with few negatives, sits low and fires often.
    target_recall: float | None = 0.95
    """Detection threshold: the highest that keeps this share of the validation keyword clips
    (unseen speakers); null: the F1-maximising threshold."""
    # On ../shared/kws (speaker-disjoint test split, 85 "stop" and 86 "yes" clips of unseen
    # speakers, 722 other clips): tiny.en's 5 likeliest texts held the keyword for 96.5 % of the
    # "stop" and 97.7 % of the "yes" clips and for none of the others; the spotter alone fired
    # 16-23 times per hour at 95 % recall, on "go", "up", "five". FSDD's 8-kHz digits are heard
    # poorly ("six": 56 %), which verifier_min_recall catches.
    verifier_model: str | None = "tiny.en"
    """Whisper model (a profile or a CTranslate2 folder) that must hear the keyword in what the
    spotter fires on before a detection counts; null: the spotter alone."""
    verifier_hypotheses: int = DEFAULT_VERIFIER_HYPOTHESES
    """The keyword must be among this many of Whisper's likeliest texts of the event."""
    verifier_min_recall: float = 0.9
    """The verifier is kept only when it confirms at least this share of the train and validation
    keyword clips (recorded clips; the training run logs the share as `verifier_recall`)."""
    noise_prob: float = 0.8
    snr_db: tuple[float, float] = (0.0, 20.0)
    gain_db: tuple[float, float] = (-12.0, 6.0)
    max_shift_s: float = 0.15
    freq_mask: int = 7  # SpecAugment widths in mel bins / frames
    time_mask: int = 12
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)

    def __post_init__(self) -> None:
        for name in ("epochs", "steps_per_epoch", "batch_size", "patience"):
            value = getattr(self, name)
            _require(
                isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                f"{name} must be an integer >= 1, got {value!r}",
            )
        _require(self.learning_rate > 0.0, f"learning_rate must be > 0, got {self.learning_rate}")
        _require(self.weight_decay >= 0.0, f"weight_decay must be >= 0, got {self.weight_decay}")
        _require(0.0 <= self.ema_decay < 1.0, f"ema_decay must be in [0, 1), got {self.ema_decay}")
        _require(self.min_delta >= 0.0, f"min_delta must be >= 0, got {self.min_delta}")
        _require(self.device in ("auto", "cpu", "cuda"), f"device must be auto, cpu or cuda, got {self.device!r}")
        _require(
            0.0 < self.positive_fraction < 1.0,
            f"positive_fraction must be in (0, 1), got {self.positive_fraction}",
        )
        _require(
            self.target_recall is None or 0.0 < self.target_recall <= 1.0,
            f"target_recall must be in (0, 1] or None, got {self.target_recall}",
        )
        _require(
            self.verifier_model is None or bool(self.verifier_model.strip()),
            "verifier_model must be a Whisper model (e.g. tiny.en) or null",
        )
        _require(
            isinstance(self.verifier_hypotheses, int) and self.verifier_hypotheses >= 1,
            f"verifier_hypotheses must be an integer >= 1, got {self.verifier_hypotheses!r}",
        )
        _require(
            0.0 <= self.verifier_min_recall <= 1.0,
            f"verifier_min_recall must be in [0, 1], got {self.verifier_min_recall}",
        )
        _require(0.0 <= self.noise_prob <= 1.0, f"noise_prob must be in [0, 1], got {self.noise_prob}")
        _check_range("snr_db", self.snr_db)
        _check_range("gain_db", self.gain_db)
        _require(0.0 <= self.max_shift_s <= 0.5, f"max_shift_s must be in [0, 0.5], got {self.max_shift_s}")
        _require(self.freq_mask >= 0 and self.time_mask >= 0, "freq_mask and time_mask must be >= 0")
        _require(
            self.freq_mask < self.features.n_mels,
            f"freq_mask ({self.freq_mask}) must be smaller than n_mels ({self.features.n_mels})",
        )


@dataclass(frozen=True)
class PromotionFloors:
    """A candidate must meet these on the test split before it may replace the champion."""

    min_f1: float = 0.5
    """Promotion floor: lowest test F1 a champion may have."""
    max_false_accepts_per_hour: float = 10.0
    """Promotion ceiling: most false accepts per hour a champion may have."""
    # F1 differences up to this much count as a tie, decided by false accepts per hour.
    f1_tolerance: float = 1e-6

    def __post_init__(self) -> None:
        _require(0.0 <= self.min_f1 <= 1.0, f"min_f1 must be in [0, 1], got {self.min_f1}")
        _require(
            self.max_false_accepts_per_hour >= 0.0,
            f"max_false_accepts_per_hour must be >= 0, got {self.max_false_accepts_per_hour}",
        )
        _require(self.f1_tolerance >= 0.0, f"f1_tolerance must be >= 0, got {self.f1_tolerance}")
