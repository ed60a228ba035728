"""Exports of the curated set (NeMo, Lhotse, Hugging Face audiofolder, Lhotse Shar): the field
mapping on frames built by hand, the files and the cut audio read back (Shar by Lhotse itself),
the refusals, and (``check_demo_exports``, called from the CLI's demo test) every format and the
export asset on a real processed home, checked against its warehouse and the decoded audio."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import shutil
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import soundfile as sf
from dagster import DagsterInstance, materialize
from lhotse import CutSet, MonoCut
from lhotse.qa import validate
from lhotse.shar import SharWriter

from audio_platform.audio.decode import decode_mono_16k
from audio_platform.cli import build_parser, main
from audio_platform.defs.exports import curated_exports
from audio_platform.defs.metering import MeteringResource
from audio_platform.defs.partitions import SHARDS
from audio_platform.defs.resources import PlatformStorage
from audio_platform.storage.drops import HOME_MARKER
from audio_platform.storage.export import (
    FORMATS,
    check_output_dir,
    lhotse_recordings,
    lhotse_supervisions,
    nemo_rows,
    remove_folder,
    replace_folder,
    word_alignments,
    write_export,
)
from audio_platform.storage.temp_files import STALE_TEMP_AGE_S
from audio_platform.storage.warehouse import query

ODD_PATH = '/data/my drop/señor "quoted" it\'s 日本語\\back.wav'


def curated_frame(**overrides: list[Any]) -> pl.DataFrame:
    """Two segments of a mono 16 kHz file in a sub-folder of drop a, one of a stereo 44.1 kHz file of
    drop b (columns as the export query gives them)."""
    columns: dict[str, list[Any]] = {
        "segment_id": ["aaaa-1000", "aaaa-5000", "bbbb-0"],
        "file_id": ["aaaa", "aaaa", "bbbb"],
        "drop_id": ["drop-a-111111", "drop-a-111111", "drop-b-222222"],
        "source_path": ["/data/a/calls/one.wav", "/data/a/calls/one.wav", "/data/b/two.wav"],
        "rel_path": ["calls/one.wav", "calls/one.wav", "two.wav"],
        "start_s": [1.0, 5.0, 0.0],
        "end_s": [3.5, 6.25, 2.0],
        "duration_s": [2.5, 1.25, 2.0],
        "text": ["six people", "stop", "go home"],
        "language": ["en", "en", None],
        "topsis_score": [0.9, 0.5, float("nan")],
        "speaker": ["spk1", "spk1", None],
        "sample_rate": [16_000, 16_000, 44_100],
        "channels": [1, 1, 2],
        "file_duration_s": [10.0, 10.0, 2.00005],
    }
    return pl.DataFrame(columns | overrides)


def words_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "segment_id": ["aaaa-1000", "aaaa-1000", "bbbb-0"],
            "word_index": [1, 0, 0],
            "word": ["people", " six", "go"],
            "start_s": [1.6, 1.0, 0.1],
            "end_s": [3.4, 1.5, 0.4],
            "probability": [0.8, 0.95, None],
        }
    )


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def test_nemo_rows_map_each_segment_to_a_manifest_entry() -> None:
    rows = nemo_rows(curated_frame())
    assert rows[0] == {
        "audio_filepath": "/data/a/calls/one.wav",
        "offset": 1.0,
        "duration": 2.5,
        "text": "six people",
        "lang": "en",
        "speaker": "spk1",
        "segment_id": "aaaa-1000",
        "topsis_score": 0.9,
        "drop_id": "drop-a-111111",
        "source_group": "calls",
    }
    # Unknown language, speaker and score are no keys (NaN is no JSON); a file at the top of its drop.
    assert rows[2] == {
        "audio_filepath": "/data/b/two.wav",
        "offset": 0.0,
        "duration": 2.0,
        "text": "go home",
        "segment_id": "bbbb-0",
        "drop_id": "drop-b-222222",
        "source_group": "(drop root)",
    }


def test_word_alignments_are_lhotse_items_in_word_order() -> None:
    alignments = word_alignments(words_frame())
    assert alignments == {
        "aaaa-1000": [["six", 1.0, 0.5, 0.95], ["people", 1.6, 1.8, 0.8]],
        "bbbb-0": [["go", 0.1, 0.3, None]],
    }


def test_lhotse_recordings_use_the_native_rate_and_every_channel() -> None:
    recordings = lhotse_recordings(curated_frame())
    assert recordings == [
        {
            "id": "aaaa",
            "sources": [{"type": "file", "channels": [0], "source": "/data/a/calls/one.wav"}],
            "sampling_rate": 16_000,
            "num_samples": 160_000,
            "duration": 10.0,
            "channel_ids": [0],
        },
        {
            "id": "bbbb",
            "sources": [{"type": "file", "channels": [0, 1], "source": "/data/b/two.wav"}],
            "sampling_rate": 44_100,
            "num_samples": 88_202,  # round(2.00005 * 44100)
            "duration": 88_202 / 44_100,
            "channel_ids": [0, 1],
        },
    ]
    for recording in recordings:  # what Lhotse's validate_recording checks
        assert recording["duration"] == recording["num_samples"] / recording["sampling_rate"]


def test_lhotse_supervisions_carry_text_speaker_alignment_and_the_mix_channels() -> None:
    supervisions = lhotse_supervisions(curated_frame(), word_alignments(words_frame()))
    assert supervisions[0] == {
        "id": "aaaa-1000",
        "recording_id": "aaaa",
        "start": 1.0,
        "duration": 2.5,
        "channel": 0,
        "text": "six people",
        "language": "en",
        "speaker": "spk1",
        "custom": {"topsis_score": 0.9, "drop_id": "drop-a-111111", "source_group": "calls"},
        "alignment": {"word": [["six", 1.0, 0.5, 0.95], ["people", 1.6, 1.8, 0.8]]},
    }
    assert "alignment" not in supervisions[1]  # no words known: no key, as Lhotse writes it
    # A stereo file was transcribed as its mono mix: the supervision names both channels.
    assert supervisions[2]["channel"] == [0, 1]
    assert "speaker" not in supervisions[2] and "language" not in supervisions[2]
    assert supervisions[2]["custom"] == {"drop_id": "drop-b-222222", "source_group": "(drop root)"}


@pytest.mark.parametrize("fmt", ["nemo", "lhotse"])
def test_any_path_and_text_round_trip_through_the_files(tmp_path: Path, fmt: str) -> None:
    text = 'he said "stop" \\ naïve 東京 \u2028 tab\there'
    curated = curated_frame(source_path=[ODD_PATH, ODD_PATH, "/data/b/two.wav"], text=[text, "stop", "go home"])
    summary = write_export(curated, tmp_path / "out", fmt, words=words_frame())
    for path in summary.written:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        raw.decode("ascii")  # escaped: readable whatever encoding a trainer opens it with
        assert raw.count(b"\n") == len(read_jsonl(path))
    if fmt == "nemo":
        rows = read_jsonl(tmp_path / "out" / "manifest.jsonl")
        assert rows[0]["audio_filepath"] == ODD_PATH and rows[0]["text"] == text
    else:
        recordings = read_jsonl(tmp_path / "out" / "recordings.jsonl.gz")
        supervisions = read_jsonl(tmp_path / "out" / "supervisions.jsonl.gz")
        assert recordings[0]["sources"][0]["source"] == ODD_PATH and supervisions[0]["text"] == text


def test_write_export_all_in_one_and_per_drop(tmp_path: Path) -> None:
    out = tmp_path / "out"
    nemo = write_export(curated_frame(), out, "nemo", split_by_drop=True)
    assert [p.name for p in nemo.written] == ["manifest.jsonl", "drop-a-111111.jsonl", "drop-b-222222.jsonl"]
    assert (nemo.segments, nemo.seconds, nemo.audio_files, nemo.drops) == (3, 5.75, 2, 2)
    everything = read_jsonl(out / "manifest.jsonl")
    per_drop = read_jsonl(out / "drop-a-111111.jsonl") + read_jsonl(out / "drop-b-222222.jsonl")
    assert per_drop == everything and len(everything) == 3

    lhotse = write_export(curated_frame(), out, "lhotse", words=words_frame(), split_by_drop=True)
    assert [p.name for p in lhotse.written] == [
        "recordings.jsonl.gz",
        "supervisions.jsonl.gz",
        "drop-a-111111_recordings.jsonl.gz",
        "drop-a-111111_supervisions.jsonl.gz",
        "drop-b-222222_recordings.jsonl.gz",
        "drop-b-222222_supervisions.jsonl.gz",
    ]
    assert [r["id"] for r in read_jsonl(out / "drop-b-222222_recordings.jsonl.gz")] == ["bbbb"]
    assert len(read_jsonl(out / "drop-a-111111_supervisions.jsonl.gz")) == 2
    # Same rows, same bytes (no time stamp in the gzip header); no temp file left behind.
    before = (out / "recordings.jsonl.gz").read_bytes()
    write_export(curated_frame(), out, "lhotse", words=words_frame())
    assert (out / "recordings.jsonl.gz").read_bytes() == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_the_cli_offers_every_format() -> None:
    # The command's choices are written out (importing the export module would slow every command).
    parser = build_parser()
    assert [parser.parse_args(["export", "--format", fmt, "out"]).format for fmt in FORMATS] == list(FORMATS)


def test_check_output_dir_refuses_home_drops_files_and_non_empty_folders(tmp_path: Path) -> None:
    home, drop = tmp_path / "home", tmp_path / "drop"
    home.mkdir()
    drop.mkdir()
    other_home = tmp_path / "other"
    other_home.mkdir()
    (other_home / HOME_MARKER).write_text("", encoding="utf-8")
    (tmp_path / "file.txt").write_text("x", encoding="utf-8")
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("mine", encoding="utf-8")

    def check(out: Path, overwrite: bool = False) -> Path:
        return check_output_dir(out, home=home, protected=[drop], overwrite=overwrite)

    for out, expected in [
        (home, "inside the platform home"),
        (home / "exports", "inside the platform home"),
        (tmp_path / "drop" / ".." / "home" / "x", "inside the platform home"),
        (other_home / "x", "inside the platform home"),
        (drop, "a drop folder"),
        (drop / "sub" / "out", "a drop folder"),
        (tmp_path / "file.txt", "is a file"),
        (full, "is not empty"),
    ]:
        with pytest.raises(ValueError, match=expected):
            check(out)
    assert check(full, overwrite=True) == full.resolve()
    assert check(tmp_path / "new" / "deeper") == (tmp_path / "new" / "deeper").resolve()
    assert not (tmp_path / "new").exists()  # checking writes nothing

    linked = tmp_path / "link"
    linked.symlink_to(drop)
    with pytest.raises(ValueError, match="a drop folder"):
        check(linked / "out")


# A real file's name with everything a CSV or a tar could trip on: comma, quotes, a line break,
# a backslash, non-Latin script.
ODD_NAME = 'señor "quoted", it\'s\n日本語\\one.wav'
ODD_TEXT = 'he said "stop", then\nleft;\r naïve 東京 \u2028 tab\there'


def real_sources(folder: Path) -> tuple[pl.DataFrame, dict[str, np.ndarray]]:
    """:func:`curated_frame` over real files (noise, so a misplaced sample shows): a 16 kHz mono WAV
    under :data:`ODD_NAME`, a 44.1 kHz stereo one; and each file's decoded 16 kHz mono samples."""
    rng = np.random.default_rng(0)
    one, two = folder / "my drop" / ODD_NAME, folder / "two.wav"
    one.parent.mkdir(parents=True)
    sf.write(one, rng.uniform(-0.5, 0.5, 160_000), 16_000, subtype="PCM_16")
    sf.write(two, rng.uniform(-0.5, 0.5, (88_202, 2)), 44_100, subtype="PCM_16")
    curated = curated_frame(source_path=[str(one), str(one), str(two)], text=[ODD_TEXT, "stop", "go home"])
    return curated, {str(path): decode_mono_16k(path) for path in (one, two)}


