"""Observability end to end: a small real drop through a real Dagster instance, then what a user
sees of it: asset metadata and charts, the stage_runs facts, run-log progress, and the Prometheus
exporter scraped over HTTP as a separate, long-lived process."""

from __future__ import annotations

import base64
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
import soundfile as sf
from dagster import AssetKey, DagsterInstance, Definitions, MetadataValue
from prometheus_client.parser import text_string_to_metric_families

from audio_platform.audio.inventory import QUARANTINE_CATEGORIES
from audio_platform.audio.tts import synthesize_speech
from audio_platform.curation.selection import REJECTION_RULES
from audio_platform.definitions import build_definitions
from audio_platform.defs.metering import AUDIO_METADATA_KEYS, COMMON_METADATA_KEYS
from audio_platform.observability.progress import DropProgress, StageProgress, listen_to_stages
from audio_platform.runs import DropRunReport, prepare_instance, process_drop
from audio_platform.settings import Settings
from audio_platform.storage.warehouse import query
from audio_platform_tests.conftest import TWO_ASR_THREADS

pytestmark = pytest.mark.e2e

AUDIO_PLATFORM = Path(sys.executable).with_name("audio-platform")
SHARD_ASSETS = (
    "raw_audio_files",
    "vad_segments",
    "near_duplicates",
    "transcripts",
    "words",
    "segment_scores",
    "curated_segments",
)
CHARTS = {
    "vad_segments": "segment_durations",
    "segment_scores": "score_distributions",
    "warehouse": "curated_yield_per_shard",
}
PNG_IN_MARKDOWN = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=]+)\)")


@dataclass
class Processed:
    settings: Settings
    instance: DagsterInstance
    defs: Definitions
    report: DropRunReport
    drop_updates: list[DropProgress]
    stage_updates: list[StageProgress]

    @property
    def shard(self) -> str:
        (shard,) = self.report.plan.shards
        return shard

    def metadata(self, asset: str) -> dict[str, MetadataValue]:
        event = self.instance.get_latest_materialization_event(AssetKey(asset))
        assert event is not None and event.asset_materialization is not None, asset
        return dict(event.asset_materialization.metadata)


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory) -> Processed:
    root = tmp_path_factory.mktemp("observability")
    drop = root / "drop"
    drop.mkdir()
    for name, text in (("one.wav", "Every stage reports what it used."), ("two.wav", "Metrics come from the lake.")):
        speech, rate = synthesize_speech(text)
        sf.write(drop / name, speech, rate)
    (drop / "one again.wav").write_bytes((drop / "one.wav").read_bytes())
    (drop / "notes.wav").write_bytes(b"these are not samples\n" * 20)
    (drop / "empty.wav").write_bytes(b"")
    settings = Settings(home=root / "home", shard_size=10, resource_config=TWO_ASR_THREADS)
    defs = build_definitions(settings)
    instance = prepare_instance(settings)
    drop_updates: list[DropProgress] = []
    stage_updates: list[StageProgress] = []
    with listen_to_stages(stage_updates.append):
        report = process_drop(settings, defs, drop, instance, on_progress=drop_updates.append)
    assert report.failed_shards == []
    return Processed(settings, instance, defs, report, drop_updates, stage_updates)


def test_the_warehouse_shows_every_drop_and_its_state(processed: Processed) -> None:
    metadata = processed.metadata("warehouse")
    assert (metadata["drops_done"].value, metadata["drops_processing"].value, metadata["drops_waiting"].value) == (
        1,
        0,
        0,
    )
    table = str(metadata["drops"].value)
    (row,) = [line for line in table.splitlines() if processed.report.plan.drop_id in line]
    assert "| done | 5 | 5 | 2 | 1 |" in row


def test_every_asset_carries_the_common_numbers(processed: Processed) -> None:
    for asset in (*SHARD_ASSETS, "warehouse"):
        metadata = processed.metadata(asset)
        for key in COMMON_METADATA_KEYS:
            assert isinstance(metadata[key].value, float), (asset, key)
        assert metadata["cpu_seconds"].value > 0 and metadata["estimated_cost_usd"].value > 0, asset
        # Audio figures only where the stage reads audio: no real-time factor for a selection step.
        reads_audio = asset in ("raw_audio_files", "vad_segments", "near_duplicates", "transcripts", "words")
        assert all((key in metadata) == reads_audio for key in AUDIO_METADATA_KEYS), asset
        if reads_audio:
            assert metadata["real_time_factor"].value > 0 and metadata["cost_usd_per_audio_hour"].value > 0, asset
    ingest = processed.metadata("raw_audio_files")
    assert {f"quarantined_{c}" for c in QUARANTINE_CATEGORIES} <= set(ingest)
    assert ingest["quarantined_not_audio"].value == 1 and ingest["quarantined_empty"].value == 1
    assert ingest["files"].value == 5 and ingest["audio_hours"].value > 0
    curation = processed.metadata("curated_segments")
    assert {f"rejected_{rule}" for rule in REJECTION_RULES} <= set(curation)
    counts = {key: value.value for key, value in curation.items() if isinstance(value.value, int)}
    rejected = sum(counts[f"rejected_{rule}"] for rule in REJECTION_RULES)
    assert rejected == counts["segments"] - counts["curated"]
    assert processed.metadata("transcripts")["gpu_seconds"].value == 0.0  # a CPU-only machine


