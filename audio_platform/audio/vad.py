"""Silero voice activity detection: frame probabilities and ASR-sized speech segments.

The model weights ship inside the installed ``silero_vad`` package. Two backends are
supported and give the same probabilities (to ~1e-6):

* ONNX (default): Silero's *sequence* export, which runs a whole block of frames per
  ``session.run`` call while carrying the LSTM state between blocks. It is bit-exact with
  the stock per-frame streaming ONNX model but about 3x faster, because the per-frame
  Python loop disappears.
* TorchScript (JIT): the model's own ``audio_forward`` loop.

Turning probabilities into segments is a pure function (:func:`segments_from_probabilities`)
so it can be unit-tested and re-run with new settings without touching the model.
"""

from __future__ import annotations

import functools
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from audio_platform.audio.dsp import SAMPLE_RATE
from audio_platform.audio.onnx_models import cpu_session, package_file
from audio_platform.audio.pcm_cache import release_pages

if TYPE_CHECKING:
    import torch

FRAME_SAMPLES = 512
FRAME_S = FRAME_SAMPLES / SAMPLE_RATE  # 32 ms
# Each Silero frame also sees the last 64 samples of the previous frame.
_CONTEXT_SAMPLES = 64
_STATE_SHAPE = (1, 1, 128)
# Frames per ONNX call: bounds memory on long files; larger blocks gave no measurable gain.
_BLOCK_FRAMES = 512
_FINITE_CHECK_SAMPLES = 1 << 20
_MIN_MAX_SEGMENT_S = 1.0


