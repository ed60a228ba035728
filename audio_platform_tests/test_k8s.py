"""Offline validation of the Kubernetes deployment in k8s/ (no cluster, no Docker, no Helm binary).

What checks what:
- every YAML parses; Kubernetes objects and every Kubernetes-typed fragment in the Helm values
  (volumes, security contexts, resources, op-tag pod config) go through dagster_k8s's own
  validation against the `kubernetes` client's OpenAPI models, which rejects unknown keys;
- the run launcher config, rendered from the Helm values the way the chart's instance ConfigMap
  renders it, is validated against ``K8sRunLauncher.config_type()`` and then used to build a real
  ``K8sRunLauncher`` and the exact ``V1Job`` it would submit for a shard run (and, with the op tags
  of the ASR step of the definitions built from both settings ConfigMaps, for that step's pod),
  via ``construct_dagster_k8s_job``;
- those definitions: every job on ``k8s_job_executor``, the ASR step in pool ``audio_models_gpu``
  with the ``dagster-k8s/config`` tag, and on a real instance the step waits for that pool's slot;
- the rendered instance ``dagster.yaml`` passes Dagster's instance-config validation and carries the
  same queue/pool/retry settings as the repository's single-machine dagster.yaml;
- Helm value keys are checked against the keys of the chart's schema models that we use, because
  the chart's values.schema.json does not forbid unknown keys everywhere (a typo there is ignored);
- secrets are referenced by name only; the Dockerfiles run as non-root and install with the lock.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import kubernetes.client as k8s
import pytest
import yaml
from dagster import Definitions
from dagster._config import Shape, validate_config
from dagster._core.execution.api import create_execution_plan
from dagster._core.instance.config import dagster_instance_config
from dagster._core.storage.dagster_run import DagsterRun
from dagster_k8s import K8sRunLauncher, k8s_job_executor
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import (
    USER_DEFINED_K8S_CONFIG_KEY,
    USER_DEFINED_K8S_JOB_CONFIG_SCHEMA,
    UserDefinedDagsterK8sConfig,
    construct_dagster_k8s_job,
    get_user_defined_k8s_config,
)
from dagster_k8s.models import k8s_snake_case_dict

from audio_platform.cli import build_parser
from audio_platform.definitions import build_definitions
from audio_platform.defs.partitions import SHARDS
from audio_platform.defs.transcription import TRANSCRIPTS_KEY, WORDS_KEY
from audio_platform.defs.vad import MODEL_POOL
from audio_platform.runs import prepare_instance
from audio_platform.settings import ENV_PREFIX, K8S_CONFIG_TAG, K8S_STEP_CONFIG_KEYS, Settings, load_settings
from audio_platform.storage.lake import Lake
from audio_platform.storage.tables import AUDIO_FILES, SEGMENTS, TRANSCRIPTS
from audio_platform_tests.conftest import REPO_ROOT

K8S = REPO_ROOT / "k8s"
RELEASE = "dagster"
NAMESPACE = "audio-platform"
CPU_IMAGE_TAG = "0.1.0"
GPU_POOL = "audio_models_gpu"
ASR_STEP = "transcribe_segments"

# Keys of the chart's schema models (helm/dagster/schema/schema/charts/...) that these values may
# use; `existingSecret` is passed through to the bitnami PostgreSQL subchart.
CHART_KEYS: dict[str, set[str]] = {
    name: set(keys.split())
    for name, keys in {
        "": "global generatePostgresqlPasswordSecret telemetry dagsterWebserver dagster-user-deployments "
        "runLauncher dagsterDaemon concurrency postgresql",
        "global": "postgresqlSecretName dagsterHome serviceAccountName celeryConfigSecretName",
        "dagsterWebserver": "replicaCount image resources nodeSelector tolerations env",
        "dagster-user-deployments": "enabled enableSubchart imagePullSecrets deployments",
        "deployment": "name image dagsterApiGrpcArgs codeServerArgs includeConfigInLaunchedRuns port env "
        "envConfigMaps envSecrets annotations nodeSelector affinity tolerations podSecurityContext "
        "securityContext resources livenessProbe readinessProbe startupProbe labels volumeMounts volumes "
        "schedulerName",
        "k8sRunLauncher": "image imagePullPolicy jobNamespace loadInclusterConfig kubeconfigFile envConfigMaps "
        "envSecrets envVars volumeMounts volumes labels failPodOnRunFailure resources schedulerName "
        "securityContext runK8sConfig",
        "runK8sConfig": "containerConfig podSpecConfig podTemplateSpecMetadata jobSpecConfig jobMetadata",
        "dagsterDaemon": "enabled image runCoordinator heartbeatTolerance env envConfigMaps envSecrets resources "
        "nodeSelector tolerations runMonitoring runRetries sensors schedules",
        "runCoordinator": "enabled type config",
        "concurrency": "enabled pools runs",
        "concurrency.pools": "defaultLimit granularity opGranularityRunBuffer",
        "concurrency.runs": "maxConcurrentRuns tagConcurrencyLimits",
        "postgresql": "enabled image postgresqlHost postgresqlUsername postgresqlDatabase postgresqlParams "
        "postgresqlScheme service existingSecret",
    }.items()
}


def _documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def _values(path: Path) -> dict[str, Any]:
    (doc,) = _documents(path)
    return dict(doc)


def _helm_merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """`helm -f base -f overlay`: maps merge key by key, anything else (lists too) is replaced."""
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _helm_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _configmap(path: Path, name: str) -> dict[str, str]:
    for doc in _documents(path):
        if doc.get("kind") == "ConfigMap" and doc["metadata"]["name"] == name:
            return dict(doc["data"])
    raise AssertionError(f"no ConfigMap {name} in {path}")


BASE = _values(K8S / "values.yaml")
GPU = _helm_merge(BASE, _values(K8S / "values-gpu.yaml"))
SETTINGS = _configmap(K8S / "platform-resources.yaml", "audio-platform-settings")
GPU_SETTINGS = _configmap(K8S / "gpu-settings.yaml", "audio-platform-gpu-settings")


def _deployment(values: Mapping[str, Any]) -> dict[str, Any]:
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    return dict(deployment)


def _launcher_values(values: Mapping[str, Any]) -> dict[str, Any]:
    return dict(values["runLauncher"]["config"]["k8sRunLauncher"])


def _image(values: Mapping[str, Any]) -> str:
    image = _deployment(values)["image"]
    return f"{image['repository']}:{image['tag']}"


def _run_launcher_config(values: Mapping[str, Any]) -> dict[str, Any]:
    """The run_launcher config the chart's instance ConfigMap renders from these values."""
    launcher = _launcher_values(values)
    run_k8s = launcher.get("runK8sConfig", {})
    return {
        "load_incluster_config": launcher["loadInclusterConfig"],
        "job_namespace": launcher.get("jobNamespace") or NAMESPACE,
        "image_pull_policy": launcher["imagePullPolicy"],
        "service_account_name": RELEASE,
        "dagster_home": "/opt/dagster/dagster_home",
        "instance_config_map": f"{RELEASE}-instance",
        "postgres_password_secret": values["global"]["postgresqlSecretName"],
        # The chart always adds its own pipeline-env ConfigMap first.
        "env_config_maps": [f"{RELEASE}-pipeline-env"] + [ref["name"] for ref in launcher["envConfigMaps"]],
        "env_secrets": [ref["name"] for ref in launcher["envSecrets"]],
        "volume_mounts": launcher["volumeMounts"],
        "volumes": launcher["volumes"],
        "labels": launcher["labels"],
        "resources": launcher["resources"],
        "security_context": launcher["securityContext"],
        "fail_pod_on_run_failure": launcher["failPodOnRunFailure"],
        "run_k8s_config": {re.sub(r"(?<!^)([A-Z])", r"_\1", k).lower(): v for k, v in run_k8s.items()},
    }


