"""Log-mel features, CMVN and train-time augmentation (waveform and SpecAugment)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torchaudio
from torch import Tensor, nn

from audio_platform.audio.dsp import SAMPLE_RATE
from audio_platform.training.config import FeatureConfig, TrainingConfig

_LOG_FLOOR = 1e-6
# Silent clips still receive audible noise: their power is taken as at least -40 dBFS.
_MIN_SIGNAL_POWER = 1e-4


class LogMel(nn.Module):
    """Waveforms [B, samples] -> log-mel [B, n_mels, frames]."""

    def __init__(self, config: FeatureConfig) -> None:
        super().__init__()
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE,
            n_fft=config.n_fft,
            win_length=config.win_length,
            hop_length=config.hop_length,
            f_min=config.f_min,
            f_max=config.f_max,
            n_mels=config.n_mels,
        )

    def forward(self, waves: Tensor) -> Tensor:
        return torch.log(self.mel(waves) + _LOG_FLOOR)


def cmvn_stats(features: Iterable[Tensor]) -> tuple[Tensor, Tensor]:
    """Per-mel mean and std over all frames of all batches [B, n_mels, frames] (float64 sums)."""
    total = square = None
    count = 0
    for batch in features:
        frames = batch.detach().double().transpose(0, 1).reshape(batch.shape[1], -1)
        total = frames.sum(1) if total is None else total + frames.sum(1)
        square = frames.pow(2).sum(1) if square is None else square + frames.pow(2).sum(1)
        count += frames.shape[1]
    if total is None or square is None or count < 2:
        raise ValueError("CMVN needs at least two feature frames")
    mean = total / count
    std = (square / count - mean.pow(2)).clamp_min(1e-10).sqrt()
    return mean.float(), std.float()


class Cmvn(nn.Module):
    """Cepstral mean and variance normalisation with fixed (training-split) statistics."""

    mean: Tensor
    std: Tensor

    def __init__(self, n_mels: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_mels))
        self.register_buffer("std", torch.ones(n_mels))

    def set_stats(self, mean: Tensor, std: Tensor) -> None:
        self.mean.copy_(mean)
        self.std.copy_(std.clamp_min(1e-5))

    def forward(self, features: Tensor) -> Tensor:
        return (features - self.mean[:, None]) / self.std[:, None]


def _shifted(waves: Tensor, shifts: Tensor, circular: bool) -> Tensor:
    """Each row moved right by its shift; the vacated samples are zeros unless ``circular``."""
    n = waves.shape[1]
    index = torch.arange(n, device=waves.device)[None, :] - shifts[:, None]
    if circular:
        return waves.gather(1, index % n)
    inside = (index >= 0) & (index < n)
    return waves.gather(1, index.clamp(0, n - 1)) * inside


class Augmenter:
    """Train-time augmentation. Randomness comes from torch's global RNG, seeded by the trainer.

    ``noise_bank`` [K, samples] holds training-split non-speech and noise clips. It must never
    hold validation or test audio.
    """

    def __init__(self, config: TrainingConfig, noise_bank: Tensor) -> None:
        self.config = config
        self.noise_bank = noise_bank
        self.max_shift = round(config.max_shift_s * SAMPLE_RATE)
        self.spec_augment = nn.Sequential(
            torchaudio.transforms.FrequencyMasking(config.freq_mask, iid_masks=True),
            torchaudio.transforms.TimeMasking(config.time_mask, iid_masks=True),
        )

    def _uniform(self, bounds: tuple[float, float], size: int, device: torch.device) -> Tensor:
        return torch.empty(size, device=device).uniform_(bounds[0], bounds[1])

    def waves(self, waves: Tensor) -> Tensor:
        """Time shift, then noise at a random SNR (with probability ``noise_prob``), then gain."""
        batch, device = waves.shape[0], waves.device
        shifts = torch.randint(-self.max_shift, self.max_shift + 1, (batch,), device=device)
        waves = _shifted(waves, shifts, circular=False)
        if len(self.noise_bank) and self.config.noise_prob > 0:
            picks = torch.randint(0, len(self.noise_bank), (batch,), device=device)
            offsets = torch.randint(0, waves.shape[1], (batch,), device=device)
            noise = _shifted(self.noise_bank[picks], offsets, circular=True)
            snr_db = self._uniform(self.config.snr_db, batch, device)
            signal_power = waves.pow(2).mean(1).clamp_min(_MIN_SIGNAL_POWER)
            noise_power = noise.pow(2).mean(1).clamp_min(1e-10)
            scale = torch.sqrt(signal_power / (noise_power * 10 ** (snr_db / 10)))
            mixed = torch.rand(batch, device=device) < self.config.noise_prob
            waves = waves + noise * (scale * mixed)[:, None]
        gain = 10 ** (self._uniform(self.config.gain_db, batch, device) / 20)
        return (waves * gain[:, None]).clamp(-1.0, 1.0)

    def features(self, features: Tensor) -> Tensor:
        """SpecAugment on normalised features, so masked cells hold the mean (zero)."""
        return self.spec_augment(features.unsqueeze(1)).squeeze(1)
