"""Exports of the curated set in trainers' formats: NeMo, Lhotse and Hugging Face.

The warehouse is the source of truth: every exported row is a ``curated_segments`` row of an
``ok`` file (:data:`CURATED_SQL`; the per-shard export asset, ``defs/exports.py``, runs the same
query over one shard's lake tables, :func:`load_shard`). Two kinds of formats:

* **Manifests** (``nemo``, ``lhotse``): no audio is copied or cut. Both name the source file and
  the segment's span in it (NeMo's ``offset``/``duration``, a Lhotse supervision's
  ``start``/``duration`` inside its recording), so an export is small, quick, and always in step
  with what the warehouse holds.
* **Cut audio** (``nemo-tarred``, ``audiofolder``, ``lhotse-shar``): each segment cut from the
  16 kHz mono samples the platform transcribed (:func:`cut_segments`: rows come grouped by file,
  so a file is decoded once per tar, or once in all), as 16-bit PCM; one set of files for all drops.

The formats:

* **NeMo** (``manifest.jsonl``): one line per segment, ``audio_filepath`` (absolute source path),
  ``offset``, ``duration``, ``text``, plus ``lang``, ``segment_id``, ``topsis_score``, ``drop_id``,
  ``source_group`` and ``speaker`` (when the drop's metadata names one). NeMo's ASR datasets cut
  the span out of the long file with ``offset``/``duration`` and ignore keys they do not use.
* **NeMo tarred** (``audio_0.tar`` … and ``tarred_audio_manifest.json``): what NeMo's tarred ASR
  datasets read at scale (``tarred_audio_filepaths: audio__OP_0..N_CL_.tar``): each segment as WAV,
  ``<segment_id>.wav`` in tar ``shard_id``, at most ``segments_per_tar`` per tar; the manifest's
  ``audio_filepath`` is that member name, and ``source_filepath``/``source_offset`` say where it
  came from.
* **Lhotse** (``recordings.jsonl.gz``, ``supervisions.jsonl.gz``): a ``Recording`` per file and a
  ``SupervisionSegment`` per segment, written as Lhotse's ``to_dict()`` writes them (null fields
  left out, word alignments as ``[symbol, start, duration, score]`` lists, the format since Lhotse
  1.8), without importing Lhotse. The recording has the file's native sample rate and every one of
  its channels; the platform transcribed the mono downmix, so a multi-channel file's supervision
  names all its channels: the text belongs to the mix, not to one channel.
* **Hugging Face audiofolder** (``metadata.csv``, ``data/<segment_id>.flac``): what
  ``datasets.load_dataset("audiofolder", data_dir=...)`` reads: each segment as FLAC, and one CSV
  row per segment (:data:`AUDIOFOLDER_COLUMNS`: ``file_name``, ``transcription``, ``duration``,
  then where it came from), written by the csv module (RFC 4180 quoting, UTF-8), so commas,
  quotes, line breaks and any script in texts and paths read back as written. No split folders:
  it loads as one ``train`` split.
* **Lhotse Shar** (``cuts.000000.jsonl.gz`` + ``recording.000000.tar``, ``…000001…``): what
  ``CutSet.from_shar(in_dir=...)`` reads, as Lhotse's ``SharWriter(fields={"recording": "flac"})``
  writes it, without importing Lhotse: shards of at most ``segments_per_tar`` cuts; each cut a
  ``MonoCut`` (id = segment id, start 0, channel 0) with one supervision over all of it (text,
  language, speaker, word alignment relative to the cut); its recording (id = file id, 16 kHz mono)
  is the tar's member pair ``<segment_id>.flac`` and ``<segment_id>.json`` (the recording manifest,
  its source a ``shar`` placeholder), the same manifest as in the cut.

Every file is written to a temp file beside it and renamed, a format's index last (the
manifests, ``metadata.csv``, a Shar shard's cuts after its tar), so a reader never sees half a
file nor an index naming missing audio; the files of an earlier cut-audio export that this one
did not write are removed (a Shar reader takes every shard in its folder). Plain functions over
polars frames: no Dagster, so the CLI, the export asset (or a notebook) call them directly.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import os
import shutil
import tarfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import duckdb
import numpy as np
import polars as pl
import soundfile as sf

from audio_platform.audio.decode import decode_mono_16k
from audio_platform.audio.dsp import SAMPLE_RATE
from audio_platform.evaluation.asr_accuracy import source_group
from audio_platform.storage.drops import HOME_MARKER, is_platform_home
from audio_platform.storage.lake import Lake, glob_escape
from audio_platform.storage.tables import AUDIO_FILES, CURATED_SEGMENTS, FILE_METADATA, WORDS
from audio_platform.storage.temp_files import STALE_TEMP_AGE_S
from audio_platform.storage.warehouse import query

FORMATS = ("nemo", "nemo-tarred", "lhotse", "audiofolder", "lhotse-shar")
# The formats that cut the audio: one set of files for all drops (no per-drop manifests).
AUDIO_FORMATS = frozenset({"nemo-tarred", "audiofolder", "lhotse-shar"})
# The formats that carry the recognized words (Lhotse word alignments).
ALIGNED_FORMATS = frozenset({"lhotse", "lhotse-shar"})
NEMO_MANIFEST = "manifest.jsonl"
NEMO_TARRED_MANIFEST = "tarred_audio_manifest.json"
DEFAULT_SEGMENTS_PER_TAR = 1000
LHOTSE_RECORDINGS = "recordings.jsonl.gz"
LHOTSE_SUPERVISIONS = "supervisions.jsonl.gz"
AUDIOFOLDER_METADATA = "metadata.csv"
AUDIOFOLDER_DATA = "data"
AUDIOFOLDER_COLUMNS = (
    "file_name",
    "transcription",
    "duration",
    "language",
    "speaker",
    "source_path",
    "offset",
    "segment_id",
    "drop_id",
    "topsis_score",
)
# A Shar shard's files (Lhotse's `cuts.%06d.jsonl.gz` and `<field>.%06d.tar`).
SHAR_CUTS = "cuts.{:06d}.jsonl.gz"
SHAR_RECORDING = "recording.{:06d}.tar"

# (file_id, source_path) -> the file's 16 kHz mono float32 samples, as the platform transcribed them.
AudioLoader = Callable[[str, str], np.ndarray]
Result = TypeVar("Result")

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


def load_shard(lake: Lake, shard: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One shard's curated segments and their words (the rows of :data:`CURATED_SQL` and
    :data:`WORDS_SQL`), from its lake tables: the warehouse, refreshed after the shards, may not
    hold them yet when the shard's export runs. The same SQL, so the same rows as the CLI's."""
    with duckdb.connect() as con:
        for table in (CURATED_SEGMENTS, AUDIO_FILES, FILE_METADATA, WORDS):
            # A shard ingested before drop metadata existed has no file_metadata.
            frame = lake.read_many(table.name, [shard])
            con.register(table.name, table.empty() if frame is None else frame)
        return con.sql(CURATED_SQL, params=[None]).pl(), con.sql(WORDS_SQL, params=[None]).pl()


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


