"""MLflow tracking and registry for keyword models: log a run, register a version, load it back,
and promote it to the ``champion`` alias only when it meets the floors and beats the champion.

Everything goes through an ``MlflowClient`` built from the tracking URI passed in. The fluent
``mlflow.*`` API would read and change process-wide state (active run, global URIs), which a
long-running orchestrator must not share between jobs. Model files are plain run artifacts
under ``model/``:

* ``bundle.pt``: ``ModelBundle`` (weights, CMVN, feature settings, threshold)
* ``model.ts.pt``: a TorchScript export (waveform -> probability)

and the charts of :func:`training_figures` go under ``plots/``.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
from matplotlib.figure import Figure
from mlflow.entities import Metric, Param
from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient

from audio_platform.observability.plots import confusion_matrix_figure, training_curves_figure
from audio_platform.storage.lake import Lake
from audio_platform.storage.tables import MODELS
from audio_platform.training.config import PromotionFloors, TrainingConfig
from audio_platform.training.dataset import dataset_lineage, load_keyword_dataset
from audio_platform.training.evaluate import EvalMetrics, evaluate_bundle
from audio_platform.training.model import ModelBundle
from audio_platform.training.train import TrainResult

CHAMPION = "champion"
CHALLENGER = "challenger"
MODEL_DIR = "model"
BUNDLE_FILE = "bundle.pt"
TORCHSCRIPT_FILE = "model.ts.pt"
PLOTS_DIR = "plots"
DEFAULT_EXPERIMENT = "keyword-spotting"
_TEST_PREFIX = "test_"
_DIGEST_TAG = "test_digest"
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    run_id: str

    @property
    def model_uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


@dataclass(frozen=True)
class PromotionDecision:
    promoted: bool
    reason: str
    candidate: EvalMetrics
    champion: EvalMetrics | None  # the previous champion, measured on the candidate's test set
    champion_version: str | None


def mlflow_client(tracking_uri: str) -> MlflowClient:
    # The registry lives in the same store as tracking (SQLite locally, the server in a cluster).
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _flat_params(prefix: str, values: dict[str, Any]) -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat |= _flat_params(f"{prefix}{key}.", value)
        else:
            flat[f"{prefix}{key}"] = str(value)
    return flat


def training_figures(history: list[dict[str, float]], metrics: EvalMetrics) -> dict[str, Figure]:
    """The charts of a training run by name: loss and learning-rate curves, test confusion matrix."""
    return {
        "training_curves": training_curves_figure(history),
        "confusion_matrix": confusion_matrix_figure(*metrics.confusion()),
    }


def log_and_register(
    result: TrainResult,
    metrics: EvalMetrics,
    manifest: pl.DataFrame,
    config: TrainingConfig,
    *,
    tracking_uri: str,
    model_name: str,
    experiment_name: str = DEFAULT_EXPERIMENT,
    artifact_location: str | None = None,
) -> RegisteredVersion:
    """One MLflow run with params, lineage, curves, test metrics and artifacts; then a new version.

    ``artifact_location`` only applies when the experiment is created (the platform passes
    ``<home>/mlflow/artifacts``); an existing experiment keeps its own location.
    """
    client = mlflow_client(tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    experiment_id = (
        experiment.experiment_id
        if experiment is not None
        else client.create_experiment(experiment_name, artifact_location=artifact_location)
    )
    lineage = dataset_lineage(manifest)
    bundle = result.bundle
    tags = {"keyword": bundle.keyword, _DIGEST_TAG: metrics.test_digest, "device": result.device}
    run = client.create_run(experiment_id, run_name=f"kws-{bundle.keyword}", tags=tags)
    run_id = run.info.run_id
    try:
        params = _flat_params("train.", asdict(config)) | {
            "model.parameters": str(result.n_parameters),
            "model.clip_s": str(bundle.clip_s),
            "model.verifier": bundle.verifier_model or "none",
        }
        # Shard lists can outgrow MLflow's 6000-character parameter limit; they go to lineage.json.
        params |= {f"data.{k}": str(v) for k, v in lineage.items() if k != "shards"}
        now = int(time.time() * 1000)
        curves = [
            Metric(key, float(row[key]), now, int(row["epoch"]))
            for row in result.history
            for key in ("train_loss", "val_loss", "lr")
        ]
        summary = {f"{_TEST_PREFIX}{k}": v for k, v in metrics.numeric().items()} | {
            "train_seconds": result.train_seconds,
            "best_epoch": float(result.best_epoch),
        }
        if result.verifier_recall is not None:
            summary["verifier_recall"] = result.verifier_recall
        client.log_batch(
            run_id,
            metrics=curves + [Metric(k, v, now, 0) for k, v in summary.items()],
            params=[Param(k, v) for k, v in params.items()],
        )
        for name, figure in training_figures(result.history, metrics).items():
            client.log_figure(run_id, figure, f"{PLOTS_DIR}/{name}.png")
        with tempfile.TemporaryDirectory() as tmp:
            data_dir, model_dir = Path(tmp) / "dataset", Path(tmp) / MODEL_DIR
            data_dir.mkdir()
            model_dir.mkdir()
            manifest.write_parquet(data_dir / "manifest.parquet")
            (data_dir / "lineage.json").write_text(json.dumps(lineage, indent=2))
            (Path(tmp) / "history.json").write_text(json.dumps(result.history, indent=2))
            bundle.save(model_dir / BUNDLE_FILE)
            bundle.export_torchscript(model_dir / TORCHSCRIPT_FILE)
            client.log_artifacts(run_id, str(data_dir), artifact_path="dataset")
            client.log_artifact(run_id, str(Path(tmp) / "history.json"))
            client.log_artifacts(run_id, str(model_dir), artifact_path=MODEL_DIR)
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")

    if not client.search_registered_models(filter_string=name_filter(model_name)):
        client.create_registered_model(model_name, tags={"task": "keyword-spotting"})
    version = client.create_model_version(
        model_name,
        source=f"{run.info.artifact_uri}/{MODEL_DIR}",
        run_id=run_id,
        tags={"keyword": bundle.keyword, _DIGEST_TAG: metrics.test_digest},
    )
    return RegisteredVersion(model_name, str(version.version), run_id)


def _resolve_version(client: MlflowClient, model_uri: str) -> ModelVersion:
    """``models:/<name>@<alias>`` or ``models:/<name>/<version>``."""
    path = model_uri.removeprefix("models:/")
    if "@" in path:
        name, alias = path.split("@", 1)
        return client.get_model_version_by_alias(name, alias)
    name, _, version = path.rpartition("/")
    if not name or not version.isdigit():
        raise ValueError(f"expected models:/<name>@<alias> or models:/<name>/<version>, got {model_uri!r}")
    return client.get_model_version(name, version)


def _run_id(version: ModelVersion) -> str:
    if not version.run_id:
        raise ValueError(f"model version {version.name}/{version.version} has no run to load from")
    return str(version.run_id)


def load_model_bundle(model_uri: str, tracking_uri: str) -> ModelBundle:
    """Load a bundle from ``models:/<name>@<alias>``, ``models:/<name>/<version>``,
    ``runs:/<run_id>`` or a bare run id."""
    client = mlflow_client(tracking_uri)
    if model_uri.startswith("models:/"):
        run_id = _run_id(_resolve_version(client, model_uri))
    else:
        run_id = model_uri.removeprefix("runs:/").split("/")[0]
        if not _RUN_ID.match(run_id):
            raise ValueError(f"not a models:/ URI, runs:/ URI or run id: {model_uri!r}")
    with tempfile.TemporaryDirectory() as tmp:
        local = client.download_artifacts(run_id, f"{MODEL_DIR}/{BUNDLE_FILE}", tmp)
        return ModelBundle.load(local)


def run_metrics(tracking_uri: str, run_id: str) -> EvalMetrics:
    """The test metrics that ``log_and_register`` stored on a run."""
    run = mlflow_client(tracking_uri).get_run(run_id)
    values = {k.removeprefix(_TEST_PREFIX): v for k, v in run.data.metrics.items() if k.startswith(_TEST_PREFIX)}
    return EvalMetrics.from_numeric(values, run.data.tags[_DIGEST_TAG])


def floors_shortfall(candidate: EvalMetrics, floors: PromotionFloors) -> str | None:
    """Why ``candidate`` may not become champion whatever the champion is, or None when it meets
    the floors. The one rule behind the blocking floors check and :func:`should_promote`."""
    if math.isnan(candidate.false_accepts_per_hour):
        return "no keyword-free test audio, so false accepts per hour are unknown"
    if math.isnan(candidate.f1) or candidate.f1 < floors.min_f1:
        return f"F1 {candidate.f1:.3f} is below the floor {floors.min_f1:.3f}"
    if candidate.false_accepts_per_hour > floors.max_false_accepts_per_hour:
        return (
            f"{candidate.false_accepts_per_hour:.2f} false accepts/hour exceeds the ceiling "
            f"{floors.max_false_accepts_per_hour:.2f}"
        )
    return None


def should_promote(candidate: EvalMetrics, champion: EvalMetrics | None, floors: PromotionFloors) -> tuple[bool, str]:
    """Promote when the candidate meets the floors and beats the champion on the same test set.

    "Beats" means a higher F1, or an F1 tie (within ``floors.f1_tolerance``) with fewer false
    accepts per hour.
    """
    shortfall = floors_shortfall(candidate, floors)
    if shortfall is not None:
        return False, shortfall
    if champion is None:
        return True, "meets the floors and there is no champion yet"
    if champion.test_digest != candidate.test_digest:
        return False, "the champion was measured on a different test set; evaluate it on this one first"
    gain = candidate.f1 - champion.f1
    if gain > floors.f1_tolerance:
        return True, f"F1 {candidate.f1:.3f} beats the champion's {champion.f1:.3f}"
    if abs(gain) <= floors.f1_tolerance and candidate.false_accepts_per_hour < champion.false_accepts_per_hour:
        return True, (
            f"F1 ties the champion's and false accepts/hour drop from "
            f"{champion.false_accepts_per_hour:.2f} to {candidate.false_accepts_per_hour:.2f}"
        )
    return False, (
        f"does not beat the champion (F1 {candidate.f1:.3f} vs {champion.f1:.3f}, false accepts/hour "
        f"{candidate.false_accepts_per_hour:.2f} vs {champion.false_accepts_per_hour:.2f})"
    )


def newest_version(tracking_uri: str, model_name: str) -> str:
    """The highest registered version number of ``model_name``."""
    versions = mlflow_client(tracking_uri).search_model_versions(name_filter(model_name))
    if not versions:
        raise LookupError(f"no registered version of {model_name}")
    return str(max(int(v.version) for v in versions))


def version_metrics(tracking_uri: str, model_name: str, version: str) -> EvalMetrics:
    """The test metrics stored with a registered version (read-only)."""
    return run_metrics(tracking_uri, _run_id(mlflow_client(tracking_uri).get_model_version(model_name, version)))


def record_decision(tracking_uri: str, model_name: str, version: str, promoted: bool, reason: str) -> None:
    """Tag ``version`` with the promotion decision taken for it (the alias says who is champion now)."""
    client = mlflow_client(tracking_uri)
    client.set_model_version_tag(model_name, version, "promotion_decision", CHAMPION if promoted else CHALLENGER)
    client.set_model_version_tag(model_name, version, "promotion_reason", reason)


def promote_if_better(
    manifest: pl.DataFrame,
    *,
    tracking_uri: str,
    model_name: str,
    version: str,
    floors: PromotionFloors,
) -> PromotionDecision:
    """Decide with ``should_promote``; move the ``champion`` alias or tag the version a challenger.

    The champion is re-scored on this manifest's test split (never its training data) unless
    its stored metrics already come from the same test set.
    """
    client = mlflow_client(tracking_uri)
    candidate = run_metrics(tracking_uri, _run_id(client.get_model_version(model_name, version)))
    alias_target = client.get_registered_model(model_name).aliases.get(CHAMPION)
    champion_version = None if alias_target is None else str(alias_target)
    if champion_version == str(version):
        return PromotionDecision(True, "already the champion", candidate, candidate, champion_version)
    champion: EvalMetrics | None = None
    if champion_version is not None:
        champion = run_metrics(tracking_uri, _run_id(client.get_model_version(model_name, champion_version)))
        if champion.test_digest != candidate.test_digest:
            bundle = load_model_bundle(f"models:/{model_name}/{champion_version}", tracking_uri)
            # Synthetic clips are train-only, so the test split never needs the TTS callable.
            champion = evaluate_bundle(bundle, load_keyword_dataset(manifest.filter(pl.col("split") == "test")))
    promoted, reason = should_promote(candidate, champion, floors)
    if promoted:
        client.set_registered_model_alias(model_name, CHAMPION, version)
    record_decision(tracking_uri, model_name, version, promoted, reason)
    return PromotionDecision(promoted, reason, candidate, champion, champion_version)


def name_filter(model_name: str) -> str:
    """An MLflow search filter matching ``model_name`` exactly: the name is a string literal in
    whichever quote it does not contain (MLflow's filter grammar has no escape character)."""
    for quote in ("'", '"'):
        if quote not in model_name:
            return f"name = {quote}{model_name}{quote}"
    raise ValueError(f"model name {model_name!r} holds both quote characters: no MLflow filter can name it")


def registry_table(tracking_uri: str, model_name: str | None = None) -> pl.DataFrame:
    """One row per registered version of ``model_name``, or of every model when None (the
    warehouse's ``models`` table)."""
    client = mlflow_client(tracking_uri)
    rows: list[dict[str, Any]] = []
    for model in client.search_registered_models(None if model_name is None else name_filter(model_name)):
        aliases_by_version: dict[str, list[str]] = {}
        for alias, target in (model.aliases or {}).items():
            aliases_by_version.setdefault(str(target), []).append(alias)
        for version in client.search_model_versions(name_filter(model.name)):
            run_id = version.run_id or ""
            metrics = client.get_run(run_id).data.metrics if run_id else {}
            rows.append(
                {
                    "name": model.name,
                    "version": int(version.version),
                    "run_id": run_id,
                    "aliases": ",".join(sorted(aliases_by_version.get(str(version.version), []))),
                    "promotion_decision": (version.tags or {}).get("promotion_decision"),
                    "promotion_reason": (version.tags or {}).get("promotion_reason"),
                    "f1": metrics.get("test_f1"),
                    "precision": metrics.get("test_precision"),
                    "recall": metrics.get("test_recall"),
                    "false_reject_rate": metrics.get("test_false_reject_rate"),
                    "false_accepts_per_hour": metrics.get("test_false_accepts_per_hour"),
                    "created_at": datetime.fromtimestamp(version.creation_timestamp / 1000.0, tz=UTC),
                }
            )
    return pl.DataFrame(rows, schema=MODELS.schema).sort("name", "version")


def mirror_to_lake(lake: Lake, tracking_uri: str, model_name: str, keyword: str) -> None:
    """Copy the registry's view of ``model_name`` into the lake's ``models`` table (partition
    ``keyword``), so the warehouse's ``models`` view shows versions, metrics and aliases as they are
    now, without a warehouse rebuild."""
    lake.write_table(MODELS, keyword, registry_table(tracking_uri, model_name))


@dataclass(frozen=True)
class AliasMove:
    model_name: str
    alias: str
    version: str
    previous: str | None  # the version the alias pointed at before; None if it was unset
    keyword: str


def set_alias(tracking_uri: str, model_name: str, alias: str, version: str) -> AliasMove:
    """Point ``alias`` of ``model_name`` at ``version``, e.g. to roll ``champion`` back to an earlier
    version by hand. Unlike the promotion gate this compares nothing: the operator decides. Raises
    if the version does not exist or is not a keyword model of this platform."""
    client = mlflow_client(tracking_uri)
    target = client.get_model_version(model_name, version)
    keyword = (target.tags or {}).get("keyword")
    if not keyword:
        raise ValueError(f"{model_name}/{version} has no 'keyword' tag: not a keyword model registered by the platform")
    previous = client.get_registered_model(model_name).aliases.get(alias)
    client.set_registered_model_alias(model_name, alias, str(target.version))
    return AliasMove(model_name, alias, str(target.version), None if previous is None else str(previous), keyword)
