"""Fixtures: single-threaded torch (shared CI machines) and the synthetic tone dataset."""

from __future__ import annotations

from collections.abc import Iterator

import polars as pl
import pytest
import torch

from audio_platform.training.dataset import KeywordDataset, load_keyword_dataset
from audio_platform_tests.training.helpers import make_tone_manifest


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tone_manifest(tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    return make_tone_manifest(tmp_path_factory.mktemp("tone"))


@pytest.fixture(scope="session")
def tone_dataset(tone_manifest: pl.DataFrame) -> KeywordDataset:
    return load_keyword_dataset(tone_manifest)