def check_not_protected(out_dir: Path, protected: Iterable[Path]) -> Path:
    """``out_dir`` resolved, after refusing (ValueError) a folder inside a drop folder or another
    ``protected`` folder (the lake). Resolved on both sides, so a symlink or a ``..`` cannot lead an
    export into a drop: a file written into a drop would be read as input on its next run."""
    out = Path(out_dir).expanduser().resolve()
    for root in protected:
        root = Path(root).expanduser().resolve()
        if out.is_relative_to(root):
            raise ValueError(
                f"{out_dir} is inside {root}, a drop folder or the lake, which an export never writes into: "
                "give a folder outside it"
            )
    return out


def check_output_dir(out_dir: Path, *, home: Path, protected: Iterable[Path], overwrite: bool = False) -> Path:
    """``out_dir`` resolved, after refusing (ValueError) a folder the export must not write into:
    inside the platform home (or any folder marked as one), inside a drop folder or another
    ``protected`` folder (the lake), a file, or a non-empty folder without ``overwrite``."""
    out = Path(out_dir).expanduser().resolve()
    home = Path(home).expanduser().resolve()
    # The platform's state is off limits too (the export asset alone writes under home/exports).
    if out.is_relative_to(home):
        raise ValueError(f"{out_dir} is inside the platform home {home}: give a folder outside it for the export")
    marked = next((folder for folder in (out, *out.parents) if is_platform_home(folder)), None)
    if marked is not None:
        raise ValueError(
            f"{out_dir} is inside the platform home {marked} (it holds {HOME_MARKER}): give a folder outside it"
        )
    check_not_protected(out_dir, protected)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out_dir} is a file: give a folder for the export")
    if out.is_dir() and not overwrite and any(out.iterdir()):
        raise ValueError(
            f"{out_dir} is not empty: give a new or empty folder, or --overwrite to replace the export's files in it"
        )
    return out


