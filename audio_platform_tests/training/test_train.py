from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from audio_platform.training.dataset import KeywordDataset
from audio_platform.training.evaluate import evaluate_bundle
from audio_platform.training.model import KeywordSpotter, count_parameters
from audio_platform.training.train import Ema, train_keyword_model
from audio_platform_tests.training.helpers import FAST


def test_ema_update_math() -> None:
    live = nn.BatchNorm1d(2)
    shadow = copy.deepcopy(live)
    with torch.no_grad():
        live.weight.fill_(1.0)
        shadow.weight.fill_(0.0)
        live.state_dict()["num_batches_tracked"].fill_(7)
    ema = Ema(live, shadow, decay=0.9)

    ema.update()  # warm-up decay min(0.9, 1/10) = 0.1
    assert shadow.weight.tolist() == pytest.approx([0.9, 0.9])
    assert int(shadow.state_dict()["num_batches_tracked"]) == 7  # integer buffers are copied
    ema.update()  # decay 2/11
    expected = 2 / 11 * 0.9 + 9 / 11 * 1.0
    assert shadow.weight.tolist() == pytest.approx([expected, expected])
    assert ema.decay_at(1000) == 0.9


def test_model_is_small() -> None:
    assert count_parameters(KeywordSpotter(FAST.features, FAST.model)) < 100_000


def test_training_is_reproducible_and_leaves_global_rng_alone(tone_dataset: KeywordDataset) -> None:
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    first = train_keyword_model(tone_dataset, FAST)
    assert torch.rand(1) == before  # training used a forked RNG
    second = train_keyword_model(tone_dataset, FAST)
    assert first.history == second.history
    assert first.bundle.threshold == second.bundle.threshold
    for name, tensor in first.bundle.state_dict.items():
        assert torch.equal(tensor, second.bundle.state_dict[name]), name
    other = train_keyword_model(tone_dataset, replace(FAST, seed=1))
    assert other.history != first.history


def test_training_learns_the_tone(tone_dataset: KeywordDataset) -> None:
    result = train_keyword_model(tone_dataset, replace(FAST, epochs=6, steps_per_epoch=10))
    assert len(result.history) >= 1 and 1 <= result.best_epoch <= len(result.history)
    metrics = evaluate_bundle(result.bundle, tone_dataset)
    assert metrics.f1 >= 0.9
    assert metrics.positives == 8 and metrics.negatives == 24
    assert metrics.stream_hours == pytest.approx(5 / 3600)
    assert metrics.false_accepts_per_hour == metrics.false_accepts / metrics.stream_hours
    assert metrics.test_digest == tone_dataset.test_digest


def test_training_needs_positives_in_validation(tone_dataset: KeywordDataset) -> None:
    labels = np.where(tone_dataset.splits == "validation", 0.0, tone_dataset.labels).astype(np.float32)
    no_val_positives = replace(tone_dataset, labels=labels)
    with pytest.raises(ValueError, match="validation split needs positive and negative clips"):
        train_keyword_model(no_val_positives, FAST)
