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
        {"AUDIO_PLATFORM_HOME": str(tmp_path), "AUDIO_PLATFORM_SHARD_SIZE": "7", "AUDIO_PLATFORM_ASR_MODEL": "/m"}
    )
    assert settings.shard_size == 7 and settings.resource_config == {"asr": {"model": "/m"}}


def _resources(tmp_path, **variables):
    from audio_platform.definitions import platform_resources

    return platform_resources(load_settings({"AUDIO_PLATFORM_HOME": str(tmp_path), **variables}))


def test_every_resource_field_is_reached_by_its_environment_variable(tmp_path):
    """AUDIO_PLATFORM_<RESOURCE>_<FIELD>: the text is parsed as the field's type, for the names that
    existed before (ASR) and for any field of the VAD, curation and training resources."""
    for raw, expected in (("true", True), ("1", True), ("off", False), ("No", False)):
        asr = _resources(tmp_path, AUDIO_PLATFORM_ASR_PACK_ACROSS_FILES=raw)["asr"]
        assert asr.config().pack_across_files is expected
    resources = _resources(
        tmp_path,
        AUDIO_PLATFORM_ASR_BEAM_SIZE="1",
        AUDIO_PLATFORM_ASR_CONTEXT_PAD_S="0.5",
        AUDIO_PLATFORM_ASR_LANGUAGE="null",
        AUDIO_PLATFORM_VAD_THRESHOLD="0.4",
        AUDIO_PLATFORM_CURATION_LANGUAGES="en, de",
        AUDIO_PLATFORM_CURATION_CRITERIA_OVERRIDES='{"snr_db": {"weight": 3}}',
        AUDIO_PLATFORM_TRAINING_EPOCHS="3",
        AUDIO_PLATFORM_TRAINING_TARGET_RECALL="none",
    )
    asr = resources["asr"].config()
    assert (asr.beam_size, asr.context_pad_s, asr.language) == (1, 0.5, None)
    assert resources["vad"].config().threshold == 0.4
    assert resources["curation"].policy().languages == ("en", "de")
    assert {c.name: c.weight for c in resources["curation"].criteria()}["snr_db"] == 3.0
    training = resources["training"].training_config()
    assert (training.epochs, training.target_recall) == (3, None)
    # The fields the environment set are recorded as set on the resource (its bound values).
    assert resources["asr"].model_fields_set == {"beam_size", "context_pad_s", "language"}


@pytest.mark.parametrize(
    ("variable", "raw", "message"),
    [
        (
            "AUDIO_PLATFORM_ASR_BEAM_SIZ",
            "5",
            r"AUDIO_PLATFORM_ASR_BEAM_SIZ: no such setting; known: .*AUDIO_PLATFORM_ASR_BEAM_SIZE",
        ),
        (
            "AUDIO_PLATFORM_ASR_BEAM_SIZE",
            "wide",
            r"AUDIO_PLATFORM_ASR_BEAM_SIZE='wide': Input should be a valid integer",
        ),
        ("AUDIO_PLATFORM_ASR_BEAM_SIZE", "0", r"AUDIO_PLATFORM_ASR_\*: beam_size must be an integer >= 1, got 0"),
        ("AUDIO_PLATFORM_ASR_PACK_ACROSS_FILES", "maybe", r"AUDIO_PLATFORM_ASR_PACK_ACROSS_FILES='maybe'"),
        ("AUDIO_PLATFORM_VAD_THRESHOLD", "1.5", r"AUDIO_PLATFORM_VAD_\*: threshold must be in \(0, 1\)"),
        (
            "AUDIO_PLATFORM_CURATION_CRITERIA_OVERRIDES",
            "{snr",
            r"AUDIO_PLATFORM_CURATION_CRITERIA_OVERRIDES: '\{snr' is not JSON",
        ),
        ("AUDIO_PLATFORM_TRAINING_VAL_FRACTION", "0.9", r"AUDIO_PLATFORM_TRAINING_\*: val_fraction \+ test_fraction"),
        ("AUDIO_PLATFORM_TRAINING_TRACKING_URI", "file:/x", "set AUDIO_PLATFORM_MLFLOW_TRACKING_URI_OVERRIDE instead"),
        (
            "AUDIO_PLATFORM_CURATION_MIN_DNSMOS_OVRL",
            "3.0",
            "DNSMOS is not measured: set AUDIO_PLATFORM_VAD_DNSMOS=true",
        ),
    ],
)
def test_bad_resource_variables_fail_when_the_definitions_load(tmp_path, variable, raw, message):
    with pytest.raises(ValueError, match=message):
        _resources(tmp_path, **{variable: raw})


def test_bad_values_are_explained(tmp_path):
    with pytest.raises(ValueError, match="AUDIO_PLATFORM_SHARD_SIZE"):
        load_settings({"AUDIO_PLATFORM_HOME": str(tmp_path), "AUDIO_PLATFORM_SHARD_SIZE": "many"})
    with pytest.raises(ValueError, match="shard_size"):
        Settings(home=Path(tmp_path), shard_size=0)


def test_production_store_locations(tmp_path):
    settings = load_settings(
        {
            "AUDIO_PLATFORM_HOME": str(tmp_path),
            "AUDIO_PLATFORM_LAKE_URI": "s3://bucket/lake",
            "AUDIO_PLATFORM_MLFLOW_ARTIFACT_URI": "s3://bucket/mlflow",
        }
    )
    assert settings.lake_root == "s3://bucket/lake" and settings.mlflow_artifact_root == "s3://bucket/mlflow"
    # The audio cache and the warehouse file stay on local disk whatever the lake is.
    assert settings.audio_cache.is_relative_to(tmp_path) and settings.warehouse_path.is_relative_to(tmp_path)
    elsewhere = load_settings({"AUDIO_PLATFORM_HOME": str(tmp_path), "AUDIO_PLATFORM_LAKE_URI": str(tmp_path / "l")})
    assert elsewhere.lake_root == tmp_path / "l"
    for wrong in ("gs://bucket/lake", "s3://key:secret@bucket/lake"):
        with pytest.raises(ValueError, match="lake_uri") as error:
            Settings(home=tmp_path, lake_uri=wrong)
        assert "secret" not in str(error.value)


