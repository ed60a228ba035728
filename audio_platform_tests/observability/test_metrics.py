"""The collector turns lake rows into Prometheus families; what it reads is a real DuckDB warehouse.

Also a promtool-style lint of the exposition (``promtool check metrics``: names, HELP, ``_total``
only on counters, base units last, reserved suffixes) in both formats the exporter serves, and a
check of every PromQL expression the docs and k8s/ give: each metric exists and counter functions
(``rate``, ``increase``) see only counters, gauge functions (``delta``, ``deriv``) only gauges."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from audio_platform.audio.inventory import QUARANTINE_CATEGORIES
from audio_platform.curation.selection import REJECTION_RULES
from audio_platform.definitions import build_definitions
from audio_platform.observability.metrics import STAGE_ASSETS, PlatformCollector, stage_label
from audio_platform.observability.stage_runs import Prices, StageUsage, stage_run_key, stage_run_row
from audio_platform.settings import Settings
from audio_platform.storage.lake import Lake
from audio_platform.storage.tables import AUDIO_FILES, CURATED_SEGMENTS, LAKE_TABLES, SEGMENTS, STAGE_RUNS, Table
from audio_platform.storage.warehouse import rebuild_warehouse
from audio_platform_tests.conftest import REPO_ROOT

PRICES = Prices(per_cpu_hour=3.6, per_gpu_hour=36.0)  # 0.001 per CPU second, 0.01 per GPU second


def _rows(table: Table, rows: list[dict[str, object]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=table.schema)  # columns a row leaves out are null


def _stage_run(lake: Lake, stage: str, shard: str, wall_s: float, audio_s: float, **failures: int) -> None:
    finished = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    usage = StageUsage(finished, finished, wall_s, 2 * wall_s, 0.0, audio_s, peak_rss_mb=1.0, device="cpu")
    row = stage_run_row(stage, shard, "run", usage, PRICES, failures=failures)
    lake.write_table(STAGE_RUNS, stage_run_key(stage, shard), row)


def _samples(families: list[Metric]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in families
        for sample in family.samples
    }


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    lake = Lake(tmp_path / "lake")
    files: list[dict[str, object]] = [
        {"file_id": "a", "shard": "s0", "status": "ok", "duration_s": 100.0},
        {"file_id": "b", "shard": "s0", "status": "ok", "duration_s": 50.0},
        {"file_id": "c", "shard": "s0", "status": "quarantined", "reason": "not audio: looks like text"},
        {"file_id": "a", "shard": "s1", "status": "duplicate", "reason": "same content as x"},
    ]
    lake.write_table(AUDIO_FILES, "s0", _rows(AUDIO_FILES, files[:3]))
    lake.write_table(AUDIO_FILES, "s1", _rows(AUDIO_FILES, files[3:]))
    segments = [{"segment_id": f"a{i}", "shard": "s0", "duration_s": 10.0} for i in range(6)]
    lake.write_table(SEGMENTS, "s0", _rows(SEGMENTS, segments))
    lake.write_table(CURATED_SEGMENTS, "s0", _rows(CURATED_SEGMENTS, segments[:4]))
    _stage_run(lake, "raw_audio_files", "s0", wall_s=3.0, audio_s=150.0, not_audio=1, empty=0)
    _stage_run(lake, "raw_audio_files", "s1", wall_s=0.5, audio_s=0.0, not_audio=0, empty=2)
    _stage_run(lake, "transcribe_segments", "s0", wall_s=40.0, audio_s=60.0)
    path = tmp_path / "warehouse.duckdb"
    rebuild_warehouse(path, lake, LAKE_TABLES)
    return path


def test_families_are_computed_from_the_rows(warehouse: Path) -> None:
    samples = _samples(list(PlatformCollector(warehouse, lambda: {"SUCCESS": 3, "FAILURE": 1}).collect()))
    p = "audio_platform_"
    assert samples[(f"{p}warehouse_up", ())] == 1
    assert samples[(f"{p}files", (("status", "ok"),))] == 2
    assert samples[(f"{p}files", (("status", "quarantined"),))] == 1
    assert samples[(f"{p}files", (("status", "duplicate"),))] == 1
    assert samples[(f"{p}audio_seconds", ())] == 150.0
    assert samples[(f"{p}segments", ())] == 6 and samples[(f"{p}speech_seconds", ())] == 60.0
    assert samples[(f"{p}curated_segments", ())] == 4 and samples[(f"{p}curated_seconds", ())] == 40.0
    # The stage label is the asset the UI shows: the ASR op transcribe_segments writes transcripts.
    ingest, asr = (("stage", "raw_audio_files"),), (("stage", "transcripts"),)
    assert not any(dict(labels).get("stage") == "transcribe_segments" for _, labels in samples)
    assert samples[(f"{p}stage_cpu_seconds", ingest)] == 7.0
    assert samples[(f"{p}stage_estimated_cost_usd", ingest)] == pytest.approx(0.007)
    assert samples[(f"{p}stage_real_time_factor_ratio", asr)] == 1.5
    finished = datetime(2026, 3, 1, 12, tzinfo=UTC).timestamp()
    assert samples[(f"{p}stage_last_success_timestamp_seconds", asr)] == finished
    # Gauge-histogram buckets are cumulative: 0.5 s and 3 s are both <= 5, only 0.5 s is <= 1.
    assert samples[(f"{p}stage_duration_seconds_bucket", (("le", "1.0"), *ingest))] == 1
    assert samples[(f"{p}stage_duration_seconds_bucket", (("le", "5.0"), *ingest))] == 2
    assert samples[(f"{p}stage_duration_seconds_bucket", (("le", "30.0"), *asr))] == 0
    assert samples[(f"{p}stage_duration_seconds_bucket", (("le", "+Inf"), *asr))] == 1
    assert samples[(f"{p}stage_duration_seconds_gcount", ingest)] == 2
    assert samples[(f"{p}stage_duration_seconds_gsum", ingest)] == 3.5
    # Quarantined files add up over shards by category, every category present; rejected
    # segments are their own family (none recorded here: every rule at 0); runs are apart.
    assert samples[(f"{p}quarantined_files", (("category", "not_audio"),))] == 1
    assert samples[(f"{p}quarantined_files", (("category", "empty"),))] == 2
    assert {labels for name, labels in samples if name == f"{p}quarantined_files"} == {
        (("category", c),) for c in QUARANTINE_CATEGORIES
    }
    assert {labels: v for (name, labels), v in samples.items() if name == f"{p}rejected_segments"} == {
        (("rule", r),): 0.0 for r in REJECTION_RULES
    }
    assert samples[(f"{p}dagster_runs", (("status", "FAILURE"),))] == 1


def test_rejections_are_counted_by_rule_apart_from_quarantines(tmp_path: Path, warehouse: Path) -> None:
    lake = Lake(tmp_path / "lake")
    _stage_run(lake, "curated_segments", "s0", wall_s=1.0, audio_s=60.0, duration=1, topsis_score=1)
    rebuild_warehouse(warehouse, lake, LAKE_TABLES)
    samples = _samples(list(PlatformCollector(warehouse).collect()))
    rejected = {dict(labels)["rule"]: v for (name, labels), v in samples.items() if name.endswith("rejected_segments")}
    assert rejected == {rule: float(rule in ("duration", "topsis_score")) for rule in REJECTION_RULES}
    assert sum(v for (name, _), v in samples.items() if name.endswith("quarantined_files")) == 3


def test_a_missing_warehouse_reports_down_instead_of_failing(tmp_path: Path) -> None:
    families = list(PlatformCollector(tmp_path / "nothing.duckdb").collect())
    assert [(f.name, f.samples[0].value) for f in families] == [("audio_platform_warehouse_up", 0.0)]


def test_the_stage_label_is_an_asset_of_the_op_that_wrote_the_row(tmp_path: Path) -> None:
    """stage_runs.stage is the op name (StageMeter.finish); the label must be one of its assets."""
    graph = build_definitions(Settings(home=tmp_path)).resolve_asset_graph()
    ops = {d.op.name: {k.to_user_string() for k in d.keys} for d in graph.assets_defs if d.is_executable and d.keys}
    assert ops["transcribe_segments"] >= {"transcripts", "words"}
    for op, assets in ops.items():
        assert stage_label(op) in assets, op
    assert set(STAGE_ASSETS) <= set(ops)


# --- promtool-style lint -------------------------------------------------------------------------

NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
BASE_UNITS = ("seconds", "bytes", "usd", "ratio")
NON_BASE_UNITS = ("milliseconds", "ms", "minutes", "hours", "days", "kb", "mb", "gb", "percent")
MONEY = ("cost", "price")  # amounts of money carry their currency last
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum", "_gsum", "_gcount", "_created")
RESERVED_SUFFIXES = ("_bucket", "_count", "_sum", "_gsum", "_gcount", "_created", "_info", "_total")


def lint(text: str) -> list[str]:
    """Problems in a Prometheus text-format (0.0.4) exposition, as ``promtool check metrics`` and the
    naming conventions (https://prometheus.io/docs/practices/naming/) see them."""
    families = list(text_string_to_metric_families(text))
    types = {f.name: f.type for f in families}
    problems = []
    # The parser renames a counter's samples to _total; the TYPE lines show what was exposed.
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.MULTILINE):
        if (kind == "counter") != name.endswith("_total"):
            problems.append(f"{name} ({kind}): _total is for counters, and counters only")
    for family in families:
        name, kind = family.name, family.type
        where = f"{name} ({kind})"
        if not NAME.match(name) or name != name.lower():
            problems.append(f"{where}: not a snake_case metric name")
        if not family.documentation.strip():
            problems.append(f"{where}: no HELP")
        if kind in ("untyped", "unknown"):
            problems.append(f"{where}: no TYPE")
        base = name
        # The classic text format carries a gauge histogram's _gsum/_gcount as gauges of their own.
        for suffix in ("_gsum", "_gcount"):
            if kind == "gauge" and name.endswith(suffix) and types.get(name.removesuffix(suffix)) == "histogram":
                base = name.removesuffix(suffix)
        if base == name and name.endswith(RESERVED_SUFFIXES):
            problems.append(f"{where}: family name ends in a reserved suffix")
        tokens = base.split("_")
        for unit in BASE_UNITS:
            if unit in tokens and not base.endswith("_" + unit):
                problems.append(f"{where}: unit {unit} is not the last part of the name")
        for unit in NON_BASE_UNITS:
            if unit in tokens:
                problems.append(f"{where}: {unit} is not a base unit")
        if set(MONEY) & set(tokens) and not base.endswith("_usd"):
            problems.append(f"{where}: an amount of money without its currency unit (_usd)")
        for sample in family.samples:
            suffix = sample.name.removeprefix(name)
            if not NAME.match(sample.name) or not sample.name.startswith(name):
                problems.append(f"{where}: sample {sample.name} outside its family")
            if kind == "counter" and suffix not in ("_total", "_created"):
                problems.append(f"{where}: counter sample {sample.name} does not end in _total")
            if kind != "counter" and sample.name.endswith("_total"):
                problems.append(f"{where}: {sample.name} ends in _total but is not a counter")
            if kind not in ("histogram", "summary") and suffix in HISTOGRAM_SUFFIXES:
                problems.append(f"{where}: {sample.name} has a histogram suffix outside a histogram")
            if kind in ("histogram", "summary") and suffix not in ("", *HISTOGRAM_SUFFIXES):
                problems.append(f"{where}: unexpected sample {sample.name}")
            for label in sample.labels:
                if not LABEL.match(label) or label.startswith("__"):
                    problems.append(f"{where}: bad label name {label}")
    return problems


