"""The decoded-audio cache: atomic writes, memory-mapped reads, and pages released behind a reader."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from audio_platform.audio.pcm_cache import PcmCache, release_pages

FILE_ID = "ab" * 32


def _resident_file_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1])
    raise AssertionError("no RssFile in /proc/self/status")


def test_round_trip_and_empty_file(tmp_path: Path) -> None:
    cache = PcmCache(tmp_path)
    samples = np.linspace(-1.0, 1.0, 48_000, dtype=np.float32)
    assert cache.write(FILE_ID, [samples[:1000], samples[1000:]]) == samples.size
    assert cache.has(FILE_ID) and cache.samples(FILE_ID) == samples.size
    np.testing.assert_array_equal(cache.load(FILE_ID), samples)
    cache.write("cd" * 32, [])
    assert cache.load("cd" * 32).size == 0
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_killed_writers_temp_file_is_swept_once_stale(tmp_path: Path) -> None:
    cache = PcmCache(tmp_path)
    folder = cache.path(FILE_ID).parent
    folder.mkdir(parents=True)
    stale, fresh = folder / f".{FILE_ID}.dead.tmp", folder / f".{FILE_ID}.writing.tmp"
    stale.write_bytes(b"\0" * 64)
    fresh.write_bytes(b"\0" * 64)
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    cache.write(FILE_ID, [np.zeros(16, dtype=np.float32)])
    assert not stale.exists()
    assert fresh.exists()  # may belong to a writer still running


def test_released_pages_leave_the_process_and_read_back_unchanged(tmp_path: Path) -> None:
    cache = PcmCache(tmp_path)
    samples = np.random.default_rng(0).standard_normal(16_000 * 600).astype(np.float32)  # 38 MB
    cache.write(FILE_ID, [samples])
    audio = np.asarray(cache.load(FILE_ID))  # what the stages hold: a plain view of the mapping
    before = _resident_file_kib()
    total = float(audio.sum(dtype=np.float64))  # touches every page
    touched = _resident_file_kib() - before
    assert touched > 30_000
    release_pages(audio[1_000:], 0, None)  # a view starting mid-page: its first partial page stays
    assert _resident_file_kib() - before < touched // 10
    assert float(audio.sum(dtype=np.float64)) == total  # faulted back in from the page cache


def test_release_is_a_no_op_for_ordinary_arrays() -> None:
    samples = np.ones(10_000, dtype=np.float32)
    release_pages(samples)
    release_pages(samples[5:], 2, 100)
    assert samples.sum() == 10_000
