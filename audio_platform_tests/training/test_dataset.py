from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import soundfile as sf

from audio_platform.training.config import DatasetConfig
from audio_platform.training.dataset import (
    MANIFEST_SCHEMA,
    build_keyword_manifest,
    dataset_lineage,
    generated_noise,
    load_keyword_dataset,
    normalize_word,
)

SR = 16_000


def _tables(folder: Path) -> dict[str, pl.DataFrame]:
    """Four ok files (two speakers, one silent) and one quarantined file, with real wav files."""
    rng = np.random.default_rng(1)
    durations = {"f1": 4.0, "f2": 3.0, "f3": 3.0, "silent": 5.0, "bad": 2.0}
    for file_id, seconds in durations.items():
        sf.write(folder / f"{file_id}.wav", (0.1 * rng.standard_normal(int(seconds * SR))).astype(np.float32), SR)
    audio_files = pl.DataFrame(
        {
            "file_id": list(durations),
            "shard": ["s1", "s1", "s2", "s2", "s2"],
            "source_path": [str(folder / f"{f}.wav") for f in durations],
            "status": ["ok", "ok", "ok", "ok", "quarantined"],
            "duration_s": list(durations.values()),
            "speaker": ["A", "A", "B", None, "C"],
        }
    )
    segments = pl.DataFrame(
        {
            "segment_id": ["s1", "s2", "s3", "s3x", "sb"],
            "file_id": ["f1", "f2", "f3", "f3", "bad"],
            "start_s": [0.5, 0.2, 0.3, 2.0, 0.1],
            "end_s": [3.5, 1.2, 1.8, 2.9, 1.9],
        }
    )
    words = pl.DataFrame(
        [
            ("s1", 0, " Hello", 0.6, 0.9),
            ("s1", 1, " Six,", 1.0, 1.4),
            ("s1", 2, " sixty", 1.5, 2.0),
            ("s1", 3, " world.", 2.9, 3.3),
            ("s2", 0, " 6", 0.3, 0.6),
            ("s2", 1, " 1964", 0.7, 1.1),
            ("s3", 0, " hey", 0.4, 0.7),
            ("s3", 1, " Jarvis", 0.8, 1.3),
            ("s3", 2, " please", 1.4, 1.7),
            ("s3x", 0, " six", 2.2, 2.5),
            ("sb", 0, " six", 0.5, 0.9),
        ],
        schema=["segment_id", "word_index", "word", "start_s", "end_s"],
        orient="row",
    )
    curated = pl.DataFrame({"segment_id": ["s1", "s2", "s3", "sb"]})
    return {"words": words, "segments": segments, "curated_segments": curated, "audio_files": audio_files}


def _manifest(tables: dict[str, pl.DataFrame], **overrides: object) -> pl.DataFrame:
    settings: dict = {"keyword": "six", "group_column": "speaker", "noise_clips": 6} | overrides
    return build_keyword_manifest(
        tables["words"],
        tables["segments"],
        tables["curated_segments"],
        tables["audio_files"],
        DatasetConfig(**settings),
    )


@pytest.fixture
def tables(tmp_path: Path) -> dict[str, pl.DataFrame]:
    return _tables(tmp_path)


def test_normalize_word_handles_whisper_spellings() -> None:
    assert [normalize_word(w) for w in (" Six,", "6", "SIXTY", "60", "1964", "don't")] == [
        "six",
        "six",
        "sixty",
        "sixty",
        "1964",
        "don't",
    ]


def test_manifest_schema_and_positives(tables: dict[str, pl.DataFrame]) -> None:
    manifest = _manifest(tables)
    assert manifest.schema == pl.Schema(MANIFEST_SCHEMA)
    assert manifest["clip_id"].is_unique().all()
    positives = manifest.filter(pl.col("kind") == "positive").sort("file_id")
    # 'Six,' in f1 and Whisper's '6' in f2; not the uncurated segment s3x, not the quarantined file.
    assert positives["file_id"].to_list() == ["f1", "f2"]
    assert positives["start_s"].to_list() == pytest.approx([0.7, 0.0])  # centred, then kept inside the file
    assert ((positives["end_s"] - positives["start_s"]) == 1.0).all()
    assert manifest.filter(pl.col("file_id") == "bad").is_empty()


