import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from dagster import AssetKey, Definitions, in_process_executor, multi_or_in_process_executor

from audio_platform.definitions import build_definitions
from audio_platform.runs import CODE_LOCATION, DEFINITIONS_MODULE
from audio_platform.settings import Settings
from audio_platform_tests.conftest import REPO_ROOT

EXPECTED_ASSETS = {
    "raw_audio_files",
    "vad_segments",
    "transcripts",
    "words",
    "segment_scores",
    "curated_segments",
    "near_duplicates",
    "asr_evaluation",
    "curated_exports",
    "warehouse",
    "keyword_dataset",
    "keyword_model",
    "keyword_champion",
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
        "timestamps_inside_segments",
        "candidate_meets_floors",
    } <= checks
    assert graph.get(AssetKey("vad_segments")).partitions_def is not None
    assert {job.name for job in defs.resolve_all_job_defs()} >= {
        "process_shard",
        "rescore_shard",
        "refresh_warehouse",
        "train_keyword",
    }


def test_by_default_asr_shares_the_model_pool_and_runs_every_step_in_the_runs_process(tmp_path):
    defs = build_definitions(Settings(home=tmp_path))
    asr = defs.resolve_assets_def(AssetKey("transcripts"))
    assert asr.op.name == "transcribe_segments"  # the stage name in stage_runs and the metrics
    assert asr.op.pool == defs.resolve_assets_def(AssetKey("vad_segments")).op.pool == "audio_models"
    assert "dagster-k8s/config" not in asr.op.tags
    for job in defs.resolve_all_job_defs():
        assert job.executor_def is in_process_executor, job.name
    multiprocess = build_definitions(Settings(home=tmp_path, executor="multiprocess"))
    assert all(job.executor_def is multi_or_in_process_executor for job in multiprocess.resolve_all_job_defs())


def _gpu_settings_env() -> dict[str, str]:
    """The GPU example's settings ConfigMap (k8s/gpu-settings.yaml) as environment variables."""
    (configmap,) = yaml.safe_load_all((REPO_ROOT / "k8s" / "gpu-settings.yaml").read_text(encoding="utf-8"))
    return dict(configmap["data"])


# `dagster definitions validate` on workspace.yaml (what the webserver and the Helm code server
# load) and `dg check defs` on the dg project (what `dg dev` behind `audio-platform serve` loads).
VALIDATORS = {
    "workspace": [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
    "dg": [str(Path(sys.executable).with_name("dg")), "check", "defs", "--use-active-venv"],
}


@pytest.mark.parametrize(
    ("validator", "gpu"),
    [("workspace", False), ("workspace", True), ("dg", False)],
    ids=["default", "gpu-settings", "dg"],
)
def test_dagster_cli_validates_the_definitions(tmp_path, validator, gpu):
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path),
        "AUDIO_PLATFORM_HOME": str(tmp_path / "home"),
        "VIRTUAL_ENV": sys.prefix,
    }
    if gpu:
        # The code location as the GPU example's pods load it: k8s executor, GPU pool, op tag.
        env.update(_gpu_settings_env())
    result = subprocess.run(VALIDATORS[validator], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    if validator == "dg":
        assert "All definitions loaded successfully" in result.stdout + result.stderr


def test_every_entry_point_names_one_code_location():
    """workspace.yaml, `dagster` and `dg` configuration and the CLI's runs name the same location,
    so the UI files runs of the CLI, the sensors and its own launches under one code location."""
    (entry,) = yaml.safe_load((REPO_ROOT / "workspace.yaml").read_text())["load_from"]
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    dg_project = pyproject["tool"]["dg"]["project"]
    assert entry["python_module"]["location_name"] == CODE_LOCATION
    assert pyproject["tool"]["dagster"]["code_location_name"] == CODE_LOCATION
    assert dg_project["code_location_name"] == CODE_LOCATION
    assert entry["python_module"]["module_name"] == DEFINITIONS_MODULE == dg_project["code_location_target_module"]