def _instance_yaml(values: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of the chart's instance dagster.yaml that these values decide."""
    pg = values["postgresql"]
    postgres = {
        "postgres_db": {
            "username": pg["postgresqlUsername"],
            "password": {"env": "DAGSTER_PG_PASSWORD"},
            "hostname": f"{RELEASE}-postgresql",
            "db_name": pg["postgresqlDatabase"],
            "port": 5432,
            "scheme": pg.get("postgresqlScheme", "postgresql"),
        }
    }
    daemon = values["dagsterDaemon"]
    concurrency = values["concurrency"]
    monitoring = daemon["runMonitoring"]
    return {
        "scheduler": {"module": "dagster._core.scheduler", "class": "DagsterDaemonScheduler"},
        "run_storage": {"module": "dagster_postgres.run_storage", "class": "PostgresRunStorage", "config": postgres},
        "event_log_storage": {
            "module": "dagster_postgres.event_log",
            "class": "PostgresEventLogStorage",
            "config": postgres,
        },
        "schedule_storage": {
            "module": "dagster_postgres.schedule_storage",
            "class": "PostgresScheduleStorage",
            "config": postgres,
        },
        "run_launcher": {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": _run_launcher_config(values)},
        "run_coordinator": {
            "module": "dagster._core.run_coordinator",
            "class": daemon["runCoordinator"]["type"],
            "config": {},
        },
        "run_monitoring": {
            "enabled": monitoring["enabled"],
            "start_timeout_seconds": monitoring["startTimeoutSeconds"],
        },
        "run_retries": {
            "enabled": daemon["runRetries"]["enabled"],
            "max_retries": daemon["runRetries"]["maxRetries"],
            "retry_on_asset_or_op_failure": daemon["runRetries"]["retryOnAssetOrOpFailure"],
        },
        "sensors": {"use_threads": daemon["sensors"]["useThreads"], "num_workers": daemon["sensors"]["numWorkers"]},
        "telemetry": {"enabled": values["telemetry"]["enabled"]},
        "concurrency": {
            "runs": {"max_concurrent_runs": concurrency["runs"]["maxConcurrentRuns"]},
            "pools": {"default_limit": concurrency["pools"]["defaultLimit"]},
        },
    }


@pytest.fixture(scope="module")
def launcher(tmp_path_factory: pytest.TempPathFactory) -> K8sRunLauncher:
    """A real K8sRunLauncher from the rendered config. A kubeconfig naming an unreachable server
    stands in for the in-cluster config: constructing the launcher parses it and connects nowhere."""
    kubeconfig = tmp_path_factory.mktemp("kube") / "config"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "offline", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "offline", "user": {}}],
                "contexts": [{"name": "offline", "context": {"cluster": "offline", "user": "offline"}}],
                "current-context": "offline",
            }
        )
    )
    result = validate_config(Shape(K8sRunLauncher.config_type()), _run_launcher_config(BASE))
    assert result.success and result.value is not None, result.errors
    config = {**result.value, "load_incluster_config": False, "kubeconfig_file": str(kubeconfig)}
    return K8sRunLauncher.from_config_value(None, config)