def test_prices_for_cost_estimates_reach_the_metering_resource(tmp_path):
    from audio_platform.definitions import build_definitions

    settings = load_settings({"AUDIO_PLATFORM_HOME": str(tmp_path), "AUDIO_PLATFORM_PRICE_PER_GPU_HOUR": "2.5"})
    metering = build_definitions(settings).resources["metering"]
    assert (metering.price_per_cpu_hour, metering.price_per_gpu_hour) == (0.045, 2.5)
    with pytest.raises(ValueError, match="prices must be >= 0"):
        Settings(home=Path(tmp_path), price_per_cpu_hour=-0.01)


def test_executor_and_asr_pool_defaults_and_validation(tmp_path):
    from audio_platform.defs.vad import MODEL_POOL

    settings = load_settings({"AUDIO_PLATFORM_HOME": str(tmp_path)})
    assert (settings.executor, settings.asr_pool, settings.asr_k8s_config) == ("in_process", MODEL_POOL, None)
    assert settings.asr_op_tags == {}
    assert load_settings({"AUDIO_PLATFORM_HOME": str(tmp_path), "AUDIO_PLATFORM_EXECUTOR": "k8s"}).executor == "k8s"
    with pytest.raises(ValueError, match=r"EXECUTOR must be one of in_process, multiprocess, k8s, got 'celery'"):
        load_settings({"AUDIO_PLATFORM_HOME": str(tmp_path), "AUDIO_PLATFORM_EXECUTOR": "celery"})
    with pytest.raises(ValueError, match="AUDIO_PLATFORM_ASR_POOL"):
        Settings(home=tmp_path, asr_pool=" ")


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ('{"container_config": ', "AUDIO_PLATFORM_ASR_K8S_CONFIG is not valid JSON"),
        ('["container_config"]', "AUDIO_PLATFORM_ASR_K8S_CONFIG must be a JSON object, got list"),
        ('{"pod_spec": {}}', r"AUDIO_PLATFORM_ASR_K8S_CONFIG: unknown keys \['pod_spec'\]; dagster-k8s accepts"),
        ('{"container_config": "gpu"}', "container_config must be a JSON object, got str"),
        ('{"merge_behavior": "MERGE"}', "merge_behavior must be DEEP or SHALLOW"),
    ],
)
def test_asr_k8s_config_errors_name_the_variable(tmp_path, raw, error):
    env = {"AUDIO_PLATFORM_HOME": str(tmp_path), "AUDIO_PLATFORM_EXECUTOR": "k8s", "AUDIO_PLATFORM_ASR_K8S_CONFIG": raw}
    with pytest.raises(ValueError, match=error):
        load_settings(env)


def test_asr_k8s_config_becomes_the_dagster_k8s_op_tag_and_needs_the_k8s_executor(tmp_path):
    raw = '{"container_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}}}, "merge_behavior": "DEEP"}'
    env = {"AUDIO_PLATFORM_HOME": str(tmp_path), "AUDIO_PLATFORM_ASR_K8S_CONFIG": raw}
    # Without per-step pods nothing would read the tag: refuse rather than silently ignore it.
    with pytest.raises(ValueError, match="AUDIO_PLATFORM_ASR_K8S_CONFIG needs AUDIO_PLATFORM_EXECUTOR=k8s"):
        load_settings(env)
    settings = load_settings({**env, "AUDIO_PLATFORM_EXECUTOR": "k8s"})
    assert settings.asr_op_tags == {
        "dagster-k8s/config": {
            "container_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}}},
            "merge_behavior": "DEEP",
        }
    }


@pytest.mark.parametrize("name", ["h?", "h%41", "h\\x"])
def test_a_home_the_stores_would_misread_is_refused_before_anything_is_written(tmp_path, name):
    with pytest.raises(ValueError, match="URI or path syntax"):
        load_settings({"AUDIO_PLATFORM_HOME": str(tmp_path / name)})
    assert list(tmp_path.iterdir()) == []


def test_relative_folders_are_fixed_where_the_command_runs(tmp_path, monkeypatch):
    """The servers run in the project folder and daemon-executed runs get the CLI's values: a
    relative folder must mean the same folder everywhere."""
    monkeypatch.chdir(tmp_path)
    settings = load_settings(
        {
            "AUDIO_PLATFORM_HOME": "home",
            "AUDIO_PLATFORM_LAKE_URI": "lake",
            "AUDIO_PLATFORM_MLFLOW_ARTIFACT_URI": "s3://bucket/mlflow",
            "AUDIO_PLATFORM_ASR_MODEL": "models/whisper",
        }
    )
    assert settings.home == tmp_path / "home" and settings.lake_root == tmp_path / "lake"
    assert settings.mlflow_artifact_root == "s3://bucket/mlflow"
    assert settings.resource_config["asr"]["model"] == str(tmp_path / "models/whisper")
    # A profile name is not a folder: it stays as it is.
    profile = load_settings({"AUDIO_PLATFORM_HOME": "home", "AUDIO_PLATFORM_ASR_MODEL": "base"})
    assert profile.resource_config["asr"]["model"] == "base"
