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

import hashlib
import json
import os
import posixpath
import tempfile
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


def _rows_naming_no_file(
    root: Path, metadata_path: Path, named: list[str], mine: list[bool], memo_dir: Path | None
) -> tuple[int, str | None]:
    """How many of the rows ``named`` that are not the caller's shard's (``mine``) name no file of
    the drop, and the first of them. Each shard of a big drop would check the same rows against the
    disk (one ``stat`` per row: 20 s per shard for a million rows), so with ``memo_dir`` the
    answer is kept per version (size, modification time, inode) of the metadata file. A drop
    being copied may hold its metadata before its files: a kept answer whose example file has
    appeared since is checked again. (A file removed later is noticed when the metadata changes.)"""
    memo = None
    if memo_dir is not None:
        try:
            info = metadata_path.stat()
            version = f"{metadata_path.resolve()}\0{info.st_size}\0{info.st_mtime_ns}\0{info.st_ino}"
            memo = memo_dir / f"{hashlib.sha1(version.encode()).hexdigest()}.json"
            saved = json.loads(memo.read_text(encoding="utf-8"))
            count, example = int(saved["count"]), saved["example"]
            if not (count and _inside_and_present(root, str(example))):
                return count, example
        except (OSError, ValueError, KeyError, TypeError):
            pass  # not checked yet, an unreadable memo or a metadata file gone: check now
    others = {rel for rel, keep in zip(named, mine, strict=True) if not keep}
    missing = sorted(rel for rel in others if not _inside_and_present(root, rel))
    count, example = len(missing), (missing[0] if missing else None)
    if memo is not None:
        _remember(memo, {"count": count, "example": example})
    return count, example


def _remember(memo: Path, answer: dict[str, object]) -> None:
    """Write ``answer`` to ``memo`` whole and renamed (a shard reading it meanwhile sees no memo,
    never half of one); a memo that cannot be written only means the next shard checks again."""
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=memo.parent, suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(answer, out)
            os.replace(temporary, memo)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError:
        pass


def drop_metadata(
    drop_root: Path, rel_paths: Iterable[str], memo_dir: Path | None = None
) -> tuple[pl.DataFrame, list[str]]:
    """Each of ``rel_paths`` (audio files of the drop, '/'-separated) with its metadata row
    (schema ``METADATA_SCHEMA``), and the problems of the drop's metadata files: unreadable
    files and rows naming no file of the drop. Without any metadata file: no rows.

    ``rel_paths`` may be one shard's files: a row naming a file outside them is a problem only
    when no such file exists in the drop (a shard of a big drop sees most rows name other shards'
    files; ``memo_dir`` keeps that answer for the drop's other shards, see
    ``_rows_naming_no_file``). Only the rows of ``rel_paths`` are turned into records."""
    root = Path(drop_root)
    wanted = sorted(set(rel_paths))
    wanted_set = set(wanted)
    folders = {posixpath.dirname(p) for p in wanted}
    # Every folder from each file's up to the root may hold the metadata that applies to it.
    candidates = set()
    for folder in folders:
        while True:
            candidates.add(folder)
            if not folder:
                break
            folder = posixpath.dirname(folder)
    # Per folder holding a metadata file: its path, the rows of the wanted files, whether it could
    # be read, and a note on it.
    tables: dict[str, tuple[str, dict[str, dict[str, str | None]], bool, str | None]] = {}
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
                tables.setdefault(folder, (meta_rel, {}, False, note))
                continue
            named = [posixpath.normpath(posixpath.join(folder, name or "")) for name in frame["file_name"].to_list()]
            mine = [rel in wanted_set for rel in named]
            # Records only for the wanted rows (a shard's few hundred of a million-row file); the
            # last row wins when a file is named twice.
            kept = frame.filter(pl.Series(mine, dtype=pl.Boolean)).to_dicts()
            rows = dict(zip([rel for rel, keep in zip(named, mine, strict=True) if keep], kept, strict=True))
            tables[folder] = (meta_rel, rows, True, note)
            count, example = (0, None) if all(mine) else _rows_naming_no_file(root, path, named, mine, memo_dir)
            if count:
                problems.append(f"{meta_rel}: {count} row(s) name no file of the drop, e.g. {example}")
    if not tables:
        return pl.DataFrame(schema=METADATA_SCHEMA), problems
    records: list[dict[str, str | None]] = []
    for rel_path in wanted:
        folder = posixpath.dirname(rel_path)
        while folder not in tables and folder:
            folder = posixpath.dirname(folder)
        if folder not in tables:
            continue  # no metadata file applies to this file
        meta_rel, rows, usable, note = tables[folder]
        row = rows.get(rel_path)
        if row is None:
            reason = f"no row in {meta_rel}" if usable else f"{meta_rel} could not be used: {note}"
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