def _json_line(row: Mapping[str, Any]) -> bytes:
    # ASCII with \\u escapes: any path or text (spaces, quotes, any script) parses back the same
    # whatever encoding a reader opens the file with; NaN is refused, being no JSON.
    return json.dumps(row, ensure_ascii=True, allow_nan=False).encode("ascii") + b"\n"


def _write_atomically(path: Path, write: Callable[[IO[bytes]], object], *, durable: bool = True) -> Path:
    """Write ``path`` through ``write(file)`` atomically: into a temp file beside it, then
    ``os.replace``, so a reader sees the previous file or the whole new one. ``durable`` syncs it
    to disk before the rename: the indexes (manifests, metadata.csv); the audio files, the bulk of
    an export, are not synced one by one."""
    temp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        with open(temp, "wb") as raw:
            write(raw)
            if durable:
                raw.flush()
                os.fsync(raw.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return path


def write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]], *, compress: bool = False) -> Path:
    """Write ``rows`` as JSON lines (gzip when ``compress``) to ``path`` atomically (synced), so a
    reader never sees half a manifest."""

    def write(raw: IO[bytes]) -> None:
        if not compress:
            raw.writelines(map(_json_line, rows))
            return
        # mtime=0 and no name in the header: the same rows give the same bytes.
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as packed:
            packed.writelines(map(_json_line, rows))

    return _write_atomically(path, write)


def write_csv(path: Path, header: Iterable[str], rows: Iterable[Iterable[Any]]) -> Path:
    """Write ``header`` and ``rows`` as UTF-8 CSV to ``path`` atomically (synced). The csv module's
    default dialect is RFC 4180: a field with a comma, a quote or a line break (CR or LF) is quoted,
    rows end in CRLF, so any text or path reads back as written; None is an empty field."""

    def write(raw: IO[bytes]) -> None:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        writer = csv.writer(text)
        writer.writerow(header)
        writer.writerows(rows)
        text.flush()
        text.detach()  # the file is the caller's to sync and close

    return _write_atomically(path, write)


def _write_bytes(path: Path, data: bytes) -> Path:
    return _write_atomically(path, lambda raw: raw.write(data), durable=False)


def _write_tar(path: Path, members: Iterable[tuple[str, bytes]]) -> Path:
    """A tar of ``members`` (name, content) in order, written atomically; mtime 0 and no owner in
    the headers: the same rows give the same bytes."""

    def write(raw: IO[bytes]) -> None:
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name, data in members:
                member = tarfile.TarInfo(name)
                member.size = len(data)
                tar.addfile(member, io.BytesIO(data))

    return _write_atomically(path, write, durable=False)


