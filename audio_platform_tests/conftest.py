"""Shared fixtures: the real corpus (../shared/corpus) and a fresh platform home per test."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from audio_platform.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[1]
CORPUS = REPO_ROOT.parent / "shared" / "corpus"

# Tests share a 2-core machine: keep torch from spawning a thread per core in every worker.
torch.set_num_threads(1)


def corpus_manifest() -> dict[str, dict[str, str]]:
    with open(CORPUS / "manifest.csv", encoding="utf-8") as handle:
        return {row["path"]: row for row in csv.DictReader(handle)}


requires_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus is not present")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", shard_size=4, asr_cpu_threads=2)
