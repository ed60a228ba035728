"""Exports of the curated set in trainers' manifest formats: NeMo ASR JSONL and Lhotse manifests.

The warehouse is the source of truth: every exported row is a ``curated_segments`` row of an
``ok`` file. No audio is copied or cut: both formats name the source file and the segment's span
in it (NeMo's ``offset``/``duration``, a Lhotse supervision's ``start``/``duration`` inside its
recording), so an export is small, quick, and always in step with what the warehouse holds.

* **NeMo** (``manifest.jsonl``): one line per segment, ``audio_filepath`` (absolute source path),
  ``offset``, ``duration``, ``text``, plus ``lang``, ``segment_id``, ``topsis_score``, ``drop_id``,
  ``source_group`` and ``speaker`` (when the drop's metadata names one). NeMo's ASR datasets cut
  the span out of the long file with ``offset``/``duration`` and ignore keys they do not use.
* **NeMo tarred** (``audio_0.tar`` … and ``tarred_audio_manifest.json``): what NeMo's tarred ASR
  datasets read at scale (``tarred_audio_filepaths: audio__OP_0..N_CL_.tar``). Here the audio *is*
  cut: each segment as 16 kHz mono 16-bit WAV (what the platform transcribed), ``<segment_id>.wav``
  in tar ``shard_id``, at most ``segments_per_tar`` per tar; the manifest's ``audio_filepath`` is that
  member name, and ``source_filepath``/``source_offset`` say where it came from.
* **Lhotse** (``recordings.jsonl.gz``, ``supervisions.jsonl.gz``): a ``Recording`` per file and a
  ``SupervisionSegment`` per segment, written as Lhotse's ``to_dict()`` writes them (null fields
  left out, word alignments as ``[symbol, start, duration, score]`` lists, the format since Lhotse
  1.8), without importing Lhotse. The recording has the file's native sample rate and every one of
  its channels; the platform transcribed the mono downmix, so a multi-channel file's supervision
  names all its channels: the text belongs to the mix, not to one channel.

Plain functions over polars frames: no Dagster, so the CLI (or a notebook) calls them directly.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import os
import tarfile
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import soundfile as sf

from audio_platform.audio.decode import decode_mono_16k
from audio_platform.audio.dsp import SAMPLE_RATE
from audio_platform.evaluation.asr_accuracy import source_group
from audio_platform.storage.drops import HOME_MARKER, is_platform_home
from audio_platform.storage.warehouse import query

FORMATS = ("nemo", "nemo-tarred", "lhotse")
NEMO_MANIFEST = "manifest.jsonl"
NEMO_TARRED_MANIFEST = "tarred_audio_manifest.json"
DEFAULT_SEGMENTS_PER_TAR = 1000
LHOTSE_RECORDINGS = "recordings.jsonl.gz"
LHOTSE_SUPERVISIONS = "supervisions.jsonl.gz"

# Each curated segment with what the manifests need from its file. The join is on the owner row
# (status 'ok', same shard): a duplicate shares its owner's file_id but was never processed, and
# its path must not stand in for the owner's. The speaker comes from the drop's metadata, if any.
CURATED_SQL = """
SELECT c.segment_id, c.file_id, a.drop_id, a.source_path, a.rel_path,
       c.start_s, c.end_s, c.duration_s, c.text, c.language, c.topsis_score, m.speaker,
       a.sample_rate, a.channels, a.duration_s AS file_duration_s
FROM curated_segments c
JOIN audio_files a ON a.file_id = c.file_id AND a.shard = c.shard AND a.status = 'ok'
LEFT JOIN (
  SELECT source_path, any_value(speaker) AS speaker FROM file_metadata
  WHERE trim(coalesce(speaker, '')) <> '' GROUP BY source_path
) m ON m.source_path = a.source_path
WHERE $1::VARCHAR IS NULL OR a.drop_id = $1
ORDER BY a.drop_id, a.rel_path, c.start_s
"""

# The words of the exported segments only: the words table is the biggest one, most of it not curated.
WORDS_SQL = """
SELECT w.segment_id, w.word_index, w.word, w.start_s, w.end_s, w.probability
FROM words w
JOIN curated_segments c ON c.segment_id = w.segment_id AND c.shard = w.shard
JOIN audio_files a ON a.file_id = c.file_id AND a.shard = c.shard AND a.status = 'ok'
WHERE $1::VARCHAR IS NULL OR a.drop_id = $1
ORDER BY w.segment_id, w.word_index
"""


@dataclass(frozen=True)
class ExportSummary:
    """What an export wrote: counts for the one line the CLI prints, and the files."""

    segments: int
    seconds: float
    audio_files: int
    drops: int
    written: list[Path] = field(default_factory=list)


def load_curated(warehouse: Path, drop_id: str | None = None) -> pl.DataFrame:
    """The curated segments to export (one drop's, or every drop's), with their files' columns."""
    return query(warehouse, CURATED_SQL, [drop_id])


