"""Reference docs generated from the code: docs/tables.md and docs/configuration.md.

``python -m audio_platform.reference`` (``make docs``) rewrites both files. A test fails when the
committed files differ from what this module generates, so the docs cannot drift from the code:

* tables.md: every lake/warehouse table of :mod:`audio_platform.storage.tables`, each column
  with its DuckDB type and its entry in ``COLUMN_DOCS``;
* configuration.md: every ``AUDIO_PLATFORM_*`` variable (the fields of
  :class:`~audio_platform.settings.Settings` and their docstrings) and every field of the Dagster
  resources of the definitions (their pydantic ``Field`` descriptions, which the launchpad shows
  too), plus the default TOPSIS criteria that ``criteria_overrides`` changes.

A column, setting or resource field without a description is an error, not a blank cell.
"""

from __future__ import annotations

import argparse
import inspect
import json
from collections.abc import Iterable, Sequence
from dataclasses import MISSING
from pathlib import Path
from typing import Any

import duckdb
from dagster import ConfigurableResource
from pydantic_core import PydanticUndefined

from audio_platform.config_fields import attribute_docs
from audio_platform.curation.topsis import DEFAULT_CRITERIA
from audio_platform.settings import DEFAULT_HOME, ENV_PREFIX, RESOURCE_SECTIONS, Settings, environment_fields
from audio_platform.storage.tables import (
    COLUMN_DOCS,
    KEYWORD_CANDIDATES,
    KEYWORD_CLIPS,
    LAKE_TABLES,
    SEGMENTS,
    TRANSCRIPTS,
    WAREHOUSE_INFO,
    Table,
)

DOCS_DIR = Path(__file__).resolve().parents[1] / "docs"
GENERATED_BY = "Generated from the code by `python -m audio_platform.reference` (`make docs`); do not edit by hand."


