from __future__ import annotations

from typing import Any

import pytest

from audio_platform.training.config import (
    DatasetConfig,
    FeatureConfig,
    ModelConfig,
    PromotionFloors,
    TrainingConfig,
)


def test_defaults_are_valid() -> None:
    TrainingConfig()
    DatasetConfig(keyword="six")
    PromotionFloors()
    assert FeatureConfig().n_fft == 512 and FeatureConfig().hop_length == 160


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs": 0}, "epochs must be an integer >= 1"),
        ({"batch_size": 2.5}, "batch_size must be an integer >= 1"),
        ({"learning_rate": 0.0}, "learning_rate must be > 0"),
        ({"ema_decay": 1.0}, r"ema_decay must be in \[0, 1\)"),
        ({"device": "tpu"}, "device must be auto, cpu or cuda"),
        ({"positive_fraction": 1.0}, r"positive_fraction must be in \(0, 1\)"),
        ({"snr_db": (20.0, 0.0)}, "snr_db must be a .* pair with low <= high"),
        ({"max_shift_s": 0.8}, "max_shift_s"),
        ({"freq_mask": 40}, "freq_mask .* must be smaller than n_mels"),
        ({"features": FeatureConfig(n_mels=20), "freq_mask": 25}, "smaller than n_mels"),
    ],
)
def test_training_config_rejects_bad_values(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainingConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"keyword": "  "}, "keyword must not be empty"),
        ({"keyword": "six", "clip_s": 0.1}, "clip_s must be within"),
        ({"keyword": "six", "val_fraction": 0.5, "test_fraction": 0.5}, "must leave room for a train split"),
        ({"keyword": "six", "test_fraction": 0.0}, r"test_fraction must be in \(0, 1\)"),
        ({"keyword": "six", "noise_clips": -1}, "noise_clips must be an integer >= 0"),
        ({"keyword": "six", "tts_variants": (("en-us", 160),)}, "tts_variants entries"),
    ],
)
def test_dataset_config_rejects_bad_values(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DatasetConfig(**kwargs)


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: FeatureConfig(hop_ms=30.0), "hop_ms <= win_ms"),
        (lambda: FeatureConfig(f_max=9000.0), "f_max"),
        (lambda: ModelConfig(kernel_size=4), "kernel_size must be odd"),
        (lambda: ModelConfig(channels=(16,)), "at least one block"),
        (lambda: PromotionFloors(min_f1=1.5), r"min_f1 must be in \[0, 1\]"),
        (lambda: PromotionFloors(max_false_accepts_per_hour=-1.0), "max_false_accepts_per_hour"),
    ],
)
def test_other_configs_reject_bad_values(factory: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        factory()