def assert_span_of(samples: np.ndarray, rate: int, decoded: np.ndarray, offset: float) -> None:
    """``samples`` are the 16-bit PCM of the span of ``decoded`` (the source's 16 kHz mono samples)
    that starts at ``offset`` seconds: what the platform transcribed."""
    assert rate == 16_000 and samples.ndim == 1 and samples.size > 0
    first = round(offset * rate)
    expected = decoded[first : first + samples.size]
    assert expected.size == samples.size
    assert np.abs(samples - expected).max() <= 1 / 32_768 + 1e-6


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_audiofolder_writes_each_segment_as_flac_named_by_metadata_csv(tmp_path: Path) -> None:
    curated, decoded = real_sources(tmp_path)
    out = tmp_path / "out"
    summary = write_export(curated, out, "audiofolder")
    ids = curated["segment_id"].to_list()
    assert [p.relative_to(out).as_posix() for p in summary.written] == [f"data/{i}.flac" for i in ids] + [
        "metadata.csv"
    ]
    rows = read_csv(out / "metadata.csv")
    assert rows[0] == {
        "file_name": "data/aaaa-1000.flac",
        "transcription": ODD_TEXT,  # commas, quotes, CR and LF read back as written
        "duration": "2.5",
        "language": "en",
        "speaker": "spk1",
        "source_path": str(tmp_path / "my drop" / ODD_NAME),
        "offset": "1.0",
        "segment_id": "aaaa-1000",
        "drop_id": "drop-a-111111",
        "topsis_score": "0.9",
    }
    # Unknown language, speaker and score are empty fields.
    assert (rows[2]["language"], rows[2]["speaker"], rows[2]["topsis_score"]) == ("", "", "")
    assert [row["file_name"] for row in rows] == [f"data/{i}.flac" for i in ids]
    for row, seg in zip(rows, curated.iter_rows(named=True), strict=True):
        samples, rate = sf.read(out / row["file_name"], dtype="float32")
        assert sf.info(out / row["file_name"]).format == "FLAC"
        assert_span_of(samples, rate, decoded[row["source_path"]], float(row["offset"]))
        assert float(row["duration"]) == samples.size / rate and abs(samples.size / rate - seg["duration_s"]) < 1e-4
    with pytest.raises(ValueError, match="export each drop with --drop"):
        write_export(curated, tmp_path / "split", "audiofolder", split_by_drop=True)


