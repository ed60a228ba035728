import os
import subprocess
import sys

from dagster import AssetKey, Definitions

from audio_platform.definitions import build_definitions
from audio_platform.settings import Settings
from audio_platform_tests.conftest import REPO_ROOT

EXPECTED_ASSETS = {
    "raw_audio_files",
    "vad_segments",
    "transcripts",
    "words",
    "segment_scores",
    "curated_segments",
    "warehouse",
    "keyword_dataset",
    "keyword_model",
}


def test_definitions_hold_the_whole_graph(tmp_path):
    defs = build_definitions(Settings(home=tmp_path))
    Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    assert {key.to_user_string() for key in graph.get_all_asset_keys()} == EXPECTED_ASSETS
    checks = {key.name for key in graph.asset_check_keys}
    assert {
        "every_input_accounted_for",
        "segments_inside_files_and_disjoint",
        "every_segment_transcribed",
        "scores_in_unit_interval",
        "every_segment_has_a_decision",
        "curated_set_not_empty",
        "words_inside_their_segments",
        "champion_promotion",
    } <= checks
    assert graph.get(AssetKey("vad_segments")).partitions_def is not None
    assert {job.name for job in defs.resolve_all_job_defs()} >= {
        "process_shard",
        "rescore_shard",
        "refresh_warehouse",
        "train_keyword",
    }


def test_dagster_cli_validates_the_workspace(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "AUDIO_PLATFORM_HOME": str(tmp_path / "home")}
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
