from __future__ import annotations

import numpy as np
import pytest
import torch

from audio_platform.training.config import FeatureConfig, TrainingConfig
from audio_platform.training.dataset import KeywordDataset
from audio_platform.training.features import Augmenter, Cmvn, LogMel, _shifted, cmvn_stats


def test_log_mel_shape() -> None:
    features = LogMel(FeatureConfig())(torch.zeros(2, 16000))
    assert features.shape == (2, 40, 101)  # 25 ms windows every 10 ms over 1 s


def test_cmvn_normalises_training_features(tone_dataset: KeywordDataset) -> None:
    logmel = LogMel(FeatureConfig())
    waves = torch.from_numpy(tone_dataset.waves[tone_dataset.mask("train")])
    mean, std = cmvn_stats(logmel(batch) for batch in waves.split(7))  # uneven batches on purpose
    cmvn = Cmvn(40)
    cmvn.set_stats(mean, std)
    normalised = cmvn(logmel(waves)).transpose(0, 1).reshape(40, -1).double()
    assert normalised.mean(1).abs().max() < 1e-4
    assert (normalised.std(1, correction=0) - 1).abs().max() < 1e-3


def test_cmvn_needs_frames() -> None:
    with pytest.raises(ValueError, match="at least two"):
        cmvn_stats([])


def test_shift_fills_with_zeros_or_wraps() -> None:
    waves = torch.arange(1.0, 6.0).repeat(2, 1)
    shifts = torch.tensor([2, -1])
    assert _shifted(waves, shifts, circular=False).tolist() == [[0, 0, 1, 2, 3], [2, 3, 4, 5, 0]]
    assert _shifted(waves, shifts, circular=True).tolist() == [[4, 5, 1, 2, 3], [2, 3, 4, 5, 1]]


def test_noise_is_mixed_at_the_requested_snr() -> None:
    config = TrainingConfig(noise_prob=1.0, snr_db=(10.0, 10.0), gain_db=(0.0, 0.0), max_shift_s=0.0)
    torch.manual_seed(0)
    signal = 0.1 * torch.sin(torch.arange(16000) / 5.0).repeat(4, 1)
    bank = torch.randn(3, 16000)
    mixed = Augmenter(config, bank).waves(signal)
    added = mixed - signal
    snr = 10 * torch.log10(signal.pow(2).mean(1) / added.pow(2).mean(1))
    np.testing.assert_allclose(snr.numpy(), 10.0, atol=1e-3)


def test_spec_augment_masks_each_example_independently() -> None:
    torch.manual_seed(0)
    augmenter = Augmenter(TrainingConfig(freq_mask=10, time_mask=20), torch.zeros(0, 16000))
    features = torch.ones(8, 40, 101)
    masked = augmenter.features(features)
    assert masked.shape == features.shape
    zero_bins = (masked == 0).all(dim=2).sum(dim=1)  # fully masked mel bins per example
    assert len(set(zero_bins.tolist())) > 1