def load_words(warehouse: Path, drop_id: str | None = None) -> pl.DataFrame:
    """The recognized words of the curated segments to export, in order within each segment."""
    return query(warehouse, WORDS_SQL, [drop_id])


def drop_roots(warehouse: Path) -> list[Path]:
    """The folder of every drop the platform has seen: an export must never write into one."""
    return [Path(root) for (root,) in query(warehouse, "SELECT DISTINCT drop_root FROM drops").iter_rows()]


def _optional(value: Any) -> Any:
    """``value``, or None for a NaN: JSON has no NaN, and a missing number is what NaN means here."""
    return None if isinstance(value, float) and math.isnan(value) else value


def _without_nulls(row: dict[str, Any]) -> dict[str, Any]:
    # As Lhotse's to_dict (asdict_nonull) and NeMo's optional keys: an absent value is no key.
    return {key: value for key, value in row.items() if value is not None}


def _channel_ids(channels: int | None) -> list[int]:
    return list(range(max(int(channels or 1), 1)))


def nemo_rows(curated: pl.DataFrame) -> list[dict[str, Any]]:
    """One NeMo ASR manifest entry per curated segment (columns of :data:`CURATED_SQL`)."""
    rows = []
    for seg in curated.iter_rows(named=True):
        rows.append(
            {
                # The four keys every NeMo ASR dataset reads; offset/duration cut the segment from the file.
                "audio_filepath": seg["source_path"],
                "offset": _seconds(seg["start_s"]),
                "duration": _seconds(seg["duration_s"]),
                "text": seg["text"] or "",
            }
            | _without_nulls(
                {
                    "lang": seg["language"],
                    "speaker": seg["speaker"],
                    "segment_id": seg["segment_id"],
                    "topsis_score": _optional(seg["topsis_score"]),
                    "drop_id": seg["drop_id"],
                    "source_group": source_group(seg["rel_path"]),
                }
            )
        )
    return rows


def word_alignments(words: pl.DataFrame) -> dict[str, list[list[Any]]]:
    """segment_id -> Lhotse word alignment: ``[symbol, start, duration, score]`` per word, in order.

    Times stay relative to the recording (the source file), as Lhotse's supervisions' are; the score
    is the ASR's word probability."""
    alignments: dict[str, list[list[Any]]] = {}
    for word in words.sort("segment_id", "word_index").iter_rows(named=True):
        start, end = word["start_s"], word["end_s"]
        # Rounded to the microsecond: end - start in floating point would carry noise like 0.30000000000000004.
        duration = round(max(end - start, 0.0), 6)
        item = [word["word"].strip(), start, duration, _optional(word["probability"])]
        alignments.setdefault(word["segment_id"], []).append(item)
    return alignments


def lhotse_recordings(curated: pl.DataFrame) -> list[dict[str, Any]]:
    """One Lhotse ``Recording`` dict per source file of the curated segments (id = ``file_id``)."""
    recordings = []
    for f in curated.unique("file_id", keep="first", maintain_order=True).iter_rows(named=True):
        rate = int(f["sample_rate"])
        # audio_files holds the decoded length; Lhotse wants samples at the native rate, and a
        # duration equal to num_samples / sampling_rate (it validates the two against each other).
        num_samples = round(f["file_duration_s"] * rate)
        channels = _channel_ids(f["channels"])
        recordings.append(
            {
                "id": f["file_id"],
                "sources": [{"type": "file", "channels": channels, "source": f["source_path"]}],
                "sampling_rate": rate,
                "num_samples": num_samples,
                "duration": num_samples / rate,
                "channel_ids": channels,
            }
        )
    return recordings