def _registry(warehouse: Path) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PlatformCollector(warehouse, lambda: {"SUCCESS": 3, "FAILURE": 1, "STARTED": 0}))
    return registry


def test_the_exposition_passes_the_lint(warehouse: Path) -> None:
    text = generate_latest(_registry(warehouse)).decode()
    assert lint(text) == []
    families = {f.name: f for f in text_string_to_metric_families(text)}
    # Everything is recomputed from the latest rows, so nothing is a counter.
    assert {f.type for f in families.values()} == {"gauge", "histogram"}
    assert families["audio_platform_stage_duration_seconds"].type == "histogram"


def test_the_openmetrics_exposition_parses_strictly_and_declares_units(warehouse: Path) -> None:
    """What Prometheus negotiates by default; its parser rejects malformed families."""
    families = {f.name: f for f in parse_openmetrics(generate_openmetrics(_registry(warehouse)).decode())}
    assert families["audio_platform_stage_duration_seconds"].type == "gaugehistogram"
    assert {f.type for f in families.values()} == {"gauge", "gaugehistogram"}
    for name, family in families.items():
        unit = next((u for u in BASE_UNITS if name.endswith("_" + u)), "")
        assert family.unit == unit, name


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("# HELP a_total x\n# TYPE a_total gauge\na_total 1\n", "not a counter"),
        ("# HELP a_total x\n# TYPE a_total counter\na_total 1\n", None),
        ("# HELP a x\n# TYPE a counter\na 1\n", "counters only"),
        ("# TYPE a gauge\na 1\n", "no HELP"),
        ("# HELP a_seconds_used x\n# TYPE a_seconds_used gauge\na_seconds_used 1\n", "not the last part"),
        ("# HELP a_cost x\n# TYPE a_cost gauge\na_cost 1\n", "without its currency"),
        ("# HELP a_ms x\n# TYPE a_ms gauge\na_ms 1\n", "ms is not a base unit"),
        ("# HELP a x\n# TYPE a gauge\na_bucket 1\n", "reserved suffix"),
        ("# HELP a_count x\n# TYPE a_count gauge\na_count 1\n", "reserved suffix"),
        ("# HELP aB x\n# TYPE aB gauge\naB 1\n", "snake_case"),
    ],
)
def test_the_lint_catches_what_promtool_would(text: str, problem: str | None) -> None:
    problems = lint(text)
    assert any(problem in p for p in problems) if problem else problems == []


