"""Production stores by configuration, on real servers started by the tests: a shard of the real
corpus runs through Dagster with the lake on an S3-compatible object store (moto), and with the
Dagster instance on PostgreSQL in the Helm chart's storage shape. Nothing in the platform is told it
is under test: the lake is one setting (AUDIO_PLATFORM_LAKE_URI) plus the AWS environment, the
instance is a dagster.yaml.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import psycopg2
import pytest
import yaml
from dagster import AssetKey, DagsterInstance
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from audio_platform.definitions import build_definitions
from audio_platform.defs.scoring import SEGMENT_SCORES
from audio_platform.runs import REPO_INSTANCE_YAML, DropRunReport, prepare_instance, process_drop
from audio_platform.settings import Settings, load_settings
from audio_platform.storage.lake import Lake
from audio_platform.storage.tables import LAKE_TABLES
from audio_platform.storage.warehouse import query
from audio_platform_tests.conftest import CORPUS, REPO_ROOT, TWO_ASR_THREADS, requires_corpus
from audio_platform_tests.servers import PostgresServer, S3Server

pytestmark = [pytest.mark.e2e, requires_corpus]

HELM_VALUES = yaml.safe_load((REPO_ROOT / "k8s" / "values.yaml").read_text())
SPEECH = "audio/whisper/jfk.flac"
SHARD_INPUTS = (SPEECH, "audio/an4/an311-fkai-b.wav")
# What a shard run writes: every contract table keyed by shard, and the scores.
SHARD_TABLES = {t.name for t in LAKE_TABLES if "shard" in t.schema} | {SEGMENT_SCORES}
SHARD_ASSETS = {
    "raw_audio_files",
    "vad_segments",
    "near_duplicates",
    "transcripts",
    "words",
    "segment_scores",
    "curated_segments",
    "asr_evaluation",
}


def _drop(root: Path) -> Path:
    """Two recordings and a byte-identical copy of one (which the content index must catch)."""
    drop = root / "drop"
    drop.mkdir()
    for rel in SHARD_INPUTS:
        shutil.copyfile(CORPUS / rel, drop / Path(rel).name)
    shutil.copyfile(CORPUS / SPEECH, drop / "jfk copy.flac")
    return drop


def _process(settings: Settings, instance: DagsterInstance, root: Path) -> tuple[str, DropRunReport]:
    report = process_drop(settings, build_definitions(settings), _drop(root), instance)
    assert report.failed_shards == [] and report.failed_checks == [] and report.check_warnings == []
    (shard,) = report.plan.shards
    summary = report.summary
    assert (summary["files"], summary["ok"], summary["duplicate"]) == (3, 2, 1)
    assert summary["curated"] >= 1
    return shard, report


def test_a_shard_runs_with_the_lake_on_the_object_store(s3_server: S3Server, tmp_path: Path) -> None:
    bucket = s3_server.new_bucket()
    settings = load_settings(
        {
            "AUDIO_PLATFORM_HOME": str(tmp_path / "home"),
            "AUDIO_PLATFORM_LAKE_URI": f"s3://{bucket}/lake",
            "AUDIO_PLATFORM_ASR_CPU_THREADS": "2",
        }
    )
    shard, report = _process(settings, prepare_instance(settings), tmp_path)

    # Every shard table is an object in the bucket, read back here with a fresh Lake.
    keys = s3_server.keys(bucket)
    assert {f"lake/{table}/shard={shard}/data.parquet" for table in SHARD_TABLES} <= set(keys)
    # One claim per distinct content: the copy lost to the original.
    assert len([key for key in keys if key.startswith("lake/_content_index/")]) == 2
    assert not (settings.home / "lake").exists(), "no lake table may land on local disk"
    lake = Lake(f"s3://{bucket}/lake")
    files = lake.read("audio_files", shard)
    assert sorted(files["status"].to_list()) == ["duplicate", "ok", "ok"]
    transcripts = lake.read("transcripts", shard)
    assert "ask not what your country can do for you" in " ".join(transcripts["text"].to_list()).lower()
    curated = lake.read("curated_segments", shard)
    assert curated.height == report.summary["curated"]
    # The warehouse (a local DuckDB file) has views over the bucket.
    assert query(settings.warehouse_path, "SELECT count(*) AS n FROM transcripts")["n"][0] == transcripts.height


def _postgres_instance(server: PostgresServer, dagster_home: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The repository's dagster.yaml plus PostgreSQL storage exactly as the Helm chart renders it
    (password from DAGSTER_PG_PASSWORD); returns the database name."""
    database = server.create_database()
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", server.password)
    postgres_db = {
        "username": server.user,
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "hostname": server.host,
        "db_name": database,
        "port": server.port,
        # As k8s/values.yaml sets it: SQLAlchemy 2.1's default PostgreSQL driver is psycopg 3, which
        # dagster-postgres does not support.
        "scheme": HELM_VALUES["postgresql"]["postgresqlScheme"],
    }
    config = yaml.safe_load(REPO_INSTANCE_YAML.read_text())
    for key, module, cls in (
        ("run_storage", "dagster_postgres.run_storage", "PostgresRunStorage"),
        ("event_log_storage", "dagster_postgres.event_log", "PostgresEventLogStorage"),
        ("schedule_storage", "dagster_postgres.schedule_storage", "PostgresScheduleStorage"),
    ):
        config[key] = {"module": module, "class": cls, "config": {"postgres_db": postgres_db}}
    dagster_home.mkdir(parents=True)
    (dagster_home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return database


def test_the_dagster_instance_on_postgres_records_the_shard_run(
    postgres_server: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = _postgres_instance(postgres_server, tmp_path / "dagster", monkeypatch)
    with DagsterInstance.from_config(str(tmp_path / "dagster")) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        shard, _ = _process(Settings(home=tmp_path / "home", resource_config=TWO_ASR_THREADS), instance, tmp_path)
        event = instance.get_latest_materialization_event(AssetKey("curated_segments"))
        assert event is not None and event.dagster_event is not None and event.dagster_event.partition == shard

    # Read back from PostgreSQL itself, not through Dagster.
    connection = psycopg2.connect(postgres_server.url(database))
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pipeline_name, status FROM runs ORDER BY create_timestamp")
            runs = cursor.fetchall()
            cursor.execute(
                "SELECT DISTINCT asset_key, partition FROM event_logs "
                "WHERE dagster_event_type = 'ASSET_MATERIALIZATION'"
            )
            rows = cursor.fetchall()
            cursor.execute("SELECT partition FROM dynamic_partitions WHERE partitions_def_name = 'shards'")
            partitions = cursor.fetchall()
    finally:
        connection.close()
    assert runs == [("process_shard", "SUCCESS"), ("refresh_warehouse", "SUCCESS")]
    materialized = {(AssetKey(json.loads(key)).to_user_string(), partition) for key, partition in rows}
    assert {(asset, shard) for asset in SHARD_ASSETS} | {("warehouse", None)} == materialized
    assert partitions == [(shard,)]
