"""Every procedure of docs/runbook.md, done the way the runbook says, on a real platform home:
the demo drop processed through a SQLite Dagster instance, MLflow with a SQLite store.

The runbook's `audio-platform` lines are parsed by the real CLI parser, and the re-score run config
is read from the runbook itself, so the document cannot drift from what these tests run.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from pathlib import Path

import pytest
import yaml
from dagster import RunsFilter

from audio_platform.cli import build_parser, main
from audio_platform.reference import documented_tables
from audio_platform.runs import prepare_instance
from audio_platform.settings import Settings
from audio_platform.storage.lake import Lake
from audio_platform.storage.tables import LAKE_TABLES
from audio_platform.storage.warehouse import query, rebuild_warehouse
from audio_platform.training.dataset import load_keyword_dataset
from audio_platform.training.evaluate import evaluate_bundle
from audio_platform.training.registry import log_and_register, mlflow_client
from audio_platform.training.train import train_keyword_model
from audio_platform_tests.conftest import REPO_ROOT, demo_shard_home
from audio_platform_tests.training.helpers import FAST, make_tone_manifest

RUNBOOK = (REPO_ROOT / "docs" / "runbook.md").read_text(encoding="utf-8")
SHARD_TABLES = ("audio_files", "segments", "transcripts", "words", "segment_scores", "curated_segments")
# A tiny budget and open floors: these tests are about the procedure, not the model's accuracy.
QUICK_TRAINING = {
    "epochs": 3,
    "steps_per_epoch": 8,
    "batch_size": 32,
    "device": "cpu",
    "synthetic_positives": False,
    "min_f1": 0.0,
    "max_false_accepts_per_hour": 1e9,
}


def runbook_commands() -> list[list[str]]:
    """The arguments of every `audio-platform` command in the runbook's shell blocks."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", RUNBOOK, re.DOTALL):
        for line in block.splitlines():
            words = [w for w in shlex.split(line, comments=True) if not re.match(r"^[A-Z_]+=", w)]
            if words and words[0] == "audio-platform":
                commands.append(words[1:])
    return commands


def runbook_file(name: str) -> str:
    """The code block of the runbook that starts with the comment ``# <name>``."""
    found = re.search(rf"```yaml\n# {re.escape(name)}\n(.*?)```", RUNBOOK, re.DOTALL)
    assert found, f"docs/runbook.md has no yaml block for {name}"
    return found.group(1)


def test_every_runbook_command_is_a_valid_cli_command() -> None:
    commands = runbook_commands()
    assert {argv[0] for argv in commands} >= {"reprocess", "rescore", "train", "models", "sql", "detect"}
    parser = build_parser()
    for argv in commands:
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"the runbook's `audio-platform {shlex.join(argv)}` is not a valid command")


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, str]:
    return demo_shard_home(tmp_path_factory.mktemp("runbook"))


@pytest.fixture
def operator(demo_home: tuple[Settings, str], monkeypatch: pytest.MonkeyPatch) -> tuple[Settings, str]:
    """The demo home as the CLI's environment."""
    settings, shard = demo_home
    monkeypatch.setenv("AUDIO_PLATFORM_HOME", str(settings.home))
    monkeypatch.setenv("AUDIO_PLATFORM_ASR_CPU_THREADS", "2")
    monkeypatch.setenv("DAGSTER_HOME", str(settings.dagster_home))  # restored after: the CLI sets it too
    return settings, shard


def _shard_rows(settings: Settings, shard: str) -> dict[str, int]:
    return {
        table: int(query(settings.warehouse_path, f"SELECT count(*) FROM {table} WHERE shard = $1", [shard]).item())
        for table in SHARD_TABLES
    }


def _scores(settings: Settings, shard: str) -> dict[str, float]:
    sql = "SELECT segment_id, topsis_score FROM segment_scores WHERE shard = $1"
    return dict(query(settings.warehouse_path, sql, [shard]).iter_rows())


def test_reprocess_a_shard(operator: tuple[Settings, str], capsys: pytest.CaptureFixture[str]) -> None:
    settings, shard = operator
    instance = prepare_instance(settings)
    runs = RunsFilter(job_name="process_shard", tags={"dagster/partition": shard})
    before, runs_before = _shard_rows(settings, shard), instance.get_runs_count(runs)

    assert main(["reprocess", shard]) == 0
    assert "process_shard: 1 of 1 shard(s) succeeded" in capsys.readouterr().out
    assert instance.get_runs_count(runs) == runs_before + 1
    assert _shard_rows(settings, shard) == before  # the shard's rows were replaced, not appended

    assert main(["reprocess", "no-such-shard"]) == 2
    assert "no-such-shard" in capsys.readouterr().err


