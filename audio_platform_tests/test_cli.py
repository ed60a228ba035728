"""The `audio-platform` command as a user runs it: the demo drop end to end, then SQL."""

import json

import pytest

from audio_platform.cli import main
from audio_platform_tests.storage.test_export import check_demo_exports


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIO_PLATFORM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AUDIO_PLATFORM_ASR_CPU_THREADS", "2")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "unused"))  # process sets its own
    return tmp_path / "home"


def test_demo_process_then_sql(home, capsys, tmp_path):
    assert main(["process", "--demo"]) == 0
    out, err = capsys.readouterr()
    assert "files 17: ok 14, quarantined 2, duplicate 1" in out
    # stderr is no terminal here: plain progress lines, a shard's end always among them, and
    # none of the Dagster events that would drown them (--log-level defaults to warning).
    progress = [line for line in err.splitlines() if line.startswith("progress: ")]
    assert progress[0].startswith("progress: 0/1 shards, 0/17 files, ")
    assert progress[-1].startswith("progress: 1/1 shards, 17/17 files, ")
    assert "RUN_START" not in err and "\r" not in err
    assert "real-time factor" in out
    assert (home / "warehouse.duckdb").is_file() and (home / "dagster" / "dagster.yaml").is_file()

    assert main(["sql", "SELECT status, count(*) AS n FROM audio_files GROUP BY 1 ORDER BY 1", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows == [{"status": "duplicate", "n": 1}, {"status": "ok", "n": 14}, {"status": "quarantined", "n": 2}]

    assert main(["drops"]) == 0
    drops_out = capsys.readouterr().out
    assert "done" in drops_out and "registered: 17 new" in drops_out and "shape:" not in drops_out

    assert main(["sql", "SELECT count(*) AS curated FROM curated_segments", "--format", "csv"]) == 0
    curated = int(capsys.readouterr().out.splitlines()[1])
    assert curated >= 10

    # The demo drop carries its reference transcripts (metadata.csv): accuracy per source, one row per group.
    assert main(["evaluate"]) == 0
    table = capsys.readouterr().out
    assert table.startswith("ASR accuracy by source (tiny.en)") and "normalize_text" in table
    assert "(drop root)" in table and "│ all " in table and "│ str " not in table
    assert main(["evaluate", "no-such-drop-123456"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no processed drop 'no-such-drop-123456'") and "\n" not in err
    assert main(["evaluate", "--depth", "0"]) == 1
    assert "--depth must be at least 1" in capsys.readouterr().err

    # The curated set as NeMo and Lhotse manifests, checked against the warehouse (on this home:
    # processing the demo once serves both).
    check_demo_exports(home, tmp_path / "exports", capsys)

    # Re-processing the same drop is idempotent: same shards, same counts.
    assert main(["process", "--demo"]) == 0
    assert "files 17: ok 14, quarantined 2, duplicate 1" in capsys.readouterr().out


def test_process_needs_a_folder(home, capsys):
    assert main(["process"]) == 2
    assert "give a folder" in capsys.readouterr().err


def test_sql_before_any_run_explains(home, capsys):
    assert main(["sql", "SELECT 1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no warehouse at ") and "audio-platform process" in err


def test_train_rejects_unconfigured_keywords(home, capsys):
    assert main(["train", "--keyword", "banana"]) == 2
    assert "AUDIO_PLATFORM_KEYWORDS" in capsys.readouterr().err


def test_sql_refuses_writes_and_file_access_with_one_line(home, capsys, tmp_path):
    from audio_platform.storage.lake import Lake
    from audio_platform.storage.tables import LAKE_TABLES
    from audio_platform.storage.warehouse import rebuild_warehouse

    rebuild_warehouse(home / "warehouse.duckdb", Lake(home / "lake"), LAKE_TABLES)
    for sql, expected in [
        (f"COPY audio_files TO '{tmp_path}/out.csv'", "the warehouse is read-only: COPY statements are refused"),
        ("DELETE FROM audio_files", "the warehouse is read-only: DELETE statements are refused"),
        ("SELECT * FROM read_text('/etc/passwd')", "Permission Error"),
    ]:
        assert main(["sql", sql]) == 1
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err
    assert not (tmp_path / "out.csv").exists()


def test_models_list_takes_any_name(home, capsys):
    assert main(["models", "list", "--name", "it's"]) == 0
    assert main(["models", "list", "--name", 'say "six"']) == 0


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda root: root / "nope", "does not exist; give a folder of audio files"),
        (lambda root: (root / "a.wav").write_bytes(b"RIFF") and root / "a.wav", "is a file; give the folder"),
    ],
)
def test_process_rejects_a_bad_path_in_one_line_before_loading_anything(home, capsys, tmp_path, make, expected):
    target = make(tmp_path)
    assert main(["process", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err
    assert not (home / "dagster").exists()  # nothing was set up for a path that cannot be processed


def test_process_says_when_a_folder_holds_no_audio(home, capsys, tmp_path):
    empty = tmp_path / "empty"
    (empty / ".git").mkdir(parents=True)
    assert main(["process", str(empty)]) == 1
    out, err = capsys.readouterr()
    assert "no audio found in" in out and "BetaWarning" not in err and "real-time factor" not in out


def test_errors_are_one_line_unless_debug(home, capsys):
    assert main(["models", "list", "--name", "a'b\"c"]) == 1
    err = capsys.readouterr().err  # (MLflow may log the creation of its store first)
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and "--debug" in last and "Traceback" not in err
    with pytest.raises(ValueError, match="both quote characters"):
        main(["models", "list", "--name", "a'b\"c", "--debug"])
    with pytest.raises(ValueError, match="both quote characters"):
        main(["--debug", "models", "list", "--name", "a'b\"c"])


def test_export_says_when_there_is_nothing_to_export(home, capsys, tmp_path):
    from audio_platform.storage.lake import Lake
    from audio_platform.storage.tables import LAKE_TABLES
    from audio_platform.storage.warehouse import rebuild_warehouse

    out = tmp_path / "manifests"
    assert main(["export", "--format", "nemo", str(out)]) == 1  # before any run: no warehouse
    err = capsys.readouterr().err
    assert err.startswith("error: no warehouse at ") and err.count("\n") == 1
    rebuild_warehouse(home / "warehouse.duckdb", Lake(home / "lake"), LAKE_TABLES)
    assert main(["export", "--format", "lhotse", str(out)]) == 0
    assert capsys.readouterr().out.startswith("nothing to export: no curated segments in any processed drop")
    assert not out.exists()
    assert main(["export", "--format", "nemo", str(out), "--drop", "no-such-drop-123456"]) == 1
    assert "no processed drop 'no-such-drop-123456'" in capsys.readouterr().err
    assert main(["export", "--format", "nemo", str(home / "out")]) == 1
    assert "inside the platform home" in capsys.readouterr().err
