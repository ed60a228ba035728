"""Near-duplicate segments: the same speech seen again, re-encoded, resampled, trimmed or noisier.

Exact-byte dedupe (the content claims of ingest) keeps one copy of identical files only. Here
every VAD segment gets a landmark fingerprint (:mod:`audio_platform.audio.fingerprint`), stored
in the lake as ``segment_fingerprints``, and is looked up against every fingerprinted segment of
every shard and drop. A segment that repeats an *earlier* one is linked to it in
``near_duplicates`` (``near_duplicate_of``, ``similarity``, ``coverage``, ``offset_s``) and the
curation policy rejects it (``near_duplicate ...``) while the earlier copy is curated, so one copy
stays in the curated set.

"Earlier" is a fixed order of segments, not the order shards happened to run in, so a re-run
gives the same answer: the drop first seen earlier (``drops.first_seen_at``, then drop id), then
shard key, file path in the drop and start time. A segment is only ever a duplicate of one
before it, so of two copies exactly one is kept. Copies inside one shard are found the same way.

Plain functions over polars frames: no Dagster.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl

from audio_platform.audio.dsp import SAMPLE_RATE
from audio_platform.audio.fingerprint import FRAME_S, Fingerprint, FingerprintIndex, fingerprint

# Lake rows: one hash of one segment's audio, with the frame of its anchor peak.
FINGERPRINT_SCHEMA = {"segment_id": pl.String, "hash": pl.UInt32, "frame": pl.Int32}
NEAR_DUPLICATE_SCHEMA = {
    "segment_id": pl.String,
    "near_duplicate_of": pl.String,
    "duplicate_shard": pl.String,
    "similarity": pl.Float64,
    "coverage": pl.Float64,
    "offset_s": pl.Float64,
    "matched_hashes": pl.Int64,
}


def fingerprint_segments(
    segments: pl.DataFrame, files: pl.DataFrame, load_audio: Callable[[str, str], np.ndarray]
) -> pl.DataFrame:
    """Every landmark hash of every segment (``segment_id``, ``hash``, ``frame``).

    ``segments`` needs ``segment_id``, ``file_id``, ``start_s``, ``end_s``; ``files`` (audio_files
    rows) gives each file's ``source_path``; ``load_audio(file_id, source_path)`` returns its 16 kHz
    mono samples (the platform's audio cache), loaded once per file.
    """
    paths = dict(files.filter(pl.col("status") == "ok").select("file_id", "source_path").iter_rows())
    frames = [pl.DataFrame(schema=FINGERPRINT_SCHEMA)]
    for (file_id,), group in segments.group_by("file_id", maintain_order=True):
        audio = load_audio(str(file_id), paths[file_id])
        for segment_id, start_s, end_s in group.select("segment_id", "start_s", "end_s").iter_rows():
            print_ = fingerprint(audio[round(start_s * SAMPLE_RATE) : round(end_s * SAMPLE_RATE)])
            frames.append(
                pl.DataFrame(
                    {"segment_id": segment_id, "hash": print_.hashes, "frame": print_.frames},
                    schema=FINGERPRINT_SCHEMA,
                )
            )
    return pl.concat(frames)


def segment_order(segments: pl.DataFrame, files: pl.DataFrame, drops: pl.DataFrame) -> pl.DataFrame:
    """``segment_id``, ``shard`` and ``rank``: the fixed order in which a segment counts as earlier.

    ``segments`` and ``files`` are rows of every shard to compare (segments, audio_files);
    ``drops`` the drops table. A drop missing from it sorts last (never before a known one).
    """
    first_seen = drops.select("drop_id", pl.col("first_seen_at").cast(pl.String)).unique("drop_id")
    return (
        segments.select("segment_id", "file_id", "shard", "start_s")
        # The owner row: a byte-identical duplicate shares the file_id (and maybe the shard).
        .join(
            files.filter(pl.col("status") == "ok").select("file_id", "shard", "drop_id", "rel_path"),
            on=["file_id", "shard"],
            how="left",
        )
        .join(first_seen, on="drop_id", how="left")
        .sort(["first_seen_at", "drop_id", "shard", "rel_path", "start_s", "segment_id"], nulls_last=True)
        .with_row_index("rank")
        .select("segment_id", "shard", "rank")
    )


def _fingerprints(rows: pl.DataFrame) -> dict[str, Fingerprint]:
    """The stored hash rows back as fingerprints (sorted by hash, as ``fingerprint`` makes them)."""
    prints: dict[str, Fingerprint] = {}
    for (segment_id,), group in rows.sort("segment_id", "hash", "frame").group_by("segment_id", maintain_order=True):
        prints[str(segment_id)] = Fingerprint(
            group["hash"].to_numpy().astype(np.uint32),
            group["frame"].to_numpy().astype(np.int32),
            duration_s=0.0,  # not used by matching
            frame_s=FRAME_S,
        )
    return prints


def postings_for(stored: pl.DataFrame, query_hashes: pl.Series) -> pl.DataFrame:
    """The rows of ``stored`` (fingerprint rows of some segments) that share a hash with the
    query, each with its segment's whole hash count ``n_hashes``: all that matching needs of the
    stored segments, so a lookup reads one shard at a time and keeps only these."""
    return (
        stored.select("segment_id", "hash", "frame")
        .with_columns(n_hashes=pl.len().over("segment_id").cast(pl.Int64))
        .filter(pl.col("hash").is_in(query_hashes.implode()))
    )


def find_near_duplicates(
    queries: pl.DataFrame, postings: pl.DataFrame, order: pl.DataFrame, min_score: float
) -> pl.DataFrame:
    """For each segment of ``queries`` (its fingerprint rows), the best match among the segments
    of ``postings`` that come before it in ``order`` (see :func:`segment_order`), when it
    scores at least ``min_score`` on enough hashes (:data:`fingerprint.MIN_MATCHED_HASHES`) and
    covers at least ``min_score`` of the query's own hashes: the similarity is a share of the
    *smaller* fingerprint, so a short earlier clip inside a long new segment scores high, yet
    most of that segment is new speech and is no one's copy (``coverage`` says how much is).

    ``postings`` (rows of :func:`postings_for`) hold every segment to compare against (the
    queries' own shard included); segments without a rank in ``order`` are skipped. Returns
    :data:`NEAR_DUPLICATE_SCHEMA` rows.
    """
    rank = dict(order.select("segment_id", "rank").iter_rows())
    shard_of = dict(order.select("segment_id", "shard").iter_rows())
    known = postings.filter(pl.col("segment_id").is_in(list(rank)))
    n_hashes = dict(known.select("segment_id", "n_hashes").unique("segment_id").iter_rows())
    index = FingerprintIndex()
    for segment_id, print_ in _fingerprints(known).items():
        index.add(segment_id, print_, n_hashes[segment_id])
    rows = []
    for segment_id, print_ in _fingerprints(queries).items():
        own = rank.get(segment_id)
        if own is None:
            continue
        own_hashes = max(print_.hashes.size, 1)
        earlier = [
            m
            for m in index.query(print_, min_score=min_score)
            if rank[m.item_id] < own and m.matched / own_hashes >= min_score
        ]
        if earlier:
            best = earlier[0]
            rows.append(
                {
                    "segment_id": segment_id,
                    "near_duplicate_of": best.item_id,
                    "duplicate_shard": shard_of[best.item_id],
                    "similarity": round(best.score, 4),
                    "coverage": round(best.matched / own_hashes, 4),
                    "offset_s": round(best.offset_s, 3),
                    "matched_hashes": best.matched,
                }
            )
    return pl.DataFrame(rows, schema=NEAR_DUPLICATE_SCHEMA)