def lhotse_supervisions(
    curated: pl.DataFrame, alignments: Mapping[str, list[list[Any]]] | None = None
) -> list[dict[str, Any]]:
    """One Lhotse ``SupervisionSegment`` dict per curated segment, with its word alignment if known."""
    alignments = alignments or {}
    supervisions = []
    for seg in curated.iter_rows(named=True):
        channels = _channel_ids(seg["channels"])
        words = alignments.get(seg["segment_id"])
        supervisions.append(
            _without_nulls(
                {
                    "id": seg["segment_id"],
                    "recording_id": seg["file_id"],
                    "start": _seconds(seg["start_s"]),
                    "duration": _seconds(seg["duration_s"]),
                    # The text was transcribed from the downmix: it belongs to all channels together.
                    "channel": channels[0] if len(channels) == 1 else channels,
                    "text": seg["text"],
                    "language": seg["language"],
                    "speaker": seg["speaker"],
                    "custom": _without_nulls(
                        {
                            "topsis_score": _optional(seg["topsis_score"]),
                            "drop_id": seg["drop_id"],
                            "source_group": source_group(seg["rel_path"]),
                        }
                    ),
                    "alignment": {"word": words} if words else None,
                }
            )
        )
    return supervisions


def check_output_dir(out_dir: Path, *, home: Path, protected: Iterable[Path], overwrite: bool = False) -> Path:
    """``out_dir`` resolved, after refusing (ValueError) a folder the export must not write into:
    inside the platform home (or any folder marked as one), inside a drop folder or another
    ``protected`` folder (the lake), a file, or a non-empty folder without ``overwrite``."""
    out = Path(out_dir).expanduser().resolve()
    home = Path(home).expanduser().resolve()
    # Resolved on both sides, so a symlink or a `..` cannot lead the export into the platform's
    # state or a drop: a manifest written into a drop would be read as input on its next run.
    if out.is_relative_to(home):
        raise ValueError(f"{out_dir} is inside the platform home {home}: give a folder outside it for the export")
    marked = next((folder for folder in (out, *out.parents) if is_platform_home(folder)), None)
    if marked is not None:
        raise ValueError(
            f"{out_dir} is inside the platform home {marked} (it holds {HOME_MARKER}): give a folder outside it"
        )
    for root in protected:
        root = Path(root).expanduser().resolve()
        if out.is_relative_to(root):
            raise ValueError(
                f"{out_dir} is inside {root}, a drop folder or the lake, which an export never writes into: "
                "give a folder outside it"
            )
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out_dir} is a file: give a folder for the export")
    if out.is_dir() and not overwrite and any(out.iterdir()):
        raise ValueError(
            f"{out_dir} is not empty: give a new or empty folder, or --overwrite to replace the export's files in it"
        )
    return out


def _dump(write: Callable[[bytes], object], rows: Iterable[Mapping[str, Any]]) -> None:
    for row in rows:
        # ASCII with \\u escapes: any path or text (spaces, quotes, any script) parses back the same
        # whatever encoding a reader opens the file with; NaN is refused, being no JSON.
        write(json.dumps(row, ensure_ascii=True, allow_nan=False).encode("ascii") + b"\n")


def write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]], *, compress: bool = False) -> Path:
    """Write ``rows`` as JSON lines (gzip when ``compress``) to ``path`` atomically: a temp file
    beside it, then ``os.replace``, so a reader never sees half a manifest."""
    temp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        with open(temp, "wb") as raw:
            if compress:
                # mtime=0 and no name in the header: the same rows give the same bytes.
                with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as packed:
                    _dump(packed.write, rows)
            else:
                _dump(raw.write, rows)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return path


def _write_part(
    curated: pl.DataFrame, out_dir: Path, fmt: str, prefix: str, alignments: Mapping[str, list[list[Any]]]
) -> list[Path]:
    if fmt == "nemo":
        return [write_jsonl(out_dir / (f"{prefix}.jsonl" if prefix else NEMO_MANIFEST), nemo_rows(curated))]
    stem = f"{prefix}_" if prefix else ""
    return [
        write_jsonl(out_dir / f"{stem}{LHOTSE_RECORDINGS}", lhotse_recordings(curated), compress=True),
        write_jsonl(out_dir / f"{stem}{LHOTSE_SUPERVISIONS}", lhotse_supervisions(curated, alignments), compress=True),
    ]