@dataclass(frozen=True)
class SpeechSegment:
    """A speech span in seconds from the start of the file."""

    start_s: float
    end_s: float
    speech_prob: float  # mean Silero frame probability inside the span

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class VadConfig:
    """Segmentation settings. Durations are in seconds."""

    threshold: float = 0.5
    """Speech probability that starts a speech span."""
    neg_threshold: float | None = None
    """Speech probability below which a span ends; null: max(threshold - 0.15, 0.01), as Silero does."""
    # Measured on 300 real one-word clips (Speech Commands, FSDD): 0.25 s found no speech in 42,
    # 0.1 s in 15, with the same frame F1 on the labelled set and no new span on non-speech.
    min_speech_s: float = 0.1
    """Shorter speech spans are dropped (0.1 s keeps a clipped one-syllable word such as 'six')."""
    min_silence_s: float = 0.1
    """Silence that ends a speech span."""
    speech_pad_s: float = 0.03
    """Padding added to both ends of each span."""
    merge_gap_s: float = 0.3
    """Neighbouring spans closer than this are merged (segments sized for ASR)."""
    max_segment_s: float = 30.0
    """Longer spans are split at their lowest-probability frame (30 s = Whisper's window)."""
    use_onnx: bool = True
    """Run the ONNX model (else the TorchScript one)."""
    num_threads: int = 1
    """CPU threads of the VAD model."""
    # About 1,700-2,600 CPU-s per hour of speech on the shared corpus (2.6-4x the ASR's): a
    # window of 9 s per 1-s hop, short segments tiled to a full window, as the reference does.
    dnsmos: bool = False
    """Also score each segment's DNSMOS P.835 (SIG, BAK, OVRL: `segments.dnsmos_*`), which costs
    more CPU than the ASR; to rank or gate on it, give the `dnsmos_ovrl` criterion a weight and/or
    set the curation floor `min_dnsmos_ovrl`. Off: the columns are null."""

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")
        if self.neg_threshold is not None and not 0.0 <= self.neg_threshold <= self.threshold:
            raise ValueError(f"neg_threshold must be in [0, threshold={self.threshold}], got {self.neg_threshold}")
        for name in ("min_speech_s", "min_silence_s", "speech_pad_s", "merge_gap_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if not (math.isfinite(self.max_segment_s) and self.max_segment_s >= _MIN_MAX_SEGMENT_S):
            raise ValueError(f"max_segment_s must be a finite number >= {_MIN_MAX_SEGMENT_S}, got {self.max_segment_s}")
        if self.num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {self.num_threads}")

    @property
    def effective_neg_threshold(self) -> float:
        if self.neg_threshold is not None:
            return self.neg_threshold
        return max(self.threshold - 0.15, 0.01)


def _silero_data_file(name: str) -> Path:
    return package_file("silero_vad", "data", name, install_hint="pip install silero-vad")


@functools.cache
def _jit_model() -> torch.jit.ScriptModule:
    import torch

    model = torch.jit.load(str(_silero_data_file("silero_vad.jit")), map_location="cpu")
    model.eval()
    return model


# The TorchScript module keeps its LSTM state as attributes, so the cached, shared
# module must not run two files at once.
_JIT_LOCK = threading.Lock()


def _validate_audio(audio_16k: np.ndarray) -> np.ndarray:
    if not isinstance(audio_16k, np.ndarray):
        raise ValueError(f"audio must be a numpy array, got {type(audio_16k).__name__}")
    if audio_16k.ndim != 1:
        raise ValueError(f"audio must be mono (1-D), got shape {audio_16k.shape}")
    if audio_16k.dtype not in (np.float32, np.float64):
        # Integer PCM would reach the model unscaled; the decoder must convert to [-1, 1].
        raise ValueError(f"audio must be float32/float64 in [-1, 1], got dtype {audio_16k.dtype}")
    audio = np.ascontiguousarray(audio_16k, dtype=np.float32)
    # Checked in pieces: a full-length boolean mask of a two-hour file would cost 115 MB.
    for start in range(0, audio.size, _FINITE_CHECK_SAMPLES):
        if not np.isfinite(audio[start : start + _FINITE_CHECK_SAMPLES]).all():
            # NaN/inf would poison the LSTM state for the rest of the file.
            raise ValueError("audio contains NaN or infinite samples")
        release_pages(audio, start, start + _FINITE_CHECK_SAMPLES)
    return audio


def _with_context_and_padding(audio: np.ndarray) -> np.ndarray:
    """``_CONTEXT_SAMPLES`` zeros, the audio, then zeros up to a whole number of frames.

    The leading zeros are the context the streaming model sees before its first frame;
    the trailing ones pad the last frame, as Silero does.
    """
    n_frames = -(-audio.size // FRAME_SAMPLES)
    buffer = np.zeros(_CONTEXT_SAMPLES + n_frames * FRAME_SAMPLES, dtype=np.float32)
    buffer[_CONTEXT_SAMPLES : _CONTEXT_SAMPLES + audio.size] = audio
    return buffer


class SileroVad:
    """Silero VAD over whole 16 kHz mono files.

    Construction is cheap after the first instance in a process: the model is cached.
    Every call starts from a fresh LSTM state, so results never depend on earlier files.
    """

    def __init__(self, config: VadConfig = VadConfig()) -> None:
        self.config = config
        if config.use_onnx:
            # Stateless (the LSTM state is an input/output): one session shared by all instances.
            self._session = cpu_session(_silero_data_file("silero_vad_16k_sequence.onnx"), config.num_threads)
        else:
            import torch

            # torch's intra-op pool is process-wide; there is no per-model setting.
            torch.set_num_threads(config.num_threads)
            self._jit = _jit_model()

    def frame_probabilities(self, audio_16k: np.ndarray) -> np.ndarray:
        """Speech probability per 512-sample (32 ms) frame; the last frame is zero-padded.

        Returns ``ceil(len(audio) / 512)`` float32 values in [0, 1].
        """
        audio = _validate_audio(audio_16k)
        if audio.size == 0:
            return np.zeros(0, dtype=np.float32)
        if self.config.use_onnx:
            return self._onnx_probabilities(audio)
        return self._jit_probabilities(_with_context_and_padding(audio)[_CONTEXT_SAMPLES:])

    def detect(self, audio_16k: np.ndarray) -> list[SpeechSegment]:
        """Speech segments of a 16 kHz mono float signal (resampling is the decoder's job)."""
        probs = self.frame_probabilities(audio_16k)
        return segments_from_probabilities(probs, audio_16k.size / SAMPLE_RATE, self.config)

    def _onnx_probabilities(self, audio: np.ndarray) -> np.ndarray:
        # Block by block, carrying the LSTM state, so memory stays flat however long the file
        # (the audio is usually a memory-mapped cache file). Row i of a block holds the 64
        # samples before frame i followed by frame i, exactly what the streaming model builds.
        hidden = np.zeros(_STATE_SHAPE, dtype=np.float32)
        cell = np.zeros(_STATE_SHAPE, dtype=np.float32)
        blocks = []
        block_samples = _BLOCK_FRAMES * FRAME_SAMPLES
        for start in range(0, audio.size, block_samples):
            block = _with_context_and_padding(audio[start : start + block_samples])
            if start > 0:
                block[:_CONTEXT_SAMPLES] = audio[start - _CONTEXT_SAMPLES : start]
            windows = np.ascontiguousarray(
                sliding_window_view(block, _CONTEXT_SAMPLES + FRAME_SAMPLES)[::FRAME_SAMPLES]
            )
            probs, hidden, cell = self._session.run(
                ["speech_probs", "hn", "cn"], {"input": windows, "h": hidden, "c": cell}
            )
            blocks.append(probs)
            release_pages(audio, start - _CONTEXT_SAMPLES, start + block_samples - _CONTEXT_SAMPLES)
        return np.concatenate(blocks).astype(np.float32, copy=False).reshape(-1)

    def _jit_probabilities(self, padded: np.ndarray) -> np.ndarray:
        import torch

        with _JIT_LOCK, torch.inference_mode():
            # audio_forward resets the model state before looping over the frames.
            out = self._jit.audio_forward(torch.from_numpy(padded).unsqueeze(0), SAMPLE_RATE)
        return out.numpy().astype(np.float32, copy=False).reshape(-1)


def segments_from_probabilities(probs: np.ndarray, duration_s: float, config: VadConfig) -> list[SpeechSegment]:
    """Turn per-frame probabilities into sorted, non-overlapping speech segments.

    Steps: hysteresis (start at ``p >= threshold``; end once ``p < neg_threshold`` has
    held for ``min_silence_s`` with no frame back above ``threshold``), drop spans shorter
    than ``min_speech_s``, pad by ``speech_pad_s``, clip to ``[0, duration_s]``, merge
    neighbours closer than ``merge_gap_s``, then split spans longer than ``max_segment_s``
    at low-probability frames. Frame ``i`` covers ``[i, i + 1) * FRAME_S`` seconds.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 1:
        raise ValueError(f"probs must be 1-D, got shape {probs.shape}")
    if probs.size and not ((probs >= 0.0) & (probs <= 1.0)).all():
        raise ValueError("probs must lie in [0, 1]")
    if not (math.isfinite(duration_s) and duration_s >= 0.0):
        raise ValueError(f"duration_s must be a finite number >= 0, got {duration_s}")
    # Rounding absorbs float error in duration_s = n_samples / SAMPLE_RATE.
    expected_frames = math.ceil(round(duration_s / FRAME_S, 6))
    if probs.size != expected_frames:
        raise ValueError(
            f"duration_s={duration_s} needs {expected_frames} frames of {FRAME_S} s, got {probs.size} probabilities"
        )

    raw = _hysteresis(probs.tolist(), config)
    spans = [
        (max(0.0, start - config.speech_pad_s), min(duration_s, end + config.speech_pad_s))
        for start, end in raw
        if end - start >= config.min_speech_s
    ]
    spans = _merge(spans, config.merge_gap_s)
    spans = [piece for span in spans for piece in _split(span, probs, config.max_segment_s)]
    return [SpeechSegment(start, end, _mean_prob(probs, start, end)) for start, end in spans]


def _hysteresis(probs: list[float], config: VadConfig) -> list[tuple[float, float]]:
    threshold = config.threshold
    neg_threshold = config.effective_neg_threshold
    spans: list[tuple[float, float]] = []
    start: int | None = None
    silence_start: int | None = None
    for i, p in enumerate(probs):
        if start is None:
            if p >= threshold:
                start, silence_start = i, None
            continue
        if p >= threshold:
            silence_start = None
        elif p < neg_threshold:
            if silence_start is None:
                silence_start = i
            if (i + 1 - silence_start) * FRAME_S >= config.min_silence_s:
                spans.append((start * FRAME_S, silence_start * FRAME_S))
                start = silence_start = None
    if start is not None:
        spans.append((start * FRAME_S, len(probs) * FRAME_S))
    return spans


def _merge(spans: list[tuple[float, float]], max_gap_s: float) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for start, end in spans:
        if merged and start - merged[-1][1] < max_gap_s:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _split(span: tuple[float, float], probs: np.ndarray, max_segment_s: float) -> list[tuple[float, float]]:
    """Cut a span into pieces <= max_segment_s at its lowest-probability frame centres.

    Each cut is the least speech-like frame inside the window that (a) keeps the left
    piece <= max_segment_s, (b) leaves few enough seconds on the right for the remaining
    pieces, and (c) keeps both sides >= max_segment_s / 4, so the faded, low-probability
    edges of a span are never chosen. One frame of slack in the piece count keeps the
    window at least a frame wide, so a frame centre always exists inside it.
    """
    pieces: list[tuple[float, float]] = []
    start, end = span
    margin = max_segment_s / 4
    while end - start > max_segment_s:
        length = end - start
        n_pieces = math.ceil((length + FRAME_S) / max_segment_s)
        lo = start + max(length - (n_pieces - 1) * max_segment_s, margin)
        hi = start + min(max_segment_s, length - margin)
        # Frames whose centre (i + 0.5) * FRAME_S lies in [lo, hi].
        first = math.ceil(lo / FRAME_S - 0.5)
        last = min(math.floor(hi / FRAME_S - 0.5), probs.size - 1)
        best = first + int(np.argmin(probs[first : last + 1]))
        cut = (best + 0.5) * FRAME_S
        pieces.append((start, cut))
        start = cut
    pieces.append((start, end))
    return pieces


def _mean_prob(probs: np.ndarray, start_s: float, end_s: float) -> float:
    # Frames whose centre lies inside the span; at least the frame holding its midpoint.
    first = math.ceil(start_s / FRAME_S - 0.5)
    stop = math.ceil(end_s / FRAME_S - 0.5)
    if stop <= first:
        first = min(int((start_s + end_s) / 2 / FRAME_S), probs.size - 1)
        stop = first + 1
    # A plain mean (not prefix-sum differences) cannot round outside [0, 1].
    return float(np.mean(probs[first:stop]))