def _cell(text: str) -> str:
    """One markdown table cell: a single line, with the cell separator escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return lines


def _segment_scores_table() -> Table:
    # Built the way the asset builds it, with the default criteria, so the columns are the real ones.
    from audio_platform.defs.resources import CurationResource
    from audio_platform.defs.scoring import SEGMENT_SCORES
    from audio_platform.stages import score_shard

    frame = score_shard(SEGMENTS.empty(), TRANSCRIPTS.empty(), CurationResource().criteria())
    grain = "one segment's quality criteria and TOPSIS score (criterion columns follow the criteria in use)"
    return Table(SEGMENT_SCORES, grain, dict(frame.schema))


def documented_tables() -> tuple[Table, ...]:
    """Every table the warehouse can expose."""
    return (*LAKE_TABLES, _segment_scores_table(), KEYWORD_CLIPS, KEYWORD_CANDIDATES, WAREHOUSE_INFO)


def describe_columns(table: Table) -> list[tuple[str, str, str]]:
    """(column, DuckDB type, meaning) of every column; raises if a column has no ``COLUMN_DOCS`` entry."""
    with duckdb.connect() as con:
        con.register("empty_table", table.empty().to_arrow())
        types = {row[0]: row[1] for row in con.execute("DESCRIBE SELECT * FROM empty_table").fetchall()}
    docs = {c: COLUMN_DOCS.get(f"{table.name}.{c}") or COLUMN_DOCS.get(c) for c in table.schema}
    missing = [c for c, doc in docs.items() if not doc]
    if missing:
        raise ValueError(f"table {table.name}: describe {missing} in COLUMN_DOCS (audio_platform/storage/tables.py)")
    return [(c, types[c], str(docs[c])) for c in table.schema]


def tables_markdown() -> str:
    tables = documented_tables()
    # Only the contract tables get an empty typed schema file when the warehouse is built.
    late = " and ".join(f"`{t.name}`" for t in tables if t not in LAKE_TABLES)
    lines = [
        "# Tables",
        "",
        GENERATED_BY,
        "",
        "Every table is Parquet in the lake, one file per partition (`lake/<table>/shard=<partition>/data.parquet`; "
        "the partition is a shard, a keyword or a stage run), and a view of the same name in `warehouse.duckdb`. "
        f"The views exist with these typed columns before any data lands, except {late}, which appear with their "
        "first partition. Types are DuckDB's. Times are seconds from the start of the source file.",
        "",
        *_table(["table", "one row per"], ((f"[`{t.name}`](#{t.name})", t.grain) for t in tables)),
    ]
    for table in tables:
        lines += ["", f"## {table.name}", "", f"Grain: {table.grain}.", ""]
        lines += _table(["column", "type", "meaning"], ((f"`{c}`", f"`{t}`", d) for c, t, d in describe_columns(table)))
    return "\n".join(lines) + "\n"


def _settings_rows() -> list[tuple[str, str, str, str]]:
    docs = attribute_docs(Settings)
    missing = [f.name for f in environment_fields() if f.name not in docs]
    if missing:
        raise ValueError(f"Settings fields {missing} have no docstring: add one under each in settings.py")
    rows = []
    for f in environment_fields():
        # home is the one field without a dataclass default: load_settings supplies it.
        default = DEFAULT_HOME if f.name == "home" else f.default
        shown = "unset" if default is None or default is MISSING else f"`{default}`"
        rows.append((f"`{ENV_PREFIX}{f.name.upper()}`", f"`{f.type}`", shown, docs[f.name]))
    return rows


def _type_name(annotation: Any) -> str:
    return annotation.__name__ if isinstance(annotation, type) else str(annotation)


def _resource_rows(key: str, resource: ConfigurableResource) -> list[tuple[str, ...]]:
    rows = []
    undescribed = []
    for name, info in type(resource).model_fields.items():
        if not info.description:
            undescribed.append(name)
        default = "required" if info.default is PydanticUndefined else f"`{json.dumps(info.default)}`"
        if name in resource.model_fields_set:
            default += " (set from the environment)"
        row: tuple[str, ...] = (f"`{name}`", f"`{_type_name(info.annotation)}`", default, info.description or "")
        if key in RESOURCE_SECTIONS:
            row = (*row[:1], f"`{ENV_PREFIX}{key.upper()}_{name.upper()}`", *row[1:])
        rows.append(row)
    if undescribed:
        raise ValueError(
            f"{type(resource).__name__} fields {undescribed} have no description; declare them with "
            "pydantic Field(description=...)"
        )
    return rows


def _criteria_rows() -> list[tuple[str, str, str, str, str]]:
    return [
        (f"`{c.name}`", f"{c.weight:g}", "benefit" if c.benefit else "cost", f"{c.ideal:g}", f"{c.anti_ideal:g}")
        for c in DEFAULT_CRITERIA
    ]


def configuration_markdown() -> str:
    from audio_platform.definitions import build_definitions

    resources = build_definitions(Settings(home=Path(DEFAULT_HOME))).resources or {}
    lines = [
        "# Configuration",
        "",
        GENERATED_BY,
        "",
        "## Environment variables",
        "",
        "Fields of `audio_platform/settings.py`, read by every entry point (CLI, webserver, daemon, run "
        "workers) at start-up. Unset and empty variables keep the default. `AUDIO_PLATFORM_HOME` is "
        "resolved against the working directory. Besides these, every field of the `vad`, `asr`, `curation` "
        "and `training` resources below is set by `AUDIO_PLATFORM_<RESOURCE>_<FIELD>` (its *variable* "
        "column): text parsed as the field's type (`true`/`false`, JSON for lists and mappings, a list of "
        "words also comma-separated, `null` for an optional field). An unknown name or a value the domain "
        "code refuses stops the definitions from loading with a message naming the variable.",
        "",
        *_table(["variable", "type", "default", "meaning"], _settings_rows()),
        "",
        "## Resources (per-run configuration)",
        "",
        "The Dagster resources of `audio_platform.definitions`. Each field is declared once, in the domain "
        "config dataclass it belongs to (`VadConfig`, `AsrConfig`, `CurationPolicy`, `DatasetConfig`, "
        "`TrainingConfig`, `PromotionFloors`) or in `Settings`, with its default and the description shown "
        "here and in the launchpad. Fields marked *set from the environment* "
        "take their value from the variables when the definitions load. Any field can be changed for "
        "one run, in the launchpad or with `audio-platform reprocess|rescore|train --config <file>`, under the "
        "key below. A resource's section replaces all of its values: in the launchpad, repeat the fields set "
        "from the environment (the CLI keeps them by itself). See [runbook.md](runbook.md) for examples.",
        "",
        "```yaml",
        "resources:",
        "  <resource>:",
        "    config:",
        "      <field>: <value>",
        "```",
    ]
    for key, resource in resources.items():
        doc = inspect.cleandoc(type(resource).__doc__ or "").replace("``", "`")
        lines += ["", f"### {key}", "", f"`{type(resource).__name__}`: {' '.join(doc.split())}", ""]
        header = ["field", "variable", "type", "default", "meaning"] if key in RESOURCE_SECTIONS else None
        lines += _table(header or ["field", "type", "default", "meaning"], _resource_rows(key, resource))
        if key == "curation":
            lines += [
                "",
                "Default criteria (keys of `criteria_overrides`; a benefit criterion scores best at or above "
                "its ideal, a cost criterion at or below it):",
                "",
                *_table(["criterion", "weight", "kind", "ideal", "anti_ideal"], _criteria_rows()),
            ]
    return "\n".join(lines) + "\n"


# File name under docs/ -> its generator.
GENERATORS = {"tables.md": tables_markdown, "configuration.md": configuration_markdown}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write docs/tables.md and docs/configuration.md from the code.")
    parser.add_argument("--out", type=Path, default=DOCS_DIR, help=f"folder to write to (default {DOCS_DIR})")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, generate in GENERATORS.items():
        (args.out / name).write_text(generate(), encoding="utf-8")
        print(args.out / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
