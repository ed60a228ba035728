"""Per-segment quality criteria for curation.

Two kinds of criteria feed the TOPSIS score (see ``topsis.py``):

* acoustic features, computed by the VAD stage while the audio is still in
  memory (:func:`acoustic_features`) and stored as columns of the segments
  table, and
* derived criteria computed from table columns only (:func:`add_text_criteria`),
  so re-scoring never needs to decode audio or re-run ASR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

from audio_platform.audio.dsp import SAMPLE_RATE

# SNR estimator framing: the usual 25 ms / 10 ms speech analysis frames.
FRAME_LENGTH = 400
FRAME_HOP = 160
# Frames at or below this percentile of frame power are taken as noise-only.
# Speech segments cut by a VAD keep short pauses (between words, plus the
# VAD's edge padding), so the quietest 10% of frames are noise in practice.
NOISE_PERCENTILE = 10.0
SNR_MIN_DB = -10.0
SNR_MAX_DB = 100.0

CLIP_LEVEL = 0.99
LOUDNESS_FLOOR_DBFS = -120.0
# Power below the loudness floor counts as digital silence.
_SILENCE_POWER = 10.0 ** (LOUDNESS_FLOOR_DBFS / 10.0)
# Keeps log10 finite when the noise floor is exactly zero (digitally silent
# pauses); the result is then clamped to SNR_MAX_DB anyway.
_TINY_POWER = 1e-20

# Natural read-speech rate in words per second (about 160 wpm; LibriSpeech
# averages roughly 2.7 w/s).
NATURAL_SPEAKING_RATE = 2.7
# Target RMS level of well-recorded speech (the EBU R128 -23 LUFS
# programme level, used here as a plain RMS dBFS target).
LOUDNESS_TARGET_DBFS = -23.0
# Segment lengths that suit ASR/TTS training: shorter clips carry little
# context, and 30 s is Whisper's window and a common trainer maximum.
IDEAL_DURATION_MIN_S = 2.0
IDEAL_DURATION_MAX_S = 15.0
MAX_USEFUL_DURATION_S = 30.0


@dataclass(frozen=True)
class AcousticFeatures:
    """Acoustic quality features of one segment (see :func:`acoustic_features`)."""

    snr_db: float
    clipping_ratio: float
    loudness_dbfs: float
    dc_offset: float


def acoustic_features(audio_16k: np.ndarray, start_s: float, end_s: float) -> AcousticFeatures:
    """Measure the segment ``[start_s, end_s)`` of 16 kHz mono audio.

    * ``clipping_ratio``: fraction of raw samples with ``|x| >= 0.99``.
    * ``dc_offset``: mean of the raw samples.
    * ``loudness_dbfs``: RMS level in dBFS after removing the DC offset (DC is
      inaudible and reported separately); a full-scale square wave reads
      0 dBFS and a full-scale sine -3.01 dBFS. Floor: -120 dBFS.
    * ``snr_db``: see :func:`estimate_snr_db`.
    """
    audio = np.asarray(audio_16k)
    if audio.ndim != 1:
        raise ValueError(f"audio must be 1-D mono, got shape {audio.shape}")
    if not (math.isfinite(start_s) and math.isfinite(end_s)) or start_s < 0 or end_s <= start_s:
        raise ValueError(f"invalid segment bounds: start_s={start_s}, end_s={end_s}")
    first = round(start_s * SAMPLE_RATE)
    last = min(round(end_s * SAMPLE_RATE), audio.size)
    if last <= first:
        raise ValueError(
            f"segment [{start_s}, {end_s}) s lies outside the audio ({audio.size / SAMPLE_RATE:.3f} s)"
        )
    raw = audio[first:last].astype(np.float64)
    dc_offset = float(raw.mean())
    centred = raw - dc_offset
    power = float(np.mean(centred**2))
    loudness = 10.0 * math.log10(power) if power > _SILENCE_POWER else LOUDNESS_FLOOR_DBFS
    return AcousticFeatures(
        snr_db=estimate_snr_db(centred),
        clipping_ratio=float(np.mean(np.abs(raw) >= CLIP_LEVEL)),
        loudness_dbfs=loudness,
        dc_offset=dc_offset,
    )


def estimate_snr_db(samples: npt.NDArray[np.float64]) -> float:
    """Blind SNR estimate from the distribution of frame energies.

    The noise power is the 10th percentile of the 25 ms frame powers (the
    quietest frames are pauses, holding noise only); the signal power is the
    mean power minus that noise power: ``SNR = 10 log10((P - N) / N)``. This
    is the global (whole-segment) SNR, matching ``10 log10(sum s^2 / sum n^2)``
    for additive stationary noise.

    Chosen over WADA-SNR because it makes no assumption about the clean
    signal's amplitude distribution; its known bias is towards *lower* SNR
    when a segment has no pauses at all (the quietest frames then contain
    speech), which errs on the safe side for curation.

    The result is clamped to [-10, 100] dB. Digital silence returns -10 dB
    (no usable signal); a segment shorter than one frame has a single frame
    power, so noise cannot be separated and it also lands on -10 dB.
    """
    total = float(np.mean(samples**2)) if samples.size else 0.0
    if total <= _SILENCE_POWER:
        return SNR_MIN_DB
    if samples.size >= FRAME_LENGTH:
        frames = np.lib.stride_tricks.sliding_window_view(samples, FRAME_LENGTH)[::FRAME_HOP]
    else:
        frames = samples[np.newaxis, :]
    noise = float(np.percentile(np.mean(frames**2, axis=1), NOISE_PERCENTILE))
    signal = total - noise
    snr = 10.0 * math.log10(max(signal, _TINY_POWER) / max(noise, _TINY_POWER))
    return min(max(snr, SNR_MIN_DB), SNR_MAX_DB)


def add_text_criteria(frame: pl.DataFrame) -> pl.DataFrame:
    """Add the table-only derived criteria used by scoring.

    Needs ``duration_s``, ``text`` and ``loudness_dbfs``; adds:

    * ``speaking_rate``: whitespace-separated words per second of segment.
    * ``chars_per_s``: non-whitespace characters per second (the meaningful
      rate for languages written without spaces).
    * ``speaking_rate_deviation``: ``|log2(speaking_rate / 2.7)|``, i.e. how
      many doublings/halvings away from a natural rate; symmetric in ratio
      because both a too-fast (hallucinated extra words) and a too-slow
      (dropped words) transcript signal an audio/text mismatch. Empty text
      gives ``inf``.
    * ``loudness_deviation_db``: ``|loudness_dbfs - (-23)|``.
    * ``duration_fitness``: 1.0 for 2-15 s, linear down to 0 at 0 s and at
      30 s. It depends on duration only; empty transcripts are already
      penalized by ``speaking_rate_deviation`` and rejected by the policy.

    Rates and duration fitness are null when ``duration_s`` is null or not
    positive (scoring then treats them as the anti-ideal).
    """
    missing = {"duration_s", "text", "loudness_dbfs"} - set(frame.columns)
    if missing:
        raise ValueError(f"add_text_criteria: missing columns {sorted(missing)}")
    duration = pl.col("duration_s").cast(pl.Float64)
    valid_duration = duration.is_not_null() & (duration > 0)
    text = pl.col("text").cast(pl.String).fill_null("")
    words = text.str.count_matches(r"\S+").cast(pl.Float64)
    chars = text.str.replace_all(r"\s+", "").str.len_chars().cast(pl.Float64)
    return frame.with_columns(
        speaking_rate=pl.when(valid_duration).then(words / duration),
        chars_per_s=pl.when(valid_duration).then(chars / duration),
        duration_fitness=pl.when(valid_duration).then(
            pl.min_horizontal(
                pl.lit(1.0),
                duration / IDEAL_DURATION_MIN_S,
                (MAX_USEFUL_DURATION_S - duration) / (MAX_USEFUL_DURATION_S - IDEAL_DURATION_MAX_S),
            ).clip(0.0, 1.0)
        ),
        loudness_deviation_db=(pl.col("loudness_dbfs").cast(pl.Float64) - LOUDNESS_TARGET_DBFS).abs(),
    ).with_columns(
        speaking_rate_deviation=(pl.col("speaking_rate") / NATURAL_SPEAKING_RATE).log(2).abs(),
    )
