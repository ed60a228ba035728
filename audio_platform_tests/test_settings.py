from pathlib import Path

import pytest

from audio_platform.settings import Settings, load_settings


def test_defaults_live_under_home(tmp_path):
    settings = load_settings({"AUDIO_PLATFORM_HOME": str(tmp_path)})
    assert settings.home == tmp_path.resolve()
    assert settings.lake_root == tmp_path / "lake"
    assert settings.dagster_home == tmp_path / "dagster"
    assert settings.mlflow_tracking_uri.startswith("sqlite:///") and str(tmp_path) in settings.mlflow_tracking_uri


def test_environment_overrides_are_typed(tmp_path):
    settings = load_settings(
        {"AUDIO_PLATFORM_HOME": str(tmp_path), "AUDIO_PLATFORM_SHARD_SIZE": "7", "AUDIO_PLATFORM_ASR_MODEL_PATH": "/m"}
    )
    assert settings.shard_size == 7 and settings.asr_model_path == "/m"


def test_bad_values_are_explained(tmp_path):
    with pytest.raises(ValueError, match="AUDIO_PLATFORM_SHARD_SIZE"):
        load_settings({"AUDIO_PLATFORM_HOME": str(tmp_path), "AUDIO_PLATFORM_SHARD_SIZE": "many"})
    with pytest.raises(ValueError, match="shard_size"):
        Settings(home=Path(tmp_path), shard_size=0)
