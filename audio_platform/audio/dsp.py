"""Signal helpers shared by decoding, features, the demo drop and keyword training."""

from __future__ import annotations

from math import gcd

import numpy as np
from scipy.signal import resample_poly

# Every stage works on 16 kHz mono float32: what Silero VAD and Whisper take.
SAMPLE_RATE = 16_000


def resample(samples: np.ndarray, source_rate: int, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """``samples`` (along the first axis) from ``source_rate`` to ``target_rate`` Hz, as float32,
    with one polyphase filter over the whole signal (for streams, see ``decode``'s block resampler)."""
    if source_rate == target_rate:
        return np.asarray(samples, dtype=np.float32)
    divisor = gcd(source_rate, target_rate)
    return np.asarray(resample_poly(samples, target_rate // divisor, source_rate // divisor), dtype=np.float32)


def colored_noise(rng: np.random.Generator, n_samples: int, exponent: float) -> np.ndarray:
    """Zero-mean noise of unit RMS whose power falls as 1/f**``exponent`` (0 white, 1 pink, 2 brown)."""
    spectrum = np.fft.rfft(rng.standard_normal(n_samples))
    frequencies = np.arange(spectrum.size, dtype=np.float64)
    frequencies[0] = 1.0  # keep DC finite; its weight is irrelevant after mean removal
    noise = np.fft.irfft(spectrum / frequencies ** (exponent / 2), n_samples)
    noise -= noise.mean()
    return noise / (float(np.sqrt(np.mean(noise**2))) + 1e-12)


def dbfs_gain(dbfs: float) -> float:
    """The amplitude factor of a level in dB relative to full scale."""
    return float(10 ** (dbfs / 20))