def test_rescore_with_new_weights_never_retranscribes(operator: tuple[Settings, str], tmp_path: Path) -> None:
    settings, shard = operator
    config = tmp_path / "rescore.yaml"
    config.write_text(runbook_file("rescore.yaml"), encoding="utf-8")
    min_score = yaml.safe_load(config.read_text())["resources"]["curation"]["config"]["min_score"]
    lake = Lake(settings.lake_root)
    asr_outputs = [Path(str(lake.shard_path(table, shard))) for table in ("segments", "transcripts", "words")]
    written = [path.stat().st_mtime_ns for path in asr_outputs]
    default_scores = _scores(settings, shard)

    assert main(["rescore", shard, "--config", str(config)]) == 0
    new_scores = _scores(settings, shard)
    assert new_scores.keys() == default_scores.keys() and new_scores != default_scores
    curated = query(settings.warehouse_path, "SELECT topsis_score FROM curated_segments WHERE shard = $1", [shard])
    assert curated.height > 0 and curated["topsis_score"].min() >= min_score
    assert [path.stat().st_mtime_ns for path in asr_outputs] == written  # VAD and ASR outputs untouched

    # Without a config the shard is back on the default weights.
    assert main(["rescore", shard]) == 0
    assert _scores(settings, shard) == default_scores


def test_add_a_keyword(
    operator: tuple[Settings, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings, _ = operator
    monkeypatch.setenv("AUDIO_PLATFORM_KEYWORDS", "six,stop")
    config = tmp_path / "quick.yaml"
    config.write_text(yaml.safe_dump({"resources": {"training": {"config": QUICK_TRAINING}}}), encoding="utf-8")

    assert main(["train", "--keyword", "stop", "--config", str(config)]) == 0
    assert "kws-stop v1" in capsys.readouterr().out
    assert main(["models", "list", "--name", "kws-stop"]) == 0
    assert "champion" in capsys.readouterr().out
    sql = "SELECT version, aliases FROM models WHERE name = 'kws-stop'"
    assert main(["sql", sql, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"version": 1, "aliases": "champion"}]

    # With keyword_clips and models in it, the warehouse now exposes every table: all are documented.
    views = query(settings.warehouse_path, "SELECT table_name FROM information_schema.tables")["table_name"]
    assert set(views) <= {table.name for table in documented_tables()}


def test_roll_back_the_champion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(home=tmp_path / "home")
    monkeypatch.setenv("AUDIO_PLATFORM_HOME", str(settings.home))
    uri = settings.mlflow_tracking_uri
    # Two registered versions of a keyword model (a 1 kHz tone stands in for the word), the second
    # promoted to champion, and the deployment's warehouse.
    (tmp_path / "clips").mkdir()
    manifest = make_tone_manifest(tmp_path / "clips")
    dataset = load_keyword_dataset(manifest)
    result = train_keyword_model(dataset, FAST)
    metrics = evaluate_bundle(result.bundle, dataset)
    where = {"tracking_uri": uri, "artifact_location": settings.mlflow_artifact_root}
    for _ in range(2):
        log_and_register(result, metrics, manifest, FAST, model_name="kws-tone", **where)
    mlflow_client(uri).set_registered_model_alias("kws-tone", "champion", "2")
    rebuild_warehouse(settings.warehouse_path, Lake(settings.lake_root), LAKE_TABLES)

    assert main(["models", "set-alias", "--name", "kws-tone", "--alias", "champion", "--version", "1"]) == 0
    assert "kws-tone@champion: version 2 -> 1" in capsys.readouterr().out
    assert str(mlflow_client(uri).get_registered_model("kws-tone").aliases["champion"]) == "1"
    sql = "SELECT version, aliases FROM models WHERE name = 'kws-tone' ORDER BY version"
    assert main(["sql", sql, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"version": 1, "aliases": "champion"}, {"version": 2, "aliases": ""}]
    assert main(["detect", "--model", "models:/kws-tone@champion", str(tmp_path / "clips" / "stream.wav")]) == 0
    assert "of 'tone'" in capsys.readouterr().out
    # A folder: its audio files are scanned (recursively) and totalled; what is not audio is skipped.
    scan = tmp_path / "scan"
    (scan / "nested").mkdir(parents=True)
    for copy in (scan / "a.wav", scan / "nested" / "b.wav", scan / os.fsdecode(b"\xff odd.wav")):
        shutil.copyfile(tmp_path / "clips" / "stream.wav", copy)
    (scan / "notes.txt").write_text("not audio", encoding="utf-8")
    assert main(["detect", "--model", "models:/kws-tone@champion", str(scan)]) == 0
    out, err = capsys.readouterr()
    assert "b.wav: " in out and "in 3 file(s), 0.004 h: " in out and "notes.txt: skipped: not audio" in err
    # A name that is not UTF-8 is printed as ls -b shows it (a terminal cannot take the raw bytes).
    assert "\\xff odd.wav: 0 detection(s)" in out and "\udcff" not in out
    assert main(["detect", "--model", "models:/kws-tone@champion", str(scan / "notes.txt")]) == 1
    assert "notes.txt: not audio" in capsys.readouterr().err
    # Audio that cannot be read would leave its hours out of the total: an error, the rest scanned.
    (scan / "nested" / "b.wav").write_bytes((scan / "a.wav").read_bytes()[:30])
    assert main(["detect", "--model", "models:/kws-tone@champion", str(scan)]) == 1
    out, err = capsys.readouterr()
    assert "in 2 file(s), 0.003 h: " in out and "b.wav: " in err and "b.wav: skipped" not in err
    (scan / "empty").mkdir()
    assert main(["detect", "--model", "models:/kws-tone@champion", str(scan / "empty")]) == 1
    assert "no audio file to scan" in capsys.readouterr().err

    assert main(["models", "set-alias", "--name", "kws-tone", "--alias", "champion", "--version", "7"]) == 2
    assert "version=7" in capsys.readouterr().err