def _job(launcher: K8sRunLauncher, image: str, op_tags: Mapping[str, str] | None = None) -> k8s.V1Job:
    """The Job the launcher submits for a run (as launcher.py does), or with op tags the Job the
    k8s_job_executor submits for that step (as executor.py does: run context, then the op's tags)."""
    run = DagsterRun(job_name="process_shard", run_id="0123456789abcdef0123456789abcdef")
    context = K8sContainerContext.create_for_run(run, launcher, include_run_tags=True)
    if op_tags:
        context = context.merge(K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(op_tags)))
    return construct_dagster_k8s_job(
        job_config=context.get_k8s_job_config(job_image=image, run_launcher=launcher),
        args=["dagster", "api", "execute_run"],
        job_name="dagster-run-0123456789abcdef",
        user_defined_k8s_config=context.run_k8s_config,
        component="run_worker",
    )


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield f"{path}.{key}", value
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{path}[{index}]")


def test_every_yaml_in_k8s_parses_into_mappings() -> None:
    files = sorted(K8S.glob("*.yaml"))
    assert {f.name for f in files} >= {"values.yaml", "values-gpu.yaml", "platform-resources.yaml", "gpu-settings.yaml"}
    for path in files:
        docs = _documents(path)
        assert docs and all(isinstance(doc, dict) for doc in docs), path.name