def test_lhotse_shar_loads_in_lhotse_and_is_what_lhotse_itself_writes(tmp_path: Path) -> None:
    curated, decoded = real_sources(tmp_path)
    out = tmp_path / "out"
    summary = write_export(curated, out, "lhotse-shar", words=words_frame(), segments_per_tar=2)
    assert [p.name for p in summary.written] == [
        "recording.000000.tar",
        "cuts.000000.jsonl.gz",
        "recording.000001.tar",
        "cuts.000001.jsonl.gz",
    ]
    cuts = CutSet.from_shar(in_dir=out).to_eager()
    validate(cuts, read_data=True)
    assert [cut.id for cut in cuts] == curated["segment_id"].to_list()
    for cut, seg in zip(cuts, curated.iter_rows(named=True), strict=True):
        assert isinstance(cut, MonoCut) and cut.recording_id == seg["file_id"] and cut.start == 0
        audio = cut.load_audio()
        assert audio.shape == (1, round(cut.duration * 16_000))
        assert_span_of(audio[0], cut.sampling_rate, decoded[cut.custom["source_path"]], cut.custom["source_offset"])
        assert abs(cut.duration - seg["duration_s"]) < 1e-4 and cut.custom["source_offset"] == seg["start_s"]
        (supervision,) = cut.supervisions
        assert (supervision.start, supervision.duration, supervision.channel) == (0, cut.duration, 0)
        assert (supervision.text, supervision.language, supervision.speaker) == (
            seg["text"],
            seg["language"],
            seg["speaker"],
        )
    # Word times move onto the cut's time line (the first segment starts at 1.0 s of its file).
    assert [tuple(item) for item in cuts[0].supervisions[0].alignment["word"]] == [
        ("six", 0.0, 0.5, 0.95),
        ("people", 0.6, 1.8, 0.8),
    ]
    assert cuts[1].supervisions[0].alignment is None

    # Lhotse's own SharWriter, given the cuts read back, writes the same members, manifests and audio.
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    with SharWriter(theirs, fields={"recording": "flac"}, shard_size=2) as writer:
        for cut in cuts:
            cut.shard_origin = cut.shar_epoch = None  # what reading attached, not part of the data
            writer.write(cut)
    assert sorted(p.name for p in theirs.iterdir()) == sorted(p.name for p in out.iterdir())
    for name in ("cuts.000000.jsonl.gz", "cuts.000001.jsonl.gz"):
        assert read_jsonl(out / name) == read_jsonl(theirs / name)
    for name in ("recording.000000.tar", "recording.000001.tar"):
        assert tar_members(out / name) == tar_members(theirs / name)