def decode_source(file_id: str, source_path: str) -> np.ndarray:
    """The default :data:`AudioLoader`: the source file decoded to 16 kHz mono, as the platform
    decoded it to transcribe (the export asset reads the platform's audio cache instead)."""
    return decode_mono_16k(Path(source_path))


def encode_audio(samples: np.ndarray, container: str) -> bytes:
    """16 kHz mono ``samples`` as 16-bit PCM in ``container`` (``WAV`` or ``FLAC``), in memory."""
    buffer = io.BytesIO()
    sf.write(buffer, samples, SAMPLE_RATE, format=container, subtype="PCM_16")
    return buffer.getvalue()


def cut_segments(curated: pl.DataFrame, load_audio: AudioLoader) -> Iterator[tuple[dict[str, Any], np.ndarray]]:
    """Each row of ``curated`` (:data:`CURATED_SQL`) with its samples: its span, at the manifests'
    rounded offset and duration, of its file's 16 kHz mono samples (``load_audio``). Rows come
    grouped by file and only the current file is held, so each file is decoded once."""
    loaded: tuple[str, np.ndarray] | None = None
    for seg in curated.iter_rows(named=True):
        if loaded is None or loaded[0] != seg["file_id"]:
            loaded = (seg["file_id"], load_audio(seg["file_id"], seg["source_path"]))
        first = round(_seconds(seg["start_s"]) * SAMPLE_RATE)
        yield seg, loaded[1][first : first + round(_seconds(seg["duration_s"]) * SAMPLE_RATE)]


def _tars(curated: pl.DataFrame, segments_per_tar: int) -> Iterator[tuple[int, pl.DataFrame]]:
    """(number, rows) of each tar of at most ``segments_per_tar`` segments, in order."""
    if segments_per_tar < 1:
        raise ValueError(f"segments_per_tar must be >= 1, got {segments_per_tar}")
    for number, start in enumerate(range(0, curated.height, segments_per_tar)):
        yield number, curated.slice(start, segments_per_tar)


def _remove_stale(out_dir: Path, patterns: Iterable[str], written: Iterable[Path]) -> None:
    """Delete the files matching ``patterns`` in ``out_dir`` that this export did not write: those
    of an earlier, bigger export (``--overwrite``), which a reader taking every shard would mix in."""
    keep = set(written)
    for pattern in patterns:
        for path in out_dir.glob(pattern):
            if path not in keep:
                path.unlink()


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
    load_audio: AudioLoader = decode_source,
) -> list[Path]:
    """The tars and the manifest of the NeMo tarred format (see the module docstring), the
    manifest last: a reader never sees a manifest naming a missing tar."""
    manifest: list[dict[str, Any]] = []

    def members(shard_id: int, part: pl.DataFrame) -> Iterator[tuple[str, bytes]]:
        for row, (_, samples) in zip(nemo_rows(part), cut_segments(part, load_audio), strict=True):
            name = f"{row['segment_id']}.wav"
            manifest.append(
                {
                    "audio_filepath": name,
                    "duration": _seconds(samples.size / SAMPLE_RATE),
                    "text": row["text"],
                    "shard_id": shard_id,
                    "source_filepath": row["audio_filepath"],
                    "source_offset": row["offset"],
                }
                | {k: v for k, v in row.items() if k not in ("audio_filepath", "offset", "duration", "text")}
            )
            yield name, encode_audio(samples, "WAV")

    written = [
        _write_tar(out_dir / f"audio_{shard_id}.tar", members(shard_id, part))
        for shard_id, part in _tars(curated, segments_per_tar)
    ]
    written.append(write_jsonl(out_dir / NEMO_TARRED_MANIFEST, manifest))
    _remove_stale(out_dir, ["audio_*.tar"], written)
    return written


