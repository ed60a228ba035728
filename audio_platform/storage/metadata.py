"""Drop metadata in the Hugging Face *audiofolder* convention: ``metadata.csv`` or ``metadata.jsonl``
in a drop folder (or any folder below it), one row per audio file, ``file_name`` relative to the
metadata file's folder, any other columns alongside (``transcription``/``text``/``sentence``,
``speaker_id``, ``language``, ...).

A metadata file is a sidecar, never an audio input. Each audio file takes its row from the
nearest metadata file in its folder or above; the well-known columns become typed columns
(reference text, speaker, language) and the whole row is kept as JSON. A file without a row, a
metadata file that cannot be read, and a row that names no file of the drop each get a reason.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable
from pathlib import Path

import polars as pl

METADATA_FILES = ("metadata.csv", "metadata.jsonl")
# Columns that name the reference text, the speaker and the language, first match wins.
TEXT_COLUMNS = ("transcription", "text", "sentence", "transcript")
SPEAKER_COLUMNS = ("speaker_id", "speaker", "client_id")
LANGUAGE_COLUMNS = ("language", "locale", "lang")

METADATA_SCHEMA: dict[str, pl.DataType] = {
    "rel_path": pl.String(),
    "metadata_file": pl.String(),
    "reference_text": pl.String(),
    "speaker": pl.String(),
    "language": pl.String(),
    "fields": pl.String(),
    "reason": pl.String(),
}


def _read(path: Path) -> tuple[pl.DataFrame | None, str | None]:
    """The rows of one metadata file (all columns as text), or None and why it cannot be used."""
    try:
        raw = path.read_bytes()
        try:
            raw.decode("utf-8")
            note = None
        except UnicodeDecodeError:
            note = "not UTF-8: undecodable bytes replaced"
        if path.name.endswith(".csv"):
            frame = pl.read_csv(raw, infer_schema=False, encoding="utf8-lossy", truncate_ragged_lines=True)
        else:
            lines = [json.loads(line) for line in raw.decode("utf-8", errors="replace").splitlines() if line.strip()]
            if not all(isinstance(line, dict) for line in lines):
                return None, f"{path.name}: every line must be a JSON object"
            frame = pl.DataFrame([{k: _text(v) for k, v in line.items()} for line in lines], infer_schema_length=None)
    except (OSError, ValueError, pl.exceptions.PolarsError) as err:
        return None, f"{path.name} cannot be read: {str(err).splitlines()[0][:200]}"
    if "file_name" not in frame.columns:
        return None, f"{path.name} has no file_name column (columns: {', '.join(frame.columns[:10])})"
    return frame.with_columns(pl.all().cast(pl.String)), note


def _text(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value)


def _first(row: dict[str, str | None], names: tuple[str, ...]) -> str | None:
    for name in names:
        if row.get(name) not in (None, ""):
            return row[name]
    return None


def _inside_and_present(root: Path, rel_path: str) -> bool:
    """``rel_path`` (normalised, '/'-separated) stays inside ``root`` and is a file there."""
    inside = not (rel_path == ".." or rel_path.startswith("../") or posixpath.isabs(rel_path))
    return inside and (root / rel_path).is_file()


def drop_metadata(drop_root: Path, rel_paths: Iterable[str]) -> tuple[pl.DataFrame, list[str]]:
    """Each of ``rel_paths`` (audio files of the drop, '/'-separated) with its metadata row
    (schema ``METADATA_SCHEMA``), and the problems of the drop's metadata files: unreadable
    files and rows naming no file of the drop. Without any metadata file: no rows.

    ``rel_paths`` may be one shard's files: a row naming a file outside them is a problem only
    when no such file exists in the drop (a shard of a big drop sees most rows name other shards'
    files)."""
    root = Path(drop_root)
    wanted = sorted(set(rel_paths))
    folders = {posixpath.dirname(p) for p in wanted}
    # Every folder from each file's up to the root may hold the metadata that applies to it.
    candidates = set()
    for folder in folders:
        while True:
            candidates.add(folder)
            if not folder:
                break
            folder = posixpath.dirname(folder)
    tables: dict[str, tuple[str, dict[str, dict[str, str | None]], str | None]] = {}
    problems: list[str] = []
    for folder in sorted(candidates):
        for name in METADATA_FILES:
            path = root / folder / name
            if not path.is_file():
                continue
            meta_rel = posixpath.join(folder, name)
            frame, note = _read(path)
            if frame is None:
                problems.append(f"{meta_rel}: {note}")
                tables.setdefault(folder, (meta_rel, {}, note))
                continue
            rows = {posixpath.normpath(posixpath.join(folder, r["file_name"] or "")): r for r in frame.to_dicts()}
            tables[folder] = (meta_rel, rows, note)
            missing = sorted(rel for rel in set(rows) - set(wanted) if not _inside_and_present(root, rel))
            if missing:
                problems.append(f"{meta_rel}: {len(missing)} row(s) name no file of the drop, e.g. {missing[0]}")
    if not tables:
        return pl.DataFrame(schema=METADATA_SCHEMA), problems
    records: list[dict[str, str | None]] = []
    for rel_path in wanted:
        folder = posixpath.dirname(rel_path)
        while folder not in tables and folder:
            folder = posixpath.dirname(folder)
        if folder not in tables:
            continue  # no metadata file applies to this file
        meta_rel, rows, note = tables[folder]
        row = rows.get(rel_path)
        if row is None:
            reason = f"no row in {meta_rel}" if rows else f"{meta_rel} could not be used: {note}"
            records.append({"rel_path": rel_path, "metadata_file": meta_rel, "reason": reason})
            continue
        records.append(
            {
                "rel_path": rel_path,
                "metadata_file": meta_rel,
                "reference_text": _first(row, TEXT_COLUMNS),
                "speaker": _first(row, SPEAKER_COLUMNS),
                "language": _first(row, LANGUAGE_COLUMNS),
                "fields": json.dumps({k: v for k, v in row.items() if k != "file_name"}, ensure_ascii=False),
                "reason": note,
            }
        )
    return pl.DataFrame(records, schema=METADATA_SCHEMA), problems