# --- documented PromQL -----------------------------------------------------------------------------

PROMQL_SOURCES = [REPO_ROOT / "docs" / "observability.md", *sorted((REPO_ROOT / "k8s").glob("*.yaml"))]
METRIC = re.compile(r"\baudio_platform_[a-zA-Z0-9_:]*")
COUNTER_FUNCTIONS = ("rate", "irate", "increase", "resets")
GAUGE_FUNCTIONS = ("delta", "idelta", "deriv", "predict_linear")


def _exprs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from _exprs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _exprs(item)


def promql_expressions(path: Path) -> list[str]:
    """The ``expr`` of every rule in a YAML file or in a Markdown page's YAML blocks, and the
    Markdown's inline PromQL (code spans that call a function on a metric of the platform)."""
    text = path.read_text()
    if path.suffix != ".md":
        return [e for doc in yaml.safe_load_all(text) for e in _exprs(doc)]
    blocks = re.findall(r"```ya?ml\n(.*?)```", text, flags=re.DOTALL)
    inline = re.findall(r"`([^`\n]*\(audio_platform_[^`\n]*)`", text)
    return [e for block in blocks for e in _exprs(yaml.safe_load(block))] + inline


def _calls(expr: str, functions: tuple[str, ...]) -> Iterator[str]:
    """The argument text of every call to one of ``functions`` in ``expr``."""
    for match in re.finditer(r"\b(" + "|".join(functions) + r")\s*\(", expr):
        depth, start = 1, match.end()
        for end in range(start, len(expr)):
            depth += {"(": 1, ")": -1}.get(expr[end], 0)
            if depth == 0:
                yield expr[start:end]
                break


