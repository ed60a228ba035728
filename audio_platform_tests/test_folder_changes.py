"""A folder that changes between runs: stable shards, only new or changed work, nothing lost.

Each step changes the drop folder as a user would (add, remove, rename, rewrite a file, a copy
that outlives its original, an overlapping second drop), re-runs `process_drop` through a real
Dagster instance and checks the warehouse: every file on disk has exactly one current row, every
`ok` file keeps its speech, nothing is a duplicate of itself, and only the shards that changed ran.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest

from audio_platform.definitions import build_definitions
from audio_platform.runs import DropRunReport, prepare_instance, process_drop
from audio_platform.settings import Settings
from audio_platform.storage.warehouse import query
from audio_platform_tests.conftest import CORPUS, TWO_ASR_THREADS, requires_corpus

pytestmark = [pytest.mark.e2e, requires_corpus]

# Short single-utterance recordings (1-4 s each): the speech that must never disappear.
SPEECH = [CORPUS / "audio/an4" / name for name in ("an251-fash-b.wav", "an253-fash-b.wav", "an130-mcen-b.wav")]


class Home:
    def __init__(self, root: Path, shard_size: int) -> None:
        self.settings = Settings(home=root / "home", shard_size=shard_size, resource_config=TWO_ASR_THREADS)
        self.defs = build_definitions(self.settings)
        self.instance = prepare_instance(self.settings)

    def process(self, folder: Path) -> DropRunReport:
        report = process_drop(self.settings, self.defs, folder, self.instance)
        assert report.failed_shards == []  # (checks may warn: 1-4 s clips curate nothing)
        return report

    def files(self, drop_id: str) -> dict[str, tuple[str, str | None]]:
        """rel_path -> (status, duplicate_of) of the drop, asserting one row per file."""
        sql = "SELECT rel_path, status, duplicate_of FROM audio_files WHERE drop_id = $1"
        frame = query(self.settings.warehouse_path, sql, [drop_id])
        assert frame["rel_path"].n_unique() == frame.height, frame
        return {rel: (status, dup) for rel, status, dup in frame.iter_rows()}

    def segments_by_file(self, drop_id: str) -> dict[str, int]:
        frame = query(
            self.settings.warehouse_path,
            "SELECT f.rel_path, count(s.segment_id) AS n FROM audio_files f "
            "LEFT JOIN segments s ON s.file_id = f.file_id AND s.shard = f.shard "
            "WHERE f.drop_id = $1 GROUP BY ALL",
            [drop_id],
        )
        return dict(frame.iter_rows())


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


def test_adding_removing_renaming_and_rewriting_files(tmp_path):
    home = Home(tmp_path, shard_size=2)
    drop = tmp_path / "drop"
    _copy(SPEECH[0], drop / "b.wav")
    _copy(SPEECH[1], drop / "c.wav")
    first = home.process(drop)
    drop_id = first.plan.drop_id
    assert home.files(drop_id) == {"b.wav": ("ok", None), "c.wav": ("ok", None)}
    speech = home.segments_by_file(drop_id)
    assert speech["b.wav"] > 0 and speech["c.wav"] > 0

    # Unchanged folder: nothing runs, nothing changes.
    again = home.process(drop)
    assert again.processed_shards == [] and home.segments_by_file(drop_id) == speech

    # Add a file that sorts first: it used to push c.wav into another shard as a duplicate of itself.
    _copy(SPEECH[2], drop / "a.wav")
    added = home.process(drop)
    assert added.processed_shards == [f"{drop_id}-0001"]
    assert home.files(drop_id) == {"a.wav": ("ok", None), "b.wav": ("ok", None), "c.wav": ("ok", None)}
    assert {k: v for k, v in home.segments_by_file(drop_id).items() if k != "a.wav"} == speech

    # Remove one, rename another: the removed file is on record, the renamed one owns its content.
    (drop / "b.wav").unlink()
    (drop / "c.wav").rename(drop / "d.wav")
    changed = home.process(drop)
    assert changed.processed_shards == [f"{drop_id}-0000", f"{drop_id}-0002"]
    files = home.files(drop_id)
    assert files == {
        "a.wav": ("ok", None),
        "b.wav": ("removed", None),
        "c.wav": ("removed", None),
        "d.wav": ("ok", None),
    }
    after = home.segments_by_file(drop_id)
    assert after["d.wav"] == speech["c.wav"] and after["b.wav"] == 0 and after["c.wav"] == 0
    assert changed.summary["removed"] == 2 and changed.summary["ok"] == 2

    # Rewrite a file in place with other content: reprocessed, new identity, speech kept.
    _copy(SPEECH[0], drop / "a.wav")
    rewritten = home.process(drop)
    assert rewritten.processed_shards == [f"{drop_id}-0001"]
    assert home.files(drop_id)["a.wav"] == ("ok", None)
    ids = query(home.settings.warehouse_path, "SELECT rel_path, file_id FROM audio_files WHERE drop_id = $1", [drop_id])
    assert dict(ids.iter_rows())["a.wav"] is not None


def test_a_copy_outlives_its_original_and_overlapping_drops_never_self_duplicate(tmp_path):
    home = Home(tmp_path, shard_size=1)
    parent = tmp_path / "data"
    drop = parent / "sub"
    _copy(SPEECH[0], drop / "original.wav")
    _copy(SPEECH[0], drop / "zz copy.wav")
    first = home.process(drop)
    drop_id = first.plan.drop_id
    assert home.files(drop_id)["zz copy.wav"][0] == "duplicate"

    # An overlapping drop (the parent folder): its files are duplicates of the first drop's, and
    # running either again changes no row count.
    _copy(SPEECH[1], parent / "top.wav")
    outer = home.process(parent)
    outer_files = home.files(outer.plan.drop_id)
    assert outer_files["top.wav"] == ("ok", None)
    assert {outer_files[f"sub/{n}"][0] for n in ("original.wav", "zz copy.wav")} == {"duplicate"}
    counts = query(home.settings.warehouse_path, "SELECT count(*) AS n FROM audio_files")["n"][0]
    home.process(drop)
    home.process(parent)
    assert query(home.settings.warehouse_path, "SELECT count(*) AS n FROM audio_files")["n"][0] == counts
    all_rows = query(home.settings.warehouse_path, "SELECT drop_id, source_path, duplicate_of, reason FROM audio_files")
    # The same file seen through two drops is processed once, and the second row says so.
    same_file = all_rows.filter(pl.col("source_path") == pl.col("duplicate_of"))
    assert same_file["drop_id"].to_list() == [outer.plan.drop_id]
    assert "same file is already processed in shard" in same_file["reason"][0]

    # The original goes: its copy (in another shard, unchanged) is reopened and becomes the owner.
    (drop / "original.wav").unlink()
    after = home.process(drop)
    assert f"{drop_id}-0001" in after.processed_shards
    files = home.files(drop_id)
    assert files["original.wav"][0] == "removed" and files["zz copy.wav"] == ("ok", None)
    assert home.segments_by_file(drop_id)["zz copy.wav"] > 0


def test_a_drop_that_contains_the_home_never_ingests_the_platforms_state(tmp_path):
    drop = tmp_path / "project"
    _copy(SPEECH[0], drop / "a.wav")
    home = Home(drop, shard_size=2)  # the home is project/home: lake, instance, cache, warehouse
    reports = [home.process(drop) for _ in range(3)]
    assert [int(r.summary["files"]) for r in reports] == [1, 1, 1]
    assert reports[1].processed_shards == [] and reports[2].processed_shards == []
    assert home.files(reports[0].plan.drop_id) == {"a.wav": ("ok", None)}
