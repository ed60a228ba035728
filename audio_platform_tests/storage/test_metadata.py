"""Drop metadata in the audiofolder convention: CSV and JSONL, nearest file wins, and a reason
for every file without a usable row and every row without a file."""

import json
from pathlib import Path

import polars as pl

from audio_platform.storage.drops import iter_drop_files
from audio_platform.storage.metadata import drop_metadata


def _touch(root: Path, *rel_paths: str) -> None:
    for rel in rel_paths:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"RIFF")


def test_csv_rows_become_typed_columns_and_json(tmp_path: Path) -> None:
    _touch(tmp_path, "a.wav", "b.wav", "c.wav")
    (tmp_path / "metadata.csv").write_text(
        'file_name,transcription,speaker_id,snr\na.wav,"Hello, ""world""",s1,12\nb.wav,Second line,s2,\n',
        encoding="utf-8",
    )
    frame, problems = drop_metadata(tmp_path, ["a.wav", "b.wav", "c.wav"])
    rows = {r["rel_path"]: r for r in frame.iter_rows(named=True)}
    assert rows["a.wav"]["reference_text"] == 'Hello, "world"' and rows["a.wav"]["speaker"] == "s1"
    assert json.loads(rows["a.wav"]["fields"]) == {"transcription": 'Hello, "world"', "speaker_id": "s1", "snr": "12"}
    assert rows["a.wav"]["reason"] is None and rows["a.wav"]["metadata_file"] == "metadata.csv"
    assert rows["c.wav"]["reason"] == "no row in metadata.csv" and rows["c.wav"]["fields"] is None
    assert problems == []


def test_jsonl_in_a_subfolder_applies_to_its_files_only_and_names_missing_files(tmp_path: Path) -> None:
    _touch(tmp_path, "train/x.flac", "train/deep/y.flac", "other/z.flac")
    lines = [
        {"file_name": "x.flac", "text": "eins", "language": "de", "extra": {"n": 1}},
        {"file_name": "deep/y.flac", "sentence": "zwei", "speaker": "p9"},
        {"file_name": "gone.flac", "text": "missing"},
    ]
    (tmp_path / "train" / "metadata.jsonl").write_text("\n".join(json.dumps(x) for x in lines), encoding="utf-8")
    frame, problems = drop_metadata(tmp_path, ["train/x.flac", "train/deep/y.flac", "other/z.flac"])
    rows = {r["rel_path"]: r for r in frame.iter_rows(named=True)}
    assert set(rows) == {"train/x.flac", "train/deep/y.flac"}  # no metadata file applies to other/
    assert (rows["train/x.flac"]["reference_text"], rows["train/x.flac"]["language"]) == ("eins", "de")
    assert json.loads(rows["train/x.flac"]["fields"])["extra"] == '{"n": 1}'
    assert (rows["train/deep/y.flac"]["reference_text"], rows["train/deep/y.flac"]["speaker"]) == ("zwei", "p9")
    assert problems == ["train/metadata.jsonl: 1 row(s) name no file of the drop, e.g. train/gone.flac"]


def test_a_shard_sees_rows_of_other_shards_files_without_a_problem(tmp_path: Path) -> None:
    _touch(tmp_path, "a.wav", "b.wav")
    (tmp_path / "metadata.csv").write_text(
        "file_name,text\na.wav,one\nb.wav,two\n../outside.wav,three\nc.wav,four\n", encoding="utf-8"
    )
    (tmp_path.parent / "outside.wav").write_bytes(b"")
    # This shard holds a.wav only; b.wav is another shard's; the other two are nowhere in the drop.
    frame, problems = drop_metadata(tmp_path, ["a.wav"])
    assert frame["rel_path"].to_list() == ["a.wav"]
    assert problems == ["metadata.csv: 2 row(s) name no file of the drop, e.g. ../outside.wav"]


def test_the_drop_wide_row_check_is_done_once_per_version_of_the_metadata_file(tmp_path: Path) -> None:
    drop, memo = tmp_path / "drop", tmp_path / "memo"
    _touch(drop, "a.wav", "b.wav")
    (drop / "metadata.csv").write_text(
        "file_name,text\na.wav,one\nb.wav,two\nc.wav,three\nd.wav,four\n", encoding="utf-8"
    )
    expected = ["metadata.csv: 2 row(s) name no file of the drop, e.g. c.wav"]
    assert drop_metadata(drop, ["a.wav"], memo_dir=memo)[1] == expected
    # The next shard takes the answer from the memo, not the disk: d.wav appearing is not seen
    # (without a memo every shard checks the disk)...
    _touch(drop, "d.wav")
    frame, problems = drop_metadata(drop, ["b.wav"], memo_dir=memo)
    assert problems == expected and frame["reference_text"].to_list() == ["two"]
    assert drop_metadata(drop, ["b.wav"])[1] == [expected[0].replace("2 row(s)", "1 row(s)")]
    # ...but the memo's example appearing (a drop still being copied) makes the next shard check.
    _touch(drop, "c.wav")
    assert drop_metadata(drop, ["b.wav"], memo_dir=memo)[1] == []
    # A new version of the metadata file is checked again.
    (drop / "metadata.csv").write_text("file_name,text\na.wav,one\nb.wav,two\ne.wav,five\n", encoding="utf-8")
    only_e = ["metadata.csv: 1 row(s) name no file of the drop, e.g. e.wav"]
    assert drop_metadata(drop, ["a.wav"], memo_dir=memo)[1] == only_e
    # A memo that cannot be written (its folder is a file) only means checking the disk again.
    assert drop_metadata(drop, ["a.wav"], memo_dir=drop / "a.wav" / "memo")[1] == only_e
    # A metadata file without rows is usable: its files have no row, it is not unreadable.
    (drop / "metadata.csv").write_text("file_name,text\n", encoding="utf-8")
    assert drop_metadata(drop, ["a.wav"], memo_dir=memo)[0]["reason"].to_list() == ["no row in metadata.csv"]


def test_unreadable_metadata_is_a_reason_not_a_crash(tmp_path: Path) -> None:
    _touch(tmp_path, "a.wav", "b.wav")
    (tmp_path / "metadata.csv").write_bytes(b"name,text\na.wav,hi\n")
    frame, problems = drop_metadata(tmp_path, ["a.wav"])
    assert problems == ["metadata.csv: metadata.csv has no file_name column (columns: name, text)"]
    assert frame["reason"].to_list() == [
        "metadata.csv could not be used: metadata.csv has no file_name column (columns: name, text)"
    ]
    (tmp_path / "metadata.csv").write_bytes(b"file_name,text\na.wav,caf\xe9\n")  # Latin-1, not UTF-8
    frame, problems = drop_metadata(tmp_path, ["a.wav", "b.wav"])
    row = frame.filter(pl.col("rel_path") == "a.wav").row(0, named=True)
    assert row["reference_text"] == "caf\ufffd" and row["reason"] == "not UTF-8: undecodable bytes replaced"
    (tmp_path / "metadata.csv").unlink()
    assert drop_metadata(tmp_path, ["a.wav"])[0].is_empty()


def test_metadata_files_are_no_audio_inputs(tmp_path: Path) -> None:
    _touch(tmp_path, "a.wav", "sub/b.wav")
    (tmp_path / "metadata.csv").write_text("file_name\na.wav\n", encoding="utf-8")
    (tmp_path / "sub" / "metadata.jsonl").write_text('{"file_name": "b.wav"}\n', encoding="utf-8")
    assert sorted(iter_drop_files(tmp_path)) == ["a.wav", "sub/b.wav"]