@pytest.mark.parametrize("name", ["platform-resources.yaml", "gpu-settings.yaml", "metrics-exporter.yaml"])
def test_kubernetes_objects_match_the_api_models(name: str) -> None:
    models = {
        "ConfigMap": k8s.V1ConfigMap,
        "PersistentVolumeClaim": k8s.V1PersistentVolumeClaim,
        "Deployment": k8s.V1Deployment,
        "Service": k8s.V1Service,
    }
    for doc in _documents(K8S / name):
        assert doc["kind"] in models, f"{name}: no secrets or unexpected kinds in k8s/ ({doc['kind']})"
        k8s_snake_case_dict(models[doc["kind"]], doc)  # raises on any key the API does not have
        if doc["kind"] == "ConfigMap":
            assert all(isinstance(v, str) for v in doc["data"].values()), "ConfigMap values must be strings"
        elif doc["kind"] == "PersistentVolumeClaim":
            assert doc["spec"]["accessModes"] == ["ReadWriteMany"], "all pods share the platform volume"


def test_the_metrics_exporter_runs_the_cli_from_the_user_code_image_behind_a_scraped_service() -> None:
    deployment, service = _documents(K8S / "metrics-exporter.yaml")
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    image = _deployment(BASE)["image"]
    assert container["image"] == f"{image['repository']}:{image['tag']}", "same code as the code server"
    assert container["command"][0] == "audio-platform"
    args = build_parser().parse_args(container["command"][1:])  # the real CLI accepts it
    assert args.command == "metrics"
    (port,) = container["ports"]
    assert int(args.port) == port["containerPort"] == int(service["metadata"]["annotations"]["prometheus.io/port"])
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert f"{args.dagster_home}/dagster.yaml" in mounts, "the chart's instance config (run counts)"
    assert any(path.startswith("/data") for path in mounts), "the warehouse on the shared volume"
    refs = {next(iter(ref.values()))["name"] for ref in container["envFrom"]}
    assert refs == {"audio-platform-settings", "audio-platform-secrets"}
    assert {"requests", "limits"} <= set(container["resources"]) and pod["spec"]["securityContext"]["runAsNonRoot"]


def test_helm_value_keys_exist_in_the_chart() -> None:
    for values in (BASE, _values(K8S / "values-gpu.yaml")):
        sections: dict[str, Mapping[str, Any]] = {"": values}
        for name in ("global", "dagsterWebserver", "dagster-user-deployments", "dagsterDaemon", "postgresql"):
            sections[name] = values.get(name, {})
        sections["concurrency"] = values.get("concurrency", {})
        sections["concurrency.pools"] = sections["concurrency"].get("pools", {})
        sections["concurrency.runs"] = sections["concurrency"].get("runs", {})
        sections["runCoordinator"] = values.get("dagsterDaemon", {}).get("runCoordinator", {})
        sections["k8sRunLauncher"] = values["runLauncher"]["config"]["k8sRunLauncher"]
        sections["runK8sConfig"] = sections["k8sRunLauncher"].get("runK8sConfig", {})
        for deployment in values.get("dagster-user-deployments", {}).get("deployments", []):
            assert set(deployment) <= CHART_KEYS["deployment"], set(deployment) - CHART_KEYS["deployment"]
        for name, section in sections.items():
            assert set(section) <= CHART_KEYS[name], f"{name or 'top level'}: {set(section) - CHART_KEYS[name]}"
    assert BASE["runLauncher"]["type"] == "K8sRunLauncher"