def promql_problems(expr: str, samples: dict[str, str]) -> list[str]:
    """``samples``: every sample name of the exposition -> its family's type."""
    problems = [f"{name}: not exported" for name in METRIC.findall(expr) if name not in samples]
    for argument in _calls(expr, COUNTER_FUNCTIONS):
        problems += [
            f"{n}: counter function on a {samples.get(n)}"
            for n in METRIC.findall(argument)
            if samples.get(n) not in ("counter", "histogram", "summary")
        ]
    for argument in _calls(expr, GAUGE_FUNCTIONS):
        problems += [
            f"{n}: gauge function on a counter" for n in METRIC.findall(argument) if samples.get(n) == "counter"
        ]
    return problems


def _sample_types(warehouse: Path) -> dict[str, str]:
    text = generate_openmetrics(_registry(warehouse)).decode()
    return {sample.name: family.type for family in parse_openmetrics(text) for sample in family.samples}


def test_documented_alerts_use_exported_metrics_with_functions_of_their_type(warehouse: Path) -> None:
    samples = _sample_types(warehouse)
    exprs = {(path.name, e) for path in PROMQL_SOURCES for e in promql_expressions(path)}
    assert len(exprs) >= 6  # the alert examples and the histogram_quantile example
    assert {where: promql_problems(e, samples) for where, e in exprs} == {where: [] for where, _ in exprs}
    # The stage label is the asset's name, never the op's (transcribe_segments).
    stages = {value for _, e in exprs for value in re.findall(r'stage="([^"]*)"', e)}
    assert stages and all(stage_label(stage) == stage for stage in stages)


def test_the_promql_check_catches_a_counter_function_on_a_gauge(warehouse: Path) -> None:
    samples = _sample_types(warehouse)
    assert promql_problems('increase(audio_platform_dagster_runs{status="FAILURE"}[1h]) > 0', samples) == [
        "audio_platform_dagster_runs: counter function on a gauge"
    ]
    assert promql_problems("sum(audio_platform_failures)", samples) == ["audio_platform_failures: not exported"]


def test_the_documented_table_lists_exactly_the_exported_families(warehouse: Path) -> None:
    text = (REPO_ROOT / "docs" / "observability.md").read_text()
    rows = [line.split("|")[1] for line in text.splitlines() if line.startswith("| `audio_platform_")]
    documented = {name for row in rows for name in METRIC.findall(row)}
    exported = {f.name for f in parse_openmetrics(generate_openmetrics(_registry(warehouse)).decode())}
    assert documented == exported
