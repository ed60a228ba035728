"""Near-duplicate segments across drops: fingerprints, the fixed order of 'earlier', and curation."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy.signal import resample_poly

from audio_platform.audio.decode import decode_mono_16k
from audio_platform.audio.dsp import SAMPLE_RATE
from audio_platform.audio.fingerprint import NEAR_DUPLICATE_MIN_SCORE
from audio_platform.curation.near_duplicates import (
    find_near_duplicates,
    fingerprint_segments,
    postings_for,
    segment_order,
)
from audio_platform.curation.selection import CurationPolicy
from audio_platform.stages import curate_shard
from audio_platform.storage.tables import NEAR_DUPLICATES, TRANSCRIPTS
from audio_platform_tests.conftest import CORPUS, requires_corpus

pytestmark = requires_corpus

ORIGINAL = CORPUS / "audio/ljspeech/LJ050-0161.wav"
OTHER = CORPUS / "audio/ljspeech/LJ050-0164.wav"


def _copy(audio: np.ndarray) -> np.ndarray:
    """Through 8 kHz and back, 6 dB quieter, with white noise at 20 dB SNR, first 0.5 s trimmed."""
    low = resample_poly(resample_poly(audio, 1, 2), 2, 1).astype(np.float32)[: audio.size] * 0.5
    noise = np.random.default_rng(0).normal(0.0, np.sqrt(np.mean(low**2) / 100), low.size)
    return (low + noise).astype(np.float32)[SAMPLE_RATE // 2 :]


@pytest.fixture(scope="module")
def library() -> dict[str, np.ndarray]:
    original = decode_mono_16k(ORIGINAL)
    return {"orig": original, "copy": _copy(original), "other": decode_mono_16k(OTHER)}


def _tables(
    library: dict[str, np.ndarray], placement: dict[str, tuple[str, str]], first_seen: dict[str, str]
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """segments (one per file, the whole file), audio_files and drops for files placed as
    ``file_id -> (drop_id, shard)``."""
    segments = pl.DataFrame(
        [
            {
                "segment_id": f"{f}@0",
                "file_id": f,
                "shard": shard,
                "start_s": 0.0,
                "end_s": library[f].size / SAMPLE_RATE,
            }
            for f, (_, shard) in placement.items()
        ]
    )
    files = pl.DataFrame(
        [
            {
                "file_id": f,
                "shard": shard,
                "drop_id": drop,
                "rel_path": f"{f}.wav",
                "source_path": f"/{drop}/{f}.wav",
                "status": "ok",
            }
            for f, (drop, shard) in placement.items()
        ]
    )
    drops = pl.DataFrame({"drop_id": list(first_seen), "first_seen_at": list(first_seen.values())})
    return segments, files, drops


def _lookup(library, placement, first_seen, shard: str) -> pl.DataFrame:
    segments, files, drops = _tables(library, placement, first_seen)
    loaded: list[str] = []

    def load_audio(file_id: str, source_path: str) -> np.ndarray:
        loaded.append(file_id)
        return library[file_id]

    prints = fingerprint_segments(segments, files, load_audio)
    assert sorted(loaded) == sorted(placement)  # each file loaded once
    queries = prints.join(segments.select("segment_id", "shard"), on="segment_id").filter(pl.col("shard") == shard)
    order = segment_order(segments, files, drops)
    queries = queries.drop("shard")
    # As the asset reads the store: only the postings that share a hash with the queries.
    postings = postings_for(prints, queries["hash"].unique())
    assert postings.height < prints.height or queries.height == prints.height
    return find_near_duplicates(queries, postings, order, NEAR_DUPLICATE_MIN_SCORE)


def test_a_copy_in_a_later_drop_links_to_the_first_and_not_back(library):
    placement = {"orig": ("drop-a", "a-0000"), "copy": ("drop-b", "b-0000"), "other": ("drop-b", "b-0000")}
    first_seen = {"drop-a": "2026-01-01T00:00:00", "drop-b": "2026-02-01T00:00:00"}
    found = _lookup(library, placement, first_seen, "b-0000")
    assert found["segment_id"].to_list() == ["copy@0"]
    (row,) = found.iter_rows(named=True)
    assert row["near_duplicate_of"] == "orig@0" and row["duplicate_shard"] == "a-0000"
    assert row["similarity"] > 0.3 and row["matched_hashes"] >= 20
    assert abs(row["offset_s"] - 0.5) < 0.05  # the copy lacks the first 0.5 s
    # The first copy is never a duplicate of a later one.
    assert _lookup(library, placement, first_seen, "a-0000").is_empty()


def test_earlier_means_the_drop_first_seen_not_the_shard_run_first(library):
    placement = {"orig": ("drop-a", "a-0000"), "copy": ("drop-b", "b-0000")}
    copy_first = {"drop-a": "2026-03-01T00:00:00", "drop-b": "2026-02-01T00:00:00"}
    assert _lookup(library, placement, copy_first, "b-0000").is_empty()
    found = _lookup(library, placement, copy_first, "a-0000")
    assert found.select("segment_id", "near_duplicate_of").rows() == [("orig@0", "copy@0")]


def test_copies_inside_one_shard_keep_the_first_by_path(library):
    placement = {"orig": ("drop-a", "a-0000"), "copy": ("drop-a", "a-0000"), "other": ("drop-a", "a-0000")}
    found = _lookup(library, placement, {"drop-a": "2026-01-01T00:00:00"}, "a-0000")
    # "copy.wav" sorts before "orig.wav": the copy is the first, the original its repeat.
    assert found.select("segment_id", "near_duplicate_of").rows() == [("orig@0", "copy@0")]


def test_a_long_segment_holding_a_short_earlier_clip_is_not_its_copy(library):
    """Similarity is a share of the smaller fingerprint: the earlier 3-s clip scores high inside a
    long new recording, but most of that recording is new speech, so no link is recorded."""
    long = np.concatenate([library["other"], library["orig"][: 3 * SAMPLE_RATE], library["other"], library["other"]])
    lib = {"clip": library["orig"][: 3 * SAMPLE_RATE], "long": long}
    placement = {"clip": ("drop-a", "a-0000"), "long": ("drop-b", "b-0000")}
    assert _lookup(lib, placement, {"drop-a": "2026-01-01", "drop-b": "2026-02-01"}, "b-0000").is_empty()
    # The other way round, the short later clip is wholly inside the earlier recording: a copy.
    found = _lookup(lib, placement, {"drop-a": "2026-03-01", "drop-b": "2026-02-01"}, "a-0000")
    assert found["near_duplicate_of"].to_list() == ["long@0"] and found["coverage"][0] > 0.3


def test_curation_rejects_the_repeat_and_the_policy_can_keep_it():
    segments = pl.DataFrame(
        {
            "segment_id": ["s1", "s2"],
            "file_id": ["f", "f"],
            "shard": ["x-0000", "x-0000"],
            "start_s": [0.0, 6.0],
            "end_s": [5.0, 11.0],
            "duration_s": [5.0, 5.0],
        }
    )
    transcripts = TRANSCRIPTS.conform(
        segments.select("segment_id", "file_id", "shard").with_columns(
            text=pl.lit("an ordinary sentence of speech"),
            language=pl.lit("en"),
            language_probability=pl.lit(None, pl.Float64),
            avg_logprob=pl.lit(-0.2),
            no_speech_prob=pl.lit(0.01),
            compression_ratio=pl.lit(1.2),
            word_count=pl.lit(5),
            asr_model=pl.lit("tiny.en"),
        )
    )
    scores = segments.select("segment_id", "shard").with_columns(topsis_score=pl.lit(0.9), clipping_ratio=pl.lit(0.0))
    files = pl.DataFrame({"file_id": ["f"], "source_path": ["/d/f.wav"], "status": ["ok"]})
    copies = NEAR_DUPLICATES.conform(
        pl.DataFrame(
            {
                "segment_id": ["s2"],
                "shard": ["x-0000"],
                "near_duplicate_of": ["s0 in another drop"],
                "duplicate_shard": ["y-0000"],
                "similarity": [0.62],
                "coverage": [0.6],
                "offset_s": [0.0],
                "matched_hashes": [400],
            }
        )
    )
    there = ["s0 in another drop"]
    decided = curate_shard(scores, segments, transcripts, files, CurationPolicy(), copies, there)
    assert decided.sort("segment_id")["rejection_reason"].to_list() == [
        None,
        "near_duplicate of s0 in another drop (similarity 0.62 >= 0.15)",
    ]
    keep = curate_shard(
        scores, segments, transcripts, files, CurationPolicy(reject_near_duplicates=False), copies, there
    )
    assert keep["selected"].all()
    stricter = CurationPolicy(near_duplicate_min_similarity=0.7)
    assert curate_shard(scores, segments, transcripts, files, stricter, copies, there)["selected"].all()
    # The earlier copy is not (or no longer) curated in its shard: the repeat is the copy kept.
    assert curate_shard(scores, segments, transcripts, files, CurationPolicy(), copies)["selected"].all()
    # A shard never looked up (processed before the lookup existed): nothing is a known copy.
    assert curate_shard(scores, segments, transcripts, files, CurationPolicy())["selected"].all()
    # Inside the shard, the earlier copy must pass every other rule for its repeat to go.
    here = copies.with_columns(near_duplicate_of=pl.lit("s1"), duplicate_shard=pl.lit("x-0000"))
    assert curate_shard(scores, segments, transcripts, files, CurationPolicy(), here)["selected"].to_list() == [
        True,
        False,
    ]
    first_too_short = CurationPolicy(max_duration_s=5.5, min_duration_s=5.0)
    shorter = segments.with_columns(duration_s=pl.Series([4.0, 5.0]))
    decided = curate_shard(scores, shorter, transcripts, files, first_too_short, here).sort("segment_id")
    assert decided["rejection_reason"].to_list() == ["duration 4.0 s < 5.0 s", None]