def test_kubernetes_fragments_in_the_values_match_the_api_models() -> None:
    for values in (BASE, GPU):
        deployment, launcher = _deployment(values), _launcher_values(values)
        for owner in (deployment, launcher):
            for volume in owner["volumes"]:
                k8s_snake_case_dict(k8s.V1Volume, volume)
            for mount in owner["volumeMounts"]:
                k8s_snake_case_dict(k8s.V1VolumeMount, mount)
            k8s_snake_case_dict(k8s.V1SecurityContext, owner["securityContext"])
        k8s_snake_case_dict(k8s.V1PodSecurityContext, deployment["podSecurityContext"])
        k8s_snake_case_dict(k8s.V1PodSpec, launcher["runK8sConfig"]["podSpecConfig"])
        for resources in (deployment["resources"], launcher["resources"]):
            k8s_snake_case_dict(k8s.V1ResourceRequirements, resources)


def test_run_launcher_config_is_accepted_by_dagster_k8s() -> None:
    for values in (BASE, GPU):
        result = validate_config(Shape(K8sRunLauncher.config_type()), _run_launcher_config(values))
        assert result.success, result.errors


def test_instance_config_is_valid_and_keeps_the_single_machine_policies(tmp_path: Path) -> None:
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(_instance_yaml(BASE)))
    cluster, _ = dagster_instance_config(str(tmp_path))
    local = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())

    assert cluster["run_coordinator"]["class"] == local["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert cluster["run_retries"] == local["run_retries"]
    assert cluster["telemetry"] == local["telemetry"]
    # The same two limits as on one machine; each run pod has its own cores, so one model-pool
    # slot per run pod corresponds to dagster.yaml's one slot per 2-core machine.
    assert cluster["concurrency"].keys() == local["concurrency"].keys() == {"runs", "pools"}
    runs = cluster["concurrency"]["runs"]["max_concurrent_runs"]
    assert runs >= local["concurrency"]["runs"]["max_concurrent_runs"]
    assert cluster["concurrency"]["pools"]["default_limit"] == runs
    assert {cluster[k]["module"] for k in ("run_storage", "event_log_storage", "schedule_storage")} == {
        "dagster_postgres.run_storage",
        "dagster_postgres.event_log",
        "dagster_postgres.schedule_storage",
    }
    assert BASE["postgresql"]["enabled"] is True
    assert BASE["dagsterDaemon"]["enabled"] is True and BASE["dagsterDaemon"]["sensors"]["useThreads"] is True


def test_a_shard_run_pod_gets_its_resources_volume_settings_and_a_non_root_user(launcher: K8sRunLauncher) -> None:
    job = _job(launcher, f"registry.example.com/audio-platform:{CPU_IMAGE_TAG}")
    pod = job.spec.template.spec
    (container,) = pod.containers
    assert container.image.endswith(f":{CPU_IMAGE_TAG}")
    # Guaranteed QoS, and one ASR thread per requested core.
    assert container.resources.requests == container.resources.limits
    assert container.resources.requests["cpu"] == SETTINGS["AUDIO_PLATFORM_ASR_CPU_THREADS"]
    sources = [(s.config_map_ref or s.secret_ref).name for s in container.env_from]
    assert sources == [f"{RELEASE}-pipeline-env", "audio-platform-settings", "audio-platform-secrets"]
    (mount,) = container.volume_mounts
    assert SETTINGS["AUDIO_PLATFORM_HOME"].startswith(mount.mount_path + "/")
    (volume,) = pod.volumes
    assert volume.persistent_volume_claim.claim_name == "audio-platform-data"
    assert pod.security_context.run_as_non_root and pod.security_context.run_as_user == 10001
    assert container.security_context.allow_privilege_escalation is False
    assert job.metadata.labels["app.kubernetes.io/part-of"] == "audio-platform"


@pytest.fixture(scope="module")
def gpu_platform(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Definitions]:
    """Settings and definitions as the GPU example's code server and run pods build them: both
    settings ConfigMaps as the environment (only the home moved to a temporary folder)."""
    home = tmp_path_factory.mktemp("gpu-home")
    settings = load_settings({**SETTINGS, **GPU_SETTINGS, "AUDIO_PLATFORM_HOME": str(home)})
    return settings, build_definitions(settings)


def test_gpu_settings_give_the_asr_step_the_gpu_pool_its_op_tag_and_one_pod_per_step(
    gpu_platform: tuple[Settings, Definitions],
) -> None:
    _, defs = gpu_platform
    for job in defs.resolve_all_job_defs():
        assert job.executor_def is k8s_job_executor, job.name
    # The steps as the run worker's k8s_job_executor sees them: pool and tags of the plan's steps.
    plan = create_execution_plan(defs.resolve_job_def("process_shard"))
    asr = plan.get_step_by_key(ASR_STEP)
    assert asr.pool == GPU_POOL
    assert json.loads(asr.tags[USER_DEFINED_K8S_CONFIG_KEY]) == json.loads(
        GPU_SETTINGS["AUDIO_PLATFORM_ASR_K8S_CONFIG"]
    )
    # What dagster_k8s's step handler makes of the tag (K8sStepHandler._get_container_context).
    config = get_user_defined_k8s_config(asr.tags)
    assert config.container_config["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert config.pod_spec_config["node_selector"] == {"nvidia.com/gpu.present": "true"}
    assert config.pod_spec_config["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    # Every other step gets a plain pod from the run launcher's config; VAD stays in the CPU pool.
    others = [step for step in plan.steps if step.key != ASR_STEP]
    assert others and all(get_user_defined_k8s_config(step.tags) == UserDefinedDagsterK8sConfig() for step in others)
    assert plan.get_step_by_key("vad_segments").pool == MODEL_POOL


def test_the_asr_steps_op_tag_puts_its_pod_on_a_gpu_node(
    launcher: K8sRunLauncher, gpu_platform: tuple[Settings, Definitions]
) -> None:
    _, defs = gpu_platform
    step_tags = create_execution_plan(defs.resolve_job_def("process_shard")).get_step_by_key(ASR_STEP).tags
    job = _job(launcher, _image(GPU), op_tags=step_tags)
    pod = job.spec.template.spec
    (container,) = pod.containers
    assert container.image.endswith("-cuda")
    assert container.resources.limits["nvidia.com/gpu"] == "1"
    assert pod.node_selector == {"nvidia.com/gpu.present": "true"}
    assert [(t.key, t.operator, t.effect) for t in pod.tolerations] == [("nvidia.com/gpu", "Exists", "NoSchedule")]
    # Everything else a run pod has is still there (deep merge, not replacement).
    assert pod.volumes and container.env_from and pod.security_context.run_as_non_root


def test_the_asr_step_queues_on_the_gpu_pool_of_a_real_instance(tmp_path: Path) -> None:
    """The GPU settings on a local home and the repository's instance config (pools default to 1
    slot), with `audio_models_gpu` at 1 slot held by another run: a shard run's ASR step waits for
    exactly that pool, and runs once the slot frees. `audio_models` stays held by a third run
    throughout, so an ASR step still in the CPU pool would never start (the watcher then frees
    everything after a minute and the asserts fail). execute_in_process runs the steps in-process
    (whatever the executor setting), but claims pool slots as every executor does."""
    settings = load_settings({**GPU_SETTINGS, "AUDIO_PLATFORM_HOME": str(tmp_path / "home")})
    defs = build_definitions(settings)
    instance = prepare_instance(settings)
    storage = instance.event_log_storage
    assert storage.get_pool_config().default_pool_limit == 1  # dagster.yaml: audio_models has 1 slot
    storage.set_concurrency_slots(MODEL_POOL, 1)
    storage.set_concurrency_slots(GPU_POOL, 1)  # `dagster instance concurrency set audio_models_gpu 1`
    assert storage.get_concurrency_info(GPU_POOL).slot_count == 1
    assert storage.claim_concurrency_slot(GPU_POOL, "gpu-holder", ASR_STEP).is_claimed
    assert storage.claim_concurrency_slot(MODEL_POOL, "cpu-holder", "vad_segments").is_claimed
    shard = "gpu-pool-shard"
    instance.add_dynamic_partitions(SHARDS, [shard])
    lake = Lake(settings.lake_root)
    for table in (AUDIO_FILES, SEGMENTS):  # an empty shard: the ASR step loads its model, decodes nothing
        lake.write_table(table, shard, table.empty())

    waiting: list[tuple[str, str]] = []

    def release_when_the_asr_step_waits() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not waiting:
            pending = storage.get_concurrency_info(GPU_POOL).pending_steps
            waiting.extend((p.run_id, p.step_key) for p in pending if p.assigned_timestamp is None)
            time.sleep(0.1)
        storage.free_concurrency_slots_for_run("gpu-holder")
        if not waiting:
            storage.free_concurrency_slots_for_run("cpu-holder")

    watcher = threading.Thread(target=release_when_the_asr_step_waits, daemon=True)
    watcher.start()
    try:
        result = defs.resolve_job_def("process_shard").execute_in_process(
            partition_key=shard, instance=instance, asset_selection=[TRANSCRIPTS_KEY, WORDS_KEY], raise_on_error=False
        )
    finally:
        watcher.join()
        storage.free_concurrency_slots_for_run("cpu-holder")
    assert waiting == [(result.run_id, ASR_STEP)]
    assert result.success
    assert lake.read(TRANSCRIPTS.name, shard).height == 0
    # The run's slot is back: the pool is free for the next run.
    assert storage.get_concurrency_info(GPU_POOL).active_slot_count == 0


def test_the_gpu_overlay_changes_only_the_image_and_adds_its_configmap() -> None:
    base, gpu = _deployment(BASE), _deployment(GPU)
    assert gpu["image"]["tag"] == base["image"]["tag"] + "-cuda"
    extra = [{"name": "audio-platform-gpu-settings"}]
    assert gpu["envConfigMaps"] == base["envConfigMaps"] + extra
    assert _launcher_values(GPU)["envConfigMaps"] == _launcher_values(BASE)["envConfigMaps"] + extra
    strip = {"image", "envConfigMaps"}
    assert {k: v for k, v in gpu.items() if k not in strip} == {k: v for k, v in base.items() if k not in strip}


def test_settings_configmaps_hold_valid_platform_settings() -> None:
    from audio_platform.definitions import platform_resources

    for data in (SETTINGS, {**SETTINGS, **GPU_SETTINGS}):
        assert all(key.startswith(ENV_PREFIX) for key in data)
        settings = load_settings(data)
        # Every variable is a setting or a resource field (an unknown name would raise here).
        resources = platform_resources(settings)
        assert str(settings.home) == data["AUDIO_PLATFORM_HOME"]
    assert (settings.executor, settings.asr_pool) == ("k8s", GPU_POOL)
    assert resources["asr"].config().device == "auto"
    # The chart names the code location after the user deployment: the CLI in a pod files its runs there.
    assert settings.code_location == _deployment(BASE)["name"]


def test_the_op_tag_settings_speak_dagster_k8s_terms() -> None:
    # settings.py validates AUDIO_PLATFORM_ASR_K8S_CONFIG without importing dagster_k8s: its key
    # list must be the one dagster_k8s validates the tag against.
    assert K8S_CONFIG_TAG == USER_DEFINED_K8S_CONFIG_KEY
    assert set(K8S_STEP_CONFIG_KEYS) == set(USER_DEFINED_K8S_JOB_CONFIG_SCHEMA.fields)


def test_secrets_are_referenced_by_name_only() -> None:
    assert BASE["generatePostgresqlPasswordSecret"] is False
    assert BASE["postgresql"]["existingSecret"] == BASE["global"]["postgresqlSecretName"]
    for values in (BASE, GPU):
        for owner in (_deployment(values), _launcher_values(values)):
            assert all(set(ref) == {"name"} for ref in owner["envSecrets"])
    literal = re.compile(r"password|passwd|token|secret_?access|access_?key|credential|private_?key", re.I)
    for path in sorted(K8S.glob("*.yaml")):
        for doc in _documents(path):
            assert doc.get("kind") != "Secret", f"{path.name}: Secrets are created from a secret store"
            for key_path, value in _walk(doc):
                leaf = key_path.rsplit(".", 1)[-1]
                assert not (literal.search(leaf) and isinstance(value, str)), f"{path.name}{key_path}"
        assert "PRIVATE KEY" not in path.read_text()


def test_every_component_has_resource_requests_and_limits() -> None:
    for resources in (
        BASE["dagsterWebserver"]["resources"],
        BASE["dagsterDaemon"]["resources"],
        _deployment(BASE)["resources"],
        _launcher_values(BASE)["resources"],
    ):
        assert set(resources) == {"requests", "limits"}
        assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"]


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", dockerfile.read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


@pytest.mark.parametrize(("name", "base"), [("Dockerfile", "python:3.11-slim"), ("Dockerfile.cuda", "nvidia/cuda:")])
def test_dockerfiles_build_a_non_root_locked_image_serving_the_definitions(name: str, base: str) -> None:
    steps = _instructions(K8S / name)
    final_stage = steps[max(i for i, (op, _) in enumerate(steps) if op == "FROM") :]
    assert final_stage[0][1].startswith(base)
    if base.startswith("nvidia"):
        assert "runtime" in final_stage[0][1]
    users = [arg for op, arg in final_stage if op == "USER"]
    assert users and users[-1].isdigit() and int(users[-1]) != 0
    assert int(users[-1]) == _deployment(BASE)["podSecurityContext"]["runAsUser"]
    pip_installs = [part for op, arg in steps if op == "RUN" for part in arg.split("&&") if "pip install" in part]
    assert pip_installs and all("-c requirements-lock.txt" in part for part in pip_installs)
    assert not [op for op, _ in steps if op == "ENTRYPOINT"], "the chart passes the whole command as args"
    # load_from_defs_folder reads the dg project config: pyproject.toml must sit beside the package
    # in the image, so the package is installed editable from the project folder the image keeps.
    workdir = next(arg for op, arg in steps if op == "WORKDIR")
    assert any("pip install" in arg and "-e ." in arg for op, arg in steps if op == "RUN")
    assert ("COPY", f"--from=build {workdir} {workdir}") in final_stage
    (cmd,) = [json.loads(arg) for op, arg in final_stage if op == "CMD"]
    workspace = yaml.safe_load((REPO_ROOT / "workspace.yaml").read_text())["load_from"][0]["python_module"]
    target = ["-m", workspace["module_name"], "-a", workspace["attribute"]]
    assert cmd[:3] == ["dagster", "api", "grpc"] and cmd[-4:] == target
    assert _deployment(BASE)["dagsterApiGrpcArgs"] == target
    assert ("EXPOSE", str(_deployment(BASE)["port"])) in final_stage


def test_image_tags_are_pinned_and_the_chart_storage_matches_the_lock() -> None:
    for values in (BASE, GPU):
        tag = _deployment(values)["image"]["tag"]
        assert tag and tag != "latest"
    lock = dict(
        line.split("==") for line in (REPO_ROOT / "requirements-lock.txt").read_text().splitlines() if "==" in line
    )
    # The chart keeps the instance in PostgreSQL: dagster-postgres is a project dependency, released
    # in lockstep with dagster-k8s (both 0.29.27 for dagster 1.13.27), with the driver the scheme names.
    assert lock["dagster-postgres"] == lock["dagster-k8s"]
    assert BASE["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2" and "psycopg2-binary" in lock
