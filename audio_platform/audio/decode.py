"""Decode any supported audio file to 16 kHz mono float32, streaming in bounded memory."""

from __future__ import annotations

from collections.abc import Iterator
from math import gcd
from pathlib import Path

import numpy as np
from scipy.signal import firwin, resample_poly

from audio_platform.audio.dsp import SAMPLE_RATE
from audio_platform.audio.probe import UnsupportedAudioError, open_audio, unsupported_on_failure


def stream_mono_16k(
    path: Path, block_seconds: float = 60.0, max_duration_s: float | None = None
) -> Iterator[np.ndarray]:
    """Yield consecutive float32 blocks of 16 kHz mono audio (channels averaged).

    Holds at most about one block of the native-rate signal at a time. Raises
    UnsupportedAudioError for unusable input, including input longer than
    ``max_duration_s``; ValueError for a non-positive ``block_seconds`` or ``max_duration_s``.
    """
    if block_seconds <= 0:
        raise ValueError(f"block_seconds must be positive, got {block_seconds}")
    if max_duration_s is not None and max_duration_s <= 0:
        raise ValueError(f"max_duration_s must be positive, got {max_duration_s}")
    with unsupported_on_failure(), open_audio(Path(path)) as reader:
        max_frames = np.inf if max_duration_s is None else max_duration_s * reader.sample_rate
        # Reject from the header when it states the length; MP3 is caught while decoding.
        if (reader.header_frames or 0) > max_frames:
            raise _too_long(max_duration_s)
        resampler = _StreamingResampler(reader.sample_rate, block_seconds)
        total = 0
        for chunk in reader.chunks():
            if not np.isfinite(chunk).all():
                raise UnsupportedAudioError("contains NaN/Inf samples")
            total += len(chunk)
            if total > max_frames:
                raise _too_long(max_duration_s)
            mono = chunk[:, 0] if chunk.shape[1] == 1 else chunk.mean(axis=1, dtype=np.float32)
            yield from resampler.push(mono)
        if total == 0:
            raise UnsupportedAudioError("no audio samples")
        yield from resampler.flush()


def decode_mono_16k(path: Path, max_duration_s: float | None = None) -> np.ndarray:
    """The whole file as one 16 kHz mono float32 array (see stream_mono_16k)."""
    blocks = list(stream_mono_16k(path, max_duration_s=max_duration_s))
    return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)


def _too_long(max_duration_s: float | None) -> UnsupportedAudioError:
    return UnsupportedAudioError(f"longer than the configured maximum of {max_duration_s:g} s")


class _StreamingResampler:
    """Block-wise resampling that matches one resample_poly call over the whole signal.

    resample_poly is a polyphase FIR filter, so each output sample depends only on input
    within the filter's reach. Every block is filtered together with ``context`` real
    input samples on each side and only the block's own outputs are kept; at the very
    start and end the missing context is the zero padding resample_poly uses anyway, so
    block boundaries leave no seams. Blocks and context are whole multiples of ``down``,
    so each block starts exactly on an output sample.
    """

    def __init__(self, rate_in: int, block_seconds: float) -> None:
        g = gcd(rate_in, SAMPLE_RATE)
        self._up, self._down = SAMPLE_RATE // g, rate_in // g
        self._block = max(1, round(block_seconds * rate_in / self._down)) * self._down
        if self._up == self._down:
            self._context = 0
        else:
            # scipy's default design (Kaiser, beta 5, 10 zero crossings per side), made
            # once here instead of on every call.
            half_len = 10 * max(self._up, self._down)
            self._filter = firwin(
                2 * half_len + 1, 1.0 / max(self._up, self._down), window=("kaiser", 5.0)
            ).astype(np.float32)
            reach = half_len // self._up + 2
            self._context = -(-reach // self._down) * self._down
        self._history = np.zeros(0, dtype=np.float32)
        self._pending: list[np.ndarray] = []
        self._pending_len = 0

    def push(self, samples: np.ndarray) -> Iterator[np.ndarray]:
        self._pending.append(samples)
        self._pending_len += len(samples)
        while self._pending_len >= self._block + self._context:
            yield self._emit(self._block, final=False)

    def flush(self) -> Iterator[np.ndarray]:
        if self._pending_len:
            yield self._emit(self._pending_len, final=True)

    def _emit(self, n: int, final: bool) -> np.ndarray:
        pending = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        self._pending = [pending[n:].copy()]
        self._pending_len = len(pending) - n
        if self._up == self._down:
            return np.array(pending[:n], dtype=np.float32)
        lookahead = 0 if final else self._context
        extended = np.concatenate((self._history, pending[: n + lookahead]))
        out = resample_poly(extended, self._up, self._down, window=self._filter)
        start = len(self._history) * self._up // self._down
        stop = None if final else start + n * self._up // self._down
        self._history = extended[: len(self._history) + n][-self._context :].copy()
        return np.asarray(out[start:stop], dtype=np.float32)
