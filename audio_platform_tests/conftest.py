"""Shared fixtures: the real corpus (../shared/corpus) and a fresh platform home per test."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import torch

from audio_platform.settings import Settings

# Session fixtures (real S3 and PostgreSQL servers) for the production-store tests in every folder.
from audio_platform_tests.servers import postgres_server, s3_server  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parents[1]
# Settings.resource_config of every test run: the ASR model on two threads, as on the 2-core CI machine.
TWO_ASR_THREADS = {"asr": {"cpu_threads": 2}}
CORPUS = REPO_ROOT.parent / "shared" / "corpus"

# Tests share a 2-core machine: keep torch from spawning a thread per core in every worker.
torch.set_num_threads(1)


def corpus_manifest() -> dict[str, dict[str, str]]:
    with open(CORPUS / "manifest.csv", encoding="utf-8") as handle:
        return {row["path"]: row for row in csv.DictReader(handle)}


requires_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus is not present")


def demo_shard_home(root: Path) -> tuple[Settings, str]:
    """A platform home under ``root`` with the built-in demo drop processed as one shard; returns its
    settings and the shard key."""
    # Imported here: audio_platform.definitions builds the module-level definitions on import.
    from audio_platform.definitions import build_definitions
    from audio_platform.demo import build_demo_drop
    from audio_platform.runs import prepare_instance, process_drop

    settings = Settings(home=root / "home", resource_config=TWO_ASR_THREADS)
    build_demo_drop(root / "drop")
    report = process_drop(settings, build_definitions(settings), root / "drop", prepare_instance(settings))
    assert report.failed_shards == [] and len(report.plan.shards) == 1
    return settings, next(iter(report.plan.shards))


def stop_process_group(process: subprocess.Popen[Any], timeout_s: float = 30.0) -> None:
    """Stop a server a test started with ``start_new_session=True``, and every process it started:
    SIGTERM to its group, SIGKILL if it is still there after ``timeout_s``."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", shard_size=4, resource_config=TWO_ASR_THREADS)