def write_audiofolder(curated: pl.DataFrame, out_dir: Path, *, load_audio: AudioLoader = decode_source) -> list[Path]:
    """The FLACs and ``metadata.csv`` of the audiofolder format (see the module docstring), the
    metadata last: a reader never sees a row naming a missing file."""
    (out_dir / AUDIOFOLDER_DATA).mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    rows: list[list[Any]] = []
    for seg, samples in cut_segments(curated, load_audio):
        file_name = f"{AUDIOFOLDER_DATA}/{seg['segment_id']}.flac"
        written.append(_write_bytes(out_dir / file_name, encode_audio(samples, "FLAC")))
        rows.append(
            [
                file_name,
                seg["text"] or "",
                _seconds(samples.size / SAMPLE_RATE),
                seg["language"],
                seg["speaker"],
                seg["source_path"],
                _seconds(seg["start_s"]),
                seg["segment_id"],
                seg["drop_id"],
                _optional(seg["topsis_score"]),
            ]
        )
    written.append(write_csv(out_dir / AUDIOFOLDER_METADATA, AUDIOFOLDER_COLUMNS, rows))
    _remove_stale(out_dir, [f"{AUDIOFOLDER_DATA}/*.flac"], written)
    return written


def shar_cut(seg: Mapping[str, Any], supervision: Mapping[str, Any], num_samples: int) -> dict[str, Any]:
    """The Shar ``MonoCut`` dict of one curated segment (a row of :data:`CURATED_SQL`) cut to
    ``num_samples`` 16 kHz mono samples, as Lhotse's SharWriter writes a cut: start 0, its recording
    a ``shar`` placeholder of the cut's own audio, its ``supervision`` (the segment's
    :func:`lhotse_supervisions` entry) moved onto the cut's time line and onto the mono channel."""
    duration = num_samples / SAMPLE_RATE
    offset = _seconds(seg["start_s"])
    moved = dict(supervision) | {"start": 0.0, "duration": duration, "channel": 0}
    if "alignment" in supervision:
        words = supervision["alignment"]["word"]
        moved["alignment"] = {"word": [[w, _seconds(start - offset), d, p] for w, start, d, p in words]}
    recording = {
        "id": seg["file_id"],
        "sources": [{"type": "shar", "channels": [0], "source": ""}],
        "sampling_rate": SAMPLE_RATE,
        "num_samples": num_samples,
        "duration": duration,
        "channel_ids": [0],
    }
    return {
        "id": seg["segment_id"],
        "start": 0,
        "duration": duration,
        "channel": 0,
        "supervisions": [moved],
        "recording": recording,
        # Where the audio came from, as the NeMo tarred manifest's source_filepath/source_offset.
        "custom": {"source_path": seg["source_path"], "source_offset": offset},
        "type": "MonoCut",
    }


def write_lhotse_shar(
    curated: pl.DataFrame,
    out_dir: Path,
    *,
    alignments: Mapping[str, list[list[Any]]] | None = None,
    segments_per_tar: int = DEFAULT_SEGMENTS_PER_TAR,
    load_audio: AudioLoader = decode_source,
) -> list[Path]:
    """The shards of the Lhotse Shar format (see the module docstring): for each, the recording
    tar, then its cuts (``alignments`` from :func:`word_alignments`)."""
    supervisions = {sup["id"]: sup for sup in lhotse_supervisions(curated, alignments)}

    def members(part: pl.DataFrame, cuts: list[dict[str, Any]]) -> Iterator[tuple[str, bytes]]:
        for seg, samples in cut_segments(part, load_audio):
            cut = shar_cut(seg, supervisions[seg["segment_id"]], samples.size)
            cuts.append(cut)
            # Data, then its manifest: Lhotse's TarIterator reads the members in such pairs.
            yield f"{cut['id']}.flac", encode_audio(samples, "FLAC")
            yield f"{cut['id']}.json", _json_line(cut["recording"])

    written: list[Path] = []
    for number, part in _tars(curated, segments_per_tar):
        cuts: list[dict[str, Any]] = []
        written.append(_write_tar(out_dir / SHAR_RECORDING.format(number), members(part, cuts)))
        written.append(write_jsonl(out_dir / SHAR_CUTS.format(number), cuts, compress=True))
    _remove_stale(out_dir, ["cuts.*.jsonl.gz", "recording.*.tar"], written)
    return written