def test_negative_words_stay_clear_of_the_keyword_and_of_unresolved_numbers(
    tables: dict[str, pl.DataFrame],
) -> None:
    manifest = _manifest(tables)
    negatives = manifest.filter(pl.col("kind") == "negative_word")
    keyword_or_digits = [("f1", 1.0, 1.4), ("f2", 0.3, 0.6), ("f2", 0.7, 1.1), ("f3", 2.2, 2.5)]
    for row in negatives.iter_rows(named=True):
        for file_id, start, end in keyword_or_digits:
            assert not (row["file_id"] == file_id and row["start_s"] < end and start < row["end_s"]), row
    assert set(negatives["word"]) == {"world", "hey", "jarvis", "please"}
    # 'sixty' only overlaps the keyword in this layout; a capped build still prefers confusable words.
    far = tables | {
        "words": tables["words"].with_columns(
            pl.col("start_s", "end_s") + pl.when(pl.col("word") == " sixty").then(1.5).otherwise(0.0)
        )
    }
    capped = _manifest(far, max_negative_words=1).filter(pl.col("kind") == "negative_word")
    assert capped["word"].to_list() == ["sixty"]


def test_non_speech_windows_avoid_speech(tables: dict[str, pl.DataFrame]) -> None:
    manifest = _manifest(tables, speech_margin_s=0.25)
    windows = manifest.filter(pl.col("kind") == "non_speech")
    # Only the silent file and f2 (free from 1.45 s to its end at 3.0 s) have a whole second clear.
    assert set(windows["file_id"]) == {"silent", "f2"}
    segments = tables["segments"]
    for row in windows.iter_rows(named=True):
        assert row["end_s"] <= tables["audio_files"].filter(pl.col("file_id") == row["file_id"])["duration_s"][0]
        for seg in segments.filter(pl.col("file_id") == row["file_id"]).iter_rows(named=True):
            assert row["end_s"] <= seg["start_s"] - 0.25 or row["start_s"] >= seg["end_s"] + 0.25
    assert windows.filter(pl.col("file_id") == "silent").height == 5


def test_multi_word_keyword(tables: dict[str, pl.DataFrame]) -> None:
    manifest = _manifest(tables, keyword="hey jarvis")
    positives = manifest.filter(pl.col("kind") == "positive")
    assert positives["file_id"].to_list() == ["f3"]
    assert positives["start_s"][0] == pytest.approx(0.35)  # centre of 0.4..1.3
    assert manifest.filter((pl.col("kind") == "negative_word") & (pl.col("file_id") == "f3")).is_empty()


def _many_files(n_files: int = 300) -> dict[str, pl.DataFrame]:
    file_ids = [f"file{i:03d}" for i in range(n_files)]
    audio_files = pl.DataFrame(
        {
            "file_id": file_ids,
            "shard": [f"s{i % 7}" for i in range(n_files)],
            "source_path": [f"/data/{f}.wav" for f in file_ids],
            "status": "ok",
            "duration_s": 3.0,
            "speaker": [f"spk{i % 40}" if i % 5 else None for i in range(n_files)],
        }
    )
    segments = pl.DataFrame({"segment_id": file_ids, "file_id": file_ids, "start_s": 0.2, "end_s": 2.0})
    words = pl.DataFrame(
        {
            "segment_id": [f for f in file_ids for _ in range(2)],
            "word_index": [0, 1] * n_files,
            "word": ["six", "apple"] * n_files,
            "start_s": [0.3, 1.2] * n_files,
            "end_s": [0.7, 1.7] * n_files,
        }
    )
    return {
        "words": words,
        "segments": segments,
        "curated_segments": segments.select("segment_id"),
        "audio_files": audio_files,
    }