def test_charts_are_embedded_pngs(processed: Processed) -> None:
    for asset, key in CHARTS.items():
        markdown = processed.metadata(asset)[key].value
        assert isinstance(markdown, str)
        match = PNG_IN_MARKDOWN.search(markdown)
        assert match is not None, (asset, key)
        assert base64.b64decode(match.group(1))[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_log_and_listener_show_stage_progress(processed: Processed) -> None:
    (run,) = [r.dagster_run for r in processed.instance.get_run_records() if r.dagster_run.job_name == "process_shard"]
    messages = [entry.user_message for entry in processed.instance.all_logs(run.run_id)]
    for final in ("ingest 5/5 files (100%)", "VAD 2/2 files (100%)"):
        assert any(message.startswith(final) for message in messages), final
    assert any(re.match(r"ASR (\d+)/\1 s of speech \(100%\), .*done in", m) for m in messages)
    progress_lines = [m for m in messages if re.match(r"(ingest|VAD|ASR) \d+/\d+ (files|s of speech)", m)]
    assert len(progress_lines) <= 3 * 4  # throttled: at most each quarter, per stage
    assert {update.label for update in processed.stage_updates} == {"ingest", "VAD", "ASR"}
    assert processed.drop_updates == [DropProgress(0, 1, 0, 5), DropProgress(1, 1, 5, 5)]


def test_stage_runs_hold_one_row_per_stage_and_partition(processed: Processed) -> None:
    sql = "SELECT stage, partition_key, run_id FROM stage_runs ORDER BY stage"

    def rows() -> pl.DataFrame:
        return query(processed.settings.warehouse_path, sql)

    before = rows()
    shard_stages = (
        "raw_audio_files",
        "vad_segments",
        "near_duplicates",
        "transcribe_segments",
        "segment_scores",
        "curated_segments",
    )
    stages = sorted((*shard_stages, "asr_evaluation"))
    stages.append("warehouse")  # unpartitioned: its partition_key is ""
    assert before["stage"].to_list() == stages
    assert before["partition_key"].to_list() == [processed.shard] * 7 + [""]
    # Re-scoring the shard replaces its scoring and selection rows; nothing is appended.
    rerun = processed.defs.resolve_job_def("rescore_shard").execute_in_process(
        partition_key=processed.shard, instance=processed.instance
    )
    after = rows()
    assert after["stage"].to_list() == stages
    changed = after.join(before, on="stage", suffix="_before").filter(pl.col("run_id") != pl.col("run_id_before"))
    assert changed["stage"].to_list() == ["curated_segments", "near_duplicates", "segment_scores"]
    assert set(changed["run_id"]) == {rerun.run_id}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def exporter(processed: Processed) -> Iterator[str]:
    """``audio-platform metrics`` as its own process, like a Deployment next to the runs."""
    port = _free_port()
    process = subprocess.Popen(
        [str(AUDIO_PLATFORM), "metrics", "--port", str(port)],
        env={**os.environ, "AUDIO_PLATFORM_HOME": str(processed.settings.home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url, timeout=5).close()
                break
            except (ConnectionError, urllib.error.URLError):
                assert process.poll() is None, process.communicate()[1].decode(errors="replace")
                assert time.monotonic() < deadline, "the exporter did not start within 60 s"
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            # It stops cleanly on SIGTERM (how Kubernetes stops its pod), even if inherited blocked.
            assert process.wait(timeout=30) == 0
        finally:
            process.kill()  # no-op once it has exited


def test_exporter_serves_metrics_from_the_lake(processed: Processed, exporter: str) -> None:
    with urllib.request.urlopen(exporter, timeout=30) as response:
        text = response.read().decode()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    p = "audio_platform_"
    assert samples[(f"{p}warehouse_up", ())] == 1
    assert [samples[(f"{p}files", (("status", s),))] for s in ("ok", "quarantined", "duplicate")] == [2, 2, 1]
    assert samples[(f"{p}quarantined_files", (("category", "not_audio"),))] == 1
    assert samples[(f"{p}quarantined_files", (("category", "empty"),))] == 1
    curated = query(processed.settings.warehouse_path, "SELECT count(*) AS n FROM curated_segments")["n"][0]
    assert samples[(f"{p}curated_segments", ())] == curated
    assert samples[(f"{p}stage_duration_seconds_gcount", (("stage", "transcripts"),))] == 1
    assert samples[(f"{p}stage_real_time_factor_ratio", (("stage", "vad_segments"),))] > 0
    assert samples[(f"{p}dagster_runs", (("status", "SUCCESS"),))] >= 2