def write_export(
    curated: pl.DataFrame,
    out_dir: Path,
    fmt: str,
    *,
    words: pl.DataFrame | None = None,
    split_by_drop: bool = False,
    segments_per_tar: int = DEFAULT_SEGMENTS_PER_TAR,
    load_audio: AudioLoader = decode_source,
) -> ExportSummary:
    """Write ``curated`` (rows of :data:`CURATED_SQL`) in format ``fmt`` into ``out_dir`` (checked
    by :func:`check_output_dir` or :func:`check_not_protected` first): all segments in one set of
    files, and with ``split_by_drop`` also one manifest per drop, named by its drop id (manifest
    formats only). ``words`` (rows of :data:`WORDS_SQL`) become the Lhotse word alignments. The
    cut-audio formats put ``segments_per_tar`` segments in a tar (``nemo-tarred``, ``lhotse-shar``)
    and read each file's samples with ``load_audio``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}: one of {', '.join(FORMATS)}")
    if fmt in AUDIO_FORMATS and split_by_drop:
        raise ValueError(f"{fmt} writes one set of files for all drops; export each drop with --drop instead")
    out_dir.mkdir(parents=True, exist_ok=True)
    alignments = word_alignments(words) if fmt in ALIGNED_FORMATS and words is not None else {}
    if fmt == "nemo-tarred":
        written = write_nemo_tarred(curated, out_dir, segments_per_tar=segments_per_tar, load_audio=load_audio)
    elif fmt == "audiofolder":
        written = write_audiofolder(curated, out_dir, load_audio=load_audio)
    elif fmt == "lhotse-shar":
        written = write_lhotse_shar(
            curated, out_dir, alignments=alignments, segments_per_tar=segments_per_tar, load_audio=load_audio
        )
    else:
        written = _write_part(curated, out_dir, fmt, "", alignments)
        if split_by_drop:
            for part in curated.partition_by("drop_id", maintain_order=True):
                written += _write_part(part, out_dir, fmt, str(part["drop_id"][0]), alignments)
    return _summary(curated, written)


def replace_folder(target: Path, write: Callable[[Path], Result]) -> Result:
    """``write(folder)`` into a new temp folder beside ``target``, then that folder renamed into
    ``target``'s place and the previous one deleted: a reader sees the previous export whole or the
    new one whole (for the instant between the two renames, none), never a half-written one. If
    ``write`` fails, its folder is removed and the previous export stays."""
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_folders(target)
    temp = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
    temp.mkdir()
    try:
        result = write(temp)
        previous = _move_aside(target)
        os.rename(temp, target)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    if previous is not None:
        shutil.rmtree(previous)
    return result


def remove_folder(target: Path) -> None:
    """Delete ``target`` if it exists, as a whole: renamed aside first, so no reader sees part of it."""
    previous = _move_aside(target)
    if previous is not None:
        shutil.rmtree(previous)


def _remove_stale_folders(target: Path) -> None:
    """Delete the temp and set-aside folders of ``target`` that a killed export left behind (older
    than ``STALE_TEMP_AGE_S``: newer ones may belong to an export in flight)."""
    now = time.time()
    for folder in target.parent.glob(f".{glob_escape(target.name)}.*"):
        if folder.suffix in (".tmp", ".old") and folder.is_dir() and now - folder.stat().st_mtime > STALE_TEMP_AGE_S:
            shutil.rmtree(folder, ignore_errors=True)


def _move_aside(target: Path) -> Path | None:
    if not target.exists():
        return None
    aside = target.parent / f".{target.name}.{uuid.uuid4().hex}.old"
    os.rename(target, aside)
    return aside


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