def test_split_is_by_recording_group_and_deterministic() -> None:
    tables = _many_files()
    manifest = _manifest(tables)
    clips = manifest.filter(pl.col("file_id").is_not_null())
    assert clips.group_by("file_id").agg(pl.col("split").n_unique())["split"].max() == 1
    speakers = clips.join(tables["audio_files"].select("file_id", "speaker"), on="file_id").drop_nulls("speaker")
    assert speakers.group_by("speaker").agg(pl.col("split").n_unique())["split"].max() == 1
    shares = clips.filter(pl.col("kind") == "positive")["split"].value_counts(normalize=True)
    assert set(shares["split"]) == {"train", "validation", "test"}
    assert manifest.equals(_manifest(tables))
    assert not manifest["split"].equals(_manifest(tables, split_salt="other")["split"])


def test_split_of_a_file_survives_new_data() -> None:
    small = _manifest(_many_files(100)).filter(pl.col("kind") == "positive").select("file_id", "split")
    large = _manifest(_many_files(300)).filter(pl.col("kind") == "positive").select("file_id", "split")
    assert small.join(large, on="file_id", suffix="_later").filter(pl.col("split") != pl.col("split_later")).is_empty()


def test_streams_are_keyword_free_test_files() -> None:
    tables = _many_files()
    clean = tables["audio_files"].with_columns(file_id=pl.lit("clean"), speaker=pl.lit("x")).head(1)
    tables["audio_files"] = pl.concat([tables["audio_files"], clean])
    manifest = _manifest(tables, split_salt="any", test_fraction=0.99, val_fraction=0.005)
    streams = manifest.filter(pl.col("kind") == "stream")
    assert streams["file_id"].to_list() == ["clean"] and streams["split"].to_list() == ["test"]
    assert streams["end_s"][0] == 3.0


def test_lineage_counts(tables: dict[str, pl.DataFrame]) -> None:
    manifest = _manifest(tables, tts_variants=(("en-us", 160, 50),))
    lineage = dataset_lineage(manifest)
    assert lineage["keyword"] == "six"
    assert lineage["shards"] == "s1,s2" and lineage["n_shards"] == 2
    assert lineage["train.synthetic"] == 1
    kinds = ("positive", "synthetic", "negative_word", "non_speech", "noise")
    total = sum(int(lineage[f"{s}.{k}"]) for s in ("train", "validation", "test") for k in kinds)
    assert total == lineage["clips"] == manifest.filter(pl.col("kind") != "stream").height


def test_load_round_trip_with_noise_and_tts(tables: dict[str, pl.DataFrame], tmp_path: Path) -> None:
    manifest = _manifest(tables, tts_variants=(("en-us", 160, 50), ("en", 120, 30)))
    path = tmp_path / "manifest.parquet"
    manifest.write_parquet(path)
    calls: list[tuple[str, str, int, int]] = []

    def fake_tts(text: str, voice: str, rate_wpm: int, pitch: int) -> tuple[np.ndarray, int]:
        calls.append((text, voice, rate_wpm, pitch))
        return np.full(11025, 0.5, dtype=np.float32), 22050

    with pytest.raises(ValueError, match="pass the tts callable"):
        load_keyword_dataset(manifest)
    dataset = load_keyword_dataset(pl.read_parquet(path), fake_tts)
    assert sorted(calls) == [("six", "en", 120, 30), ("six", "en-us", 160, 50)]
    assert dataset.waves.shape == (manifest.filter(pl.col("kind") != "stream").height, SR)
    assert set(dataset.splits[dataset.kinds == "synthetic"]) == {"train"}

    synthetic = dataset.waves[dataset.kinds == "synthetic"][0]
    assert np.count_nonzero(synthetic) == pytest.approx(SR // 2, abs=2)  # 0.5 s centred in the clip
    row = manifest.filter(pl.col("kind") == "positive").filter(pl.col("file_id") == "f1").row(0, named=True)
    audio, _ = sf.read(row["source_path"], dtype="float32")
    start = round(row["start_s"] * SR)
    np.testing.assert_array_equal(dataset.waves[dataset.clip_ids == row["clip_id"]][0], audio[start : start + SR])

    noise_id = manifest.filter(pl.col("kind") == "noise")["clip_id"][0]
    color = noise_id.split("-")[1]
    np.testing.assert_array_equal(dataset.waves[dataset.clip_ids == noise_id][0], generated_noise(noise_id, color, SR))
    assert dataset.stream_paths == tuple(sorted(manifest.filter(pl.col("kind") == "stream")["source_path"]))
