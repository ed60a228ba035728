"""The conservation checks fail when the lake breaks conservation, and block what comes after.

A tiny real drop (speech, a broken file, a duplicate) is processed once; then each test tampers
with one shard table in the lake the way a bug would (a lost row, a repeated row, a missing
reason) and runs the checks alone, as a Dagster job over the same instance and partition. The
untampered lake passes, so each failure is the tampering's doing.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
import soundfile as sf
from dagster import AssetCheckKey, AssetKey, DagsterInstance, Definitions

from audio_platform.audio.inventory import InventoryRecord
from audio_platform.audio.tts import synthesize_speech
from audio_platform.definitions import build_definitions
from audio_platform.defs import ingest
from audio_platform.defs.curation import every_segment_has_a_decision
from audio_platform.defs.ingest import every_input_accounted_for
from audio_platform.defs.transcription import every_segment_transcribed
from audio_platform.runs import prepare_instance, process_drop
from audio_platform.settings import Settings
from audio_platform.storage.lake import Lake
from audio_platform.storage.tables import AUDIO_FILES, CURATION_DECISIONS, TRANSCRIPTS
from audio_platform_tests.conftest import TWO_ASR_THREADS

pytestmark = pytest.mark.e2e

INPUTS = every_input_accounted_for.check_key
DECISIONS = every_segment_has_a_decision.check_key
TRANSCRIBED = every_segment_transcribed.check_key
CONSERVATION_CHECKS = (INPUTS, DECISIONS, TRANSCRIBED)


@dataclass
class Processed:
    settings: Settings
    instance: DagsterInstance
    defs: Definitions
    shard: str

    @property
    def lake(self) -> Lake:
        return Lake(self.settings.lake_root)

    def run_checks(self) -> dict[AssetCheckKey, bool]:
        """Run only the conservation checks for the shard: the process_shard job cut down to them."""
        job = self.defs.resolve_job_def("process_shard").get_subset(asset_check_selection=set(CONSERVATION_CHECKS))
        result = job.execute_in_process(partition_key=self.shard, instance=self.instance, raise_on_error=False)
        return {e.asset_check_key: e.passed for e in result.get_asset_check_evaluations()}


def _build_drop(folder: Path) -> None:
    folder.mkdir()
    speech, rate = synthesize_speech("Every file and every segment is accounted for.")
    sf.write(folder / "speech.wav", speech, rate)
    sf.write(folder / "speech2.wav", synthesize_speech("Nothing is lost and nothing crashes.")[0], rate)
    shutil.copyfile(folder / "speech.wav", folder / "speech copy.wav")
    (folder / "broken.wav").write_bytes(b"not audio at all\n" * 10)


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory) -> Processed:
    root = tmp_path_factory.mktemp("conservation")
    _build_drop(root / "drop")
    settings = Settings(home=root / "home", shard_size=10, resource_config=TWO_ASR_THREADS)
    defs = build_definitions(settings)
    instance = prepare_instance(settings)
    report = process_drop(settings, defs, root / "drop", instance)
    assert report.failed_shards == [] and report.failed_checks == [] and report.check_warnings == []
    (shard,) = report.plan.shards
    return Processed(settings, instance, defs, shard)


@pytest.fixture
def tamper(processed: Processed) -> Iterator[Callable[[str, Callable[[pl.DataFrame], pl.DataFrame]], None]]:
    """Rewrite one shard table through a function; the original is put back afterwards."""
    saved: dict[Path, bytes] = {}

    def apply(table: str, change: Callable[[pl.DataFrame], pl.DataFrame]) -> None:
        path = processed.lake.shard_path(table, processed.shard)
        saved.setdefault(path, path.read_bytes())
        processed.lake.write(table, processed.shard, change(processed.lake.read(table, processed.shard)))

    yield apply
    for path, data in saved.items():
        path.write_bytes(data)


def test_the_untouched_lake_passes_every_conservation_check(processed: Processed) -> None:
    assert processed.run_checks() == {INPUTS: True, DECISIONS: True, TRANSCRIBED: True}
    files = processed.lake.read(AUDIO_FILES.name, processed.shard)
    assert sorted(files["status"].to_list()) == ["duplicate", "ok", "ok", "quarantined"]
    assert processed.lake.read(TRANSCRIPTS.name, processed.shard).height >= 2


def _first_where(column: str, value: object) -> Callable[[pl.DataFrame], pl.DataFrame]:
    """Drop the first row whose ``column`` equals ``value``."""

    def change(frame: pl.DataFrame) -> pl.DataFrame:
        index = frame[column].to_list().index(value)
        return frame.slice(0, index).vstack(frame.slice(index + 1))

    return change


@pytest.mark.parametrize(
    ("table", "change", "failing"),
    [
        (AUDIO_FILES.name, _first_where("status", "ok"), INPUTS),
        (AUDIO_FILES.name, _first_where("status", "quarantined"), INPUTS),
        (AUDIO_FILES.name, lambda f: pl.concat([f, f.head(1)]), INPUTS),
        (
            AUDIO_FILES.name,
            lambda f: f.with_columns(reason=pl.when(pl.col("status") == "duplicate").then(None).otherwise("reason")),
            INPUTS,
        ),
        (AUDIO_FILES.name, lambda f: f.with_columns(status=pl.lit("processed")), INPUTS),
        (CURATION_DECISIONS.name, lambda f: f.tail(-1), DECISIONS),
        (CURATION_DECISIONS.name, lambda f: f.with_columns(selected=pl.lit(False), rejection_reason=None), DECISIONS),
        (CURATION_DECISIONS.name, lambda f: pl.concat([f, f.head(1)]), DECISIONS),
        (TRANSCRIPTS.name, lambda f: f.tail(-1), TRANSCRIBED),
        (TRANSCRIPTS.name, lambda f: pl.concat([f, f.head(1)]), TRANSCRIBED),
        (TRANSCRIPTS.name, lambda f: f.with_columns(segment_id=pl.col("segment_id") + "-x"), TRANSCRIBED),
    ],
    ids=[
        "audio_files-lost-ok-row",
        "audio_files-lost-quarantined-row",
        "audio_files-repeated-row",
        "audio_files-duplicate-without-reason",
        "audio_files-unknown-status",
        "decisions-lost-row",
        "decisions-rejection-without-reason",
        "decisions-repeated-row",
        "transcripts-lost-row",
        "transcripts-repeated-row",
        "transcripts-unknown-segment",
    ],
)
def test_a_broken_table_fails_its_check(
    processed: Processed,
    tamper: Callable[[str, Callable[[pl.DataFrame], pl.DataFrame]], None],
    table: str,
    change: Callable[[pl.DataFrame], pl.DataFrame],
    failing: AssetCheckKey,
) -> None:
    tamper(table, change)
    results = processed.run_checks()
    assert results == {key: key != failing for key in (INPUTS, DECISIONS, TRANSCRIBED)}


def test_a_failed_inventory_check_blocks_the_rest_of_the_shard(
    processed: Processed,
    tamper: Callable[[str, Callable[[pl.DataFrame], pl.DataFrame]], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Blocking, in a real run: if the inventory lost a file, VAD and everything after it do not run."""
    tamper(AUDIO_FILES.name, lambda frame: frame)  # only to have the run's rewrite undone afterwards
    real_inventory_file = ingest.inventory_file
    first: list[InventoryRecord] = []

    def loses_all_but_the_first(*args: object, **kwargs: object) -> InventoryRecord:
        record = real_inventory_file(*args, **kwargs)  # type: ignore[arg-type]
        first.append(first[0] if first else record)
        return first[-1]  # every file reported as the first one: the others are lost

    monkeypatch.setattr(ingest, "inventory_file", loses_all_but_the_first)
    job = processed.defs.resolve_job_def("process_shard")
    result = job.execute_in_process(partition_key=processed.shard, instance=processed.instance, raise_on_error=False)
    assert not result.success
    evaluations = {e.asset_check_key: e.passed for e in result.get_asset_check_evaluations()}
    assert evaluations[INPUTS] is False
    materialized = {m.asset_key for m in result.get_asset_materialization_events() if m.asset_key}
    assert materialized == {AssetKey("raw_audio_files")}
