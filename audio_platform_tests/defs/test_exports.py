"""curated_exports on a lake written by hand: two shards over real audio files, no model run (the
asset on a really processed drop is checked in ``check_demo_exports``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import soundfile as sf
from lhotse import CutSet

from audio_platform.storage.export import load_shard
from audio_platform.storage.lake import Lake
from audio_platform.storage.tables import AUDIO_FILES, CURATED_SEGMENTS, DROPS, FILE_METADATA, WORDS, Table
from audio_platform_tests.storage.test_export import (
    ODD_TEXT,
    assert_span_of,
    materialize_exports,
    read_csv,
    read_jsonl,
)

SHARDS = {"drop-a-1-00000": "drop-a-1", "drop-b-2-00000": "drop-b-2"}


def rows(table: Table, *records: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame([{column: record.get(column) for column in table.schema} for record in records], table.schema)


def write_shard(lake: Lake, shard: str, drop_id: str, drop_root: Path) -> Path:
    """One file of 4 s of noise in a drop folder, inventoried in ``shard`` with two curated segments
    (words for the first), its drop and its metadata (a speaker): what processing writes."""
    source = drop_root / "calls" / f"{shard}.wav"
    source.parent.mkdir(parents=True)
    sf.write(source, np.random.default_rng(len(shard)).uniform(-0.5, 0.5, 64_000), 16_000, subtype="PCM_16")
    file_id = f"f{drop_id.split('-')[1]}"  # fa, fb
    common = {"file_id": file_id, "shard": shard, "source_path": str(source)}
    lake.write_table(
        AUDIO_FILES,
        shard,
        rows(
            AUDIO_FILES,
            common
            | {"drop_id": drop_id, "rel_path": f"calls/{source.name}", "sample_rate": 16_000, "channels": 1}
            | {"duration_s": 4.0, "status": "ok"},
        ),
    )
    segments = [(0.5, 1.5, ODD_TEXT), (2.0, 3.25, "second one")]
    lake.write_table(
        CURATED_SEGMENTS,
        shard,
        rows(
            CURATED_SEGMENTS,
            *(
                common
                | {"segment_id": f"{file_id}-{int(start * 1000)}", "start_s": start, "end_s": end}
                | {"duration_s": end - start, "text": text, "language": "en", "topsis_score": 0.7}
                for start, end, text in segments
            ),
        ),
    )
    word = {"segment_id": f"{file_id}-500", "word_index": 0, "word": " he", "start_s": 0.6, "end_s": 0.8}
    lake.write_table(WORDS, shard, rows(WORDS, common | word | {"probability": 0.9}))
    lake.write_table(FILE_METADATA, shard, rows(FILE_METADATA, common | {"drop_id": drop_id, "speaker": "spk-7"}))
    lake.write_table(DROPS, drop_id, rows(DROPS, {"drop_id": drop_id, "drop_root": str(drop_root)}))
    return source


def files_of(folder: Path) -> dict[Path, tuple[int, int]]:
    """Each file under ``folder`` with its inode and modification time: what a rewrite changes."""
    return {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


def test_each_shard_is_exported_alone_and_replaced_whole(tmp_path: Path) -> None:
    home = tmp_path / "home"
    lake = Lake(home / "lake")
    sources = {shard: write_shard(lake, shard, drop_id, tmp_path / drop_id) for shard, drop_id in SHARDS.items()}
    first, second = SHARDS
    exports = home / "exports"

    # The shard's rows as the warehouse query gives them: speaker from the drop's metadata, words.
    curated, words = load_shard(lake, first)
    assert curated["segment_id"].to_list() == ["fa-500", "fa-2000"] and set(curated["speaker"]) == {"spk-7"}
    assert words["word"].to_list() == [" he"]

    formats = ["nemo", "audiofolder", "lhotse-shar"]
    metadata = materialize_exports(home, first, formats)
    assert sorted(p.relative_to(exports).as_posix() for p in exports.glob("*/*")) == [
        f"{fmt}/{first}" for fmt in ("audiofolder", "lhotse-shar", "nemo")
    ]
    assert metadata["segments"] == 2 and metadata["exported_seconds"] == 2.25
    assert metadata["bytes_written"] == sum(p.stat().st_size for p in exports.rglob("*") if p.is_file())
    assert metadata["path_audiofolder"] == str(exports / "audiofolder" / first) and metadata["wall_seconds"] > 0
    assert [row["text"] for row in read_jsonl(exports / "nemo" / first / "manifest.jsonl")] == [ODD_TEXT, "second one"]
    decoded, _ = sf.read(sources[first], dtype="float32")
    for row in read_csv(exports / "audiofolder" / first / "metadata.csv"):
        samples, rate = sf.read(exports / "audiofolder" / first / row["file_name"], dtype="float32")
        assert_span_of(samples, rate, decoded, float(row["offset"]))
        assert row["speaker"] == "spk-7" and row["source_path"] == str(sources[first])
    cuts = CutSet.from_shar(in_dir=exports / "lhotse-shar" / first).to_eager()
    assert [c.supervisions[0].text for c in cuts] == [ODD_TEXT, "second one"]
    assert cuts[0].supervisions[0].alignment["word"][0].start == pytest.approx(0.1)  # 0.6 s in the file

    materialize_exports(home, second, formats)
    untouched = files_of(exports / "nemo" / second) | files_of(exports / "audiofolder" / second)
    assert untouched

    # Curation changed the first shard: its export is replaced whole, the second shard's is not touched.
    lake.write_table(CURATED_SEGMENTS, first, lake.read(CURATED_SEGMENTS.name, first).tail(1))
    assert materialize_exports(home, first, formats)["segments"] == 1
    assert [row["segment_id"] for row in read_csv(exports / "audiofolder" / first / "metadata.csv")] == ["fa-2000"]
    assert sorted(p.name for p in (exports / "audiofolder" / first / "data").iterdir()) == ["fa-2000.flac"]
    assert [c.id for c in CutSet.from_shar(in_dir=exports / "lhotse-shar" / first)] == ["fa-2000"]
    assert files_of(exports / "nemo" / second) | files_of(exports / "audiofolder" / second) == untouched
    assert not [p for p in exports.glob("*/.*")]  # no temp or old folder left

    # Nothing curated any more: no export of the shard, rather than one of a former selection.
    lake.write_table(CURATED_SEGMENTS, first, CURATED_SEGMENTS.empty())
    metadata = materialize_exports(home, first, ["nemo", "audiofolder"])
    assert (metadata["segments"], metadata["bytes_written"]) == (0, 0)
    assert not (exports / "nemo" / first).exists() and not (exports / "audiofolder" / first).exists()
    assert (exports / "lhotse-shar" / first).is_dir()  # a format left out of the config keeps its export
    assert files_of(exports / "nemo" / second) | files_of(exports / "audiofolder" / second) == untouched


def test_the_export_never_writes_into_a_drop_and_refuses_unknown_formats(tmp_path: Path) -> None:
    # A drop folder that holds the platform home: its exports would be read as input next time.
    home = tmp_path / "drop-a-1" / "home"
    shard = next(iter(SHARDS))
    write_shard(Lake(home / "lake"), shard, SHARDS[shard], tmp_path / "drop-a-1")
    with pytest.raises(ValueError, match="a drop folder or the lake"):
        materialize_exports(home, shard, ["nemo"])
    with pytest.raises(ValueError, match=r"unknown export format.*webdataset"):
        materialize_exports(home, shard, ["nemo", "webdataset"])
    assert not (home / "exports").exists()