def write_nemo_tarred(
    curated: pl.DataFrame,
    out_dir: Path,
    *,
    segments_per_tar: int = DEFAULT_SEGMENTS_PER_TAR,
    load_audio: Callable[[str], np.ndarray] = lambda path: decode_mono_16k(Path(path)),
) -> list[Path]:
    """The tars and the manifest of the NeMo tarred format (see the module docstring).
    ``load_audio(source_path)`` gives a file's 16 kHz mono samples; rows come grouped by file
    (:data:`CURATED_SQL`'s order), so each file is decoded once per tar. Each tar is written to a
    temp file and renamed, the manifest last: a reader never sees a manifest naming a missing tar."""
    if segments_per_tar < 1:
        raise ValueError(f"segments_per_tar must be >= 1, got {segments_per_tar}")
    rows = nemo_rows(curated)
    written: list[Path] = []
    manifest: list[dict[str, Any]] = []
    for shard_id, start in enumerate(range(0, len(rows), segments_per_tar)):
        path = out_dir / f"audio_{shard_id}.tar"
        temp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
        loaded: tuple[str, np.ndarray] | None = None
        try:
            with tarfile.open(temp, "w", format=tarfile.PAX_FORMAT) as tar:
                for row in rows[start : start + segments_per_tar]:
                    if loaded is None or loaded[0] != row["audio_filepath"]:
                        loaded = (row["audio_filepath"], load_audio(row["audio_filepath"]))
                    first = round(row["offset"] * SAMPLE_RATE)
                    samples = loaded[1][first : first + round(row["duration"] * SAMPLE_RATE)]
                    wav = io.BytesIO()
                    sf.write(wav, samples, SAMPLE_RATE, format="WAV", subtype="PCM_16")
                    member = tarfile.TarInfo(f"{row['segment_id']}.wav")
                    member.size = wav.tell()
                    wav.seek(0)
                    tar.addfile(member, wav)  # mtime 0 and no owner: the same rows give the same bytes
                    manifest.append(
                        {
                            "audio_filepath": member.name,
                            "duration": _seconds(samples.size / SAMPLE_RATE),
                            "text": row["text"],
                            "shard_id": shard_id,
                            "source_filepath": row["audio_filepath"],
                            "source_offset": row["offset"],
                        }
                        | {k: v for k, v in row.items() if k not in ("audio_filepath", "offset", "duration", "text")}
                    )
            os.replace(temp, path)
        finally:
            temp.unlink(missing_ok=True)
        written.append(path)
    return [*written, write_jsonl(out_dir / NEMO_TARRED_MANIFEST, manifest)]


def write_export(
    curated: pl.DataFrame,
    out_dir: Path,
    fmt: str,
    *,
    words: pl.DataFrame | None = None,
    split_by_drop: bool = False,
    segments_per_tar: int = DEFAULT_SEGMENTS_PER_TAR,
) -> ExportSummary:
    """Write the manifests of ``curated`` (rows of :data:`CURATED_SQL`) in format ``fmt`` into
    ``out_dir`` (checked by :func:`check_output_dir` first): all segments in one manifest, and with
    ``split_by_drop`` also one per drop, named by its drop id. ``words`` (rows of :data:`WORDS_SQL`)
    become the Lhotse supervisions' word alignments. ``nemo-tarred`` cuts the audio into tars of
    ``segments_per_tar`` segments (one set for all drops)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}: one of {', '.join(FORMATS)}")
    if fmt == "nemo-tarred" and split_by_drop:
        raise ValueError("nemo-tarred writes one set of tars; export each drop with --drop instead")
    out_dir.mkdir(parents=True, exist_ok=True)
    if fmt == "nemo-tarred":
        return _summary(curated, write_nemo_tarred(curated, out_dir, segments_per_tar=segments_per_tar))
    alignments = word_alignments(words) if fmt == "lhotse" and words is not None else {}
    written = _write_part(curated, out_dir, fmt, "", alignments)
    if split_by_drop:
        for part in curated.partition_by("drop_id", maintain_order=True):
            written += _write_part(part, out_dir, fmt, str(part["drop_id"][0]), alignments)
    return _summary(curated, written)


def _summary(curated: pl.DataFrame, written: list[Path]) -> ExportSummary:
    return ExportSummary(
        segments=curated.height,
        seconds=float(curated["duration_s"].sum()),
        audio_files=curated["file_id"].n_unique(),
        drops=curated["drop_id"].n_unique(),
        written=written,
    )


def _seconds(value: float) -> float:
    # Microseconds: below any sample period, and free of the warehouse's float noise (4.668000000000001).
    return round(float(value), 6)