def tar_members(path: Path) -> list[tuple[str, bytes]]:
    with tarfile.open(path) as tar:
        return [(member.name, tar.extractfile(member).read()) for member in tar]  # type: ignore[union-attr]


def test_a_cut_audio_export_replaces_the_files_of_the_one_before(tmp_path: Path) -> None:
    curated, _ = real_sources(tmp_path)
    shar, audiofolder = tmp_path / "shar", tmp_path / "audiofolder"
    for rows in (curated, curated.head(2)):
        write_export(rows, shar, "lhotse-shar", segments_per_tar=1)
        write_export(rows, audiofolder, "audiofolder")
    # A Shar reader takes every shard in the folder: the third one, of the export before, is gone.
    assert [cut.id for cut in CutSet.from_shar(in_dir=shar)] == ["aaaa-1000", "aaaa-5000"]
    assert sorted(p.name for p in (audiofolder / "data").iterdir()) == ["aaaa-1000.flac", "aaaa-5000.flac"]
    assert not [*shar.rglob(".*"), *audiofolder.rglob(".*")]  # no temp file left behind


def test_replace_folder_swaps_a_whole_folder_and_keeps_the_old_one_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "exports" / "nemo" / "shard-1"

    def write(text: str) -> Callable[[Path], str]:
        def into(folder: Path) -> str:
            (folder / "manifest.jsonl").write_text(text, encoding="utf-8")
            if text == "fails":
                raise RuntimeError("disk full")
            return text

        return into

    assert replace_folder(target, write("first")) == "first"
    # What killed exports left: swept once older than an export could run; a newer one may be in flight.
    killed, in_flight = target.parent / ".shard-1.0a1b.tmp", target.parent / ".shard-1.2c3d.tmp"
    for folder in (killed, in_flight):
        (folder / "data").mkdir(parents=True)
    os.utime(killed, (time.time() - STALE_TEMP_AGE_S - 60,) * 2)
    assert replace_folder(target, write("second")) == "second"
    assert not killed.exists() and in_flight.is_dir()
    shutil.rmtree(in_flight)
    with pytest.raises(RuntimeError, match="disk full"):
        replace_folder(target, write("fails"))
    assert (target / "manifest.jsonl").read_text(encoding="utf-8") == "second"
    assert [p.name for p in target.parent.iterdir()] == ["shard-1"]  # no temp or old folder left
    remove_folder(target)
    remove_folder(target)  # gone already: nothing to do
    assert not any(target.parent.iterdir())


def check_demo_exports(home: Path, out_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The exports of a home that processed the demo drop, checked against its warehouse."""
    warehouse = home / "warehouse.duckdb"
    texts = dict(query(warehouse, "SELECT segment_id, text FROM curated_segments").iter_rows())
    assert texts
    files = query(warehouse, "SELECT source_path, duration_s, channels, drop_id FROM audio_files WHERE status = 'ok'")
    durations = dict(files.select("source_path", "duration_s").iter_rows())
    channels = dict(files.select("source_path", "channels").iter_rows())
    (drop_id,) = set(files["drop_id"])

    nemo = out_root / "nemo"
    assert main(["export", "--format", "nemo", str(nemo), "--split-by-drop"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"exported {len(texts)} segments (") and "\n" not in line
    assert line.endswith(f"2 file(s) written to {nemo} (manifest.jsonl, {drop_id}.jsonl)")
    rows = read_jsonl(nemo / "manifest.jsonl")
    assert {row["segment_id"]: row["text"] for row in rows} == texts and len(rows) == len(texts)
    for row in rows:
        assert Path(row["audio_filepath"]).is_file()
        assert row["offset"] >= 0 and row["offset"] + row["duration"] <= durations[row["audio_filepath"]] + 1e-6
        assert row.get("lang") == "en" and row["drop_id"] == drop_id
    assert read_jsonl(nemo / f"{drop_id}.jsonl") == rows

    # Not again into the same folder without --overwrite; never into the home or the drop.
    assert main(["export", "--format", "nemo", str(nemo)]) == 1
    assert "is not empty" in capsys.readouterr().err
    assert main(["export", "--format", "nemo", str(nemo), "--overwrite"]) == 0
    capsys.readouterr()
    for inside in (home / "exports", home / "demo_drop"):
        assert main(["export", "--format", "nemo", str(inside), "--overwrite"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1
    assert not (home / "exports").exists() and not (home / "demo_drop" / "manifest.jsonl").exists()

    lhotse = out_root / "lhotse"
    assert main(["export", "--format", "lhotse", str(lhotse), "--drop", drop_id]) == 0
    assert "2 file(s) written" in capsys.readouterr().out
    recordings = {r["id"]: r for r in read_jsonl(lhotse / "recordings.jsonl.gz")}
    supervisions = read_jsonl(lhotse / "supervisions.jsonl.gz")
    assert {s["id"]: s["text"] for s in supervisions} == texts
    assert any(len(r["channel_ids"]) == 2 for r in recordings.values())  # the demo's stereo WAV
    for recording in recordings.values():
        path = recording["sources"][0]["source"]
        assert recording["channel_ids"] == list(range(channels[path]))
        assert abs(recording["duration"] - durations[path]) <= 1 / recording["sampling_rate"]
    for supervision in supervisions:
        recording = recordings[supervision["recording_id"]]  # every supervision's recording exists
        end = supervision["start"] + supervision["duration"]
        assert 0 <= supervision["start"] < end <= recording["duration"] + 1e-3  # Lhotse's own tolerance
        assert supervision["channel"] == (0 if recording["channel_ids"] == [0] else recording["channel_ids"])
        for symbol, start, duration, _score in supervision.get("alignment", {}).get("word", []):
            assert symbol and start >= 0 and duration >= 0 and start + duration <= recording["duration"] + 1e-3
    assert any("alignment" in s for s in supervisions)

    # NeMo tarred: the segments cut into tars of at most 5, each member the 16 kHz mono samples the
    # platform transcribed, the manifest naming the member and its tar.
    tarred = out_root / "nemo-tarred"
    assert main(["export", "--format", "nemo-tarred", str(tarred), "--segments-per-tar", "5"]) == 0
    capsys.readouterr()
    entries = read_jsonl(tarred / "tarred_audio_manifest.json")
    assert {e["segment_id"]: e["text"] for e in entries} == texts
    tars = sorted(tarred.glob("audio_*.tar"))
    assert len(tars) == -(-len(texts) // 5) and {e["shard_id"] for e in entries} == set(range(len(tars)))
    decoded = {path: decode_mono_16k(Path(path)) for path in durations}
    for entry in entries:
        with tarfile.open(tarred / f"audio_{entry['shard_id']}.tar") as tar:
            member = tar.extractfile(entry["audio_filepath"])
            assert member is not None
            samples, rate = sf.read(io.BytesIO(member.read()), dtype="float32")
        assert_span_of(samples, rate, decoded[entry["source_filepath"]], entry["source_offset"])
        assert abs(samples.size / rate - entry["duration"]) < 1e-6
    assert main(["export", "--format", "nemo-tarred", str(out_root / "t2"), "--split-by-drop"]) == 1
    assert "export each drop with --drop" in capsys.readouterr().err

    # Hugging Face audiofolder and Lhotse Shar: the same cut samples, read back with csv and soundfile,
    # and by Lhotse itself; durations and texts those of the warehouse rows.
    seconds = dict(query(warehouse, "SELECT segment_id, duration_s FROM curated_segments").iter_rows())
    audiofolder = out_root / "audiofolder"
    assert main(["export", "--format", "audiofolder", str(audiofolder)]) == 0
    assert f"{len(texts) + 1} file(s) written" in capsys.readouterr().out
    metadata = read_csv(audiofolder / "metadata.csv")
    assert {row["segment_id"]: row["transcription"] for row in metadata} == texts and len(metadata) == len(texts)
    for row in metadata:
        samples, rate = sf.read(audiofolder / row["file_name"], dtype="float32")
        assert_span_of(samples, rate, decoded[row["source_path"]], float(row["offset"]))
        assert float(row["duration"]) == round(samples.size / rate, 6)
        assert abs(float(row["duration"]) - seconds[row["segment_id"]]) <= 1 / rate and row["drop_id"] == drop_id
    shar = out_root / "lhotse-shar"
    assert main(["export", "--format", "lhotse-shar", str(shar), "--segments-per-tar", "5"]) == 0
    capsys.readouterr()
    cuts = CutSet.from_shar(in_dir=shar).to_eager()
    validate(cuts, read_data=True)
    assert {cut.id: cut.supervisions[0].text for cut in cuts} == texts and len(cuts) == len(texts)
    assert len(list(shar.glob("recording.*.tar"))) == -(-len(texts) // 5)
    for cut in cuts:
        audio = cut.load_audio()
        assert_span_of(audio[0], cut.sampling_rate, decoded[cut.custom["source_path"]], cut.custom["source_offset"])
        assert abs(cut.duration - seconds[cut.id]) <= 1 / cut.sampling_rate
    assert any(cut.supervisions[0].alignment for cut in cuts)

    # The export asset on the same home: the shard's folders under home/exports, the rows of the CLI's
    # export (from the shard's lake tables and the audio cache instead of the warehouse and a decode).
    (shard,) = set(query(warehouse, "SELECT shard FROM curated_segments")["shard"])
    asset_metadata = materialize_exports(home, shard, ["audiofolder", "lhotse-shar"], segments_per_tar=5)
    assert asset_metadata["segments"] == len(texts)
    assert read_csv(home / "exports" / "audiofolder" / shard / "metadata.csv") == metadata
    exported = CutSet.from_shar(in_dir=home / "exports" / "lhotse-shar" / shard).to_eager()
    assert [cut.to_dict()["supervisions"] for cut in exported] == [cut.to_dict()["supervisions"] for cut in cuts]


def materialize_exports(home: Path, shard: str, formats: list[str], **config: Any) -> dict[str, Any]:
    """Materialize curated_exports for ``shard`` of ``home`` in ``formats`` (other config fields as
    keywords) on an ephemeral instance; the materialization's metadata values."""
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(SHARDS, [shard])
        result = materialize(
            [curated_exports],
            partition_key=shard,
            instance=instance,
            resources={"storage": PlatformStorage(home=str(home)), "metering": MeteringResource()},
            run_config={"ops": {"curated_exports": {"config": {"formats": formats, **config}}}},
        )
    (materialization,) = result.asset_materializations_for_node("curated_exports")
    return {key: value.value for key, value in materialization.metadata.items()}
