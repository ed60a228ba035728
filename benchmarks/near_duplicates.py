"""Benchmark of near-duplicate detection (audio_platform/audio/fingerprint.py): where its defaults come from.

    nice -n 19 .venv/bin/python -m benchmarks.near_duplicates [--corpus ../shared/corpus] [--kws ../shared/kws]
                                                              [--clips 60] [--kws-every 4]

Prints Markdown tables:

* positives: ``--clips`` corpus speech clips of 2-12 s (one per recording), each transformed
  every way the fingerprint must survive (plus harsher extras), looked up in an index of the
  originals and every keyword clip as distractors: recall and precision at the default rule,
  pairwise score distribution, offset accuracy;
* negatives: all pairs of distinct corpus clips and all pairs of distinct takes of one word by one
  speaker (../shared/kws): false matches, the highest scores and evidence;
* short clips: keyword clips (0.3-1 s) and their copies, where the evidence rule decides;
* cost: fingerprinting throughput, index query time for N items, and the same lookup as one SQL
  join in DuckDB (checked against the numpy index) for the warehouse version.

Everything is single-threaded numpy; timings are noisy on a shared machine.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import soundfile as sf
from scipy.signal import resample_poly

from audio_platform.audio import fingerprint as fp_module
from audio_platform.audio.decode import decode_mono_16k
from audio_platform.audio.dsp import SAMPLE_RATE, colored_noise
from audio_platform.audio.fingerprint import (
    FRAME_S,
    HOP,
    MIN_MATCHED_HASHES,
    NEAR_DUPLICATE_MIN_SCORE,
    Fingerprint,
    FingerprintIndex,
    IndexMatch,
    Match,
    fingerprint,
    similarity,
)

REPO = Path(__file__).resolve().parents[1]
Transform = Callable[[np.ndarray, int], np.ndarray]


def codec(
    samples: np.ndarray, fmt: str, subtype: str, level: float | None = None, mode: str | None = None
) -> np.ndarray:
    buffer = io.BytesIO()
    sf.write(buffer, samples, SAMPLE_RATE, format=fmt, subtype=subtype, compression_level=level, bitrate_mode=mode)
    buffer.seek(0)
    return np.asarray(sf.read(buffer, dtype="float32")[0])


def noisy(samples: np.ndarray, snr_db: float, exponent: float, seed: int) -> np.ndarray:
    """``samples`` plus noise at ``snr_db`` below the clip's RMS (white 0, pink 1)."""
    noise = colored_noise(np.random.default_rng(seed), samples.size, exponent)
    rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
    return (samples + noise * rms * 10 ** (-snr_db / 20)).astype(np.float32)


def mp3(x: np.ndarray, _: int) -> np.ndarray:
    return codec(x, "MP3", "MPEG_LAYER_III")


@dataclass(frozen=True)
class Variant:
    name: str
    transform: Transform
    start_s: float  # where the copy starts in the original
    required: bool  # part of the specification; extras show where it breaks


def variants(trim_samples: int) -> list[Variant]:
    """The transformations; trims of ``trim_samples`` (0.5 s for clips, less for keyword clips)."""
    trim_s = trim_samples / SAMPLE_RATE
    recut = trim_samples + HOP // 2  # half a hop off the frame grid: the worst alignment
    return [
        Variant("mp3 (~53 kbit/s VBR)", mp3, 0.0, True),
        Variant("opus (~29 kbit/s)", lambda x, _: codec(x, "OGG", "OPUS"), 0.0, True),
        Variant(
            "resampled to 8 kHz and back",
            lambda x, _: resample_poly(resample_poly(x, 1, 2), 2, 1).astype(np.float32),
            0.0,
            True,
        ),
        Variant("gain +6 dB (clipped)", lambda x, _: np.clip(2.0 * x, -1.0, 1.0), 0.0, True),
        Variant("gain -6 dB", lambda x, _: 0.5 * x, 0.0, True),
        Variant(f"trim {trim_s:g} s at start", lambda x, _: x[trim_samples:], trim_s, True),
        Variant(f"trim {trim_s:g} s at end", lambda x, _: x[:-trim_samples], 0.0, True),
        Variant("white noise 20 dB SNR", lambda x, s: noisy(x, 20, 0.0, s), 0.0, True),
        Variant("white noise 10 dB SNR", lambda x, s: noisy(x, 10, 0.0, s), 0.0, True),
        Variant("pink noise 20 dB SNR", lambda x, s: noisy(x, 20, 1.0, s), 0.0, True),
        Variant("pink noise 10 dB SNR", lambda x, s: noisy(x, 10, 1.0, s), 0.0, True),
        Variant(
            "extra: mp3 24 kbit/s CBR",
            lambda x, _: codec(x, "MP3", "MPEG_LAYER_III", 0.9, "CONSTANT"),
            0.0,
            False,
        ),
        Variant("extra: opus ~9 kbit/s", lambda x, _: codec(x, "OGG", "OPUS", 0.99), 0.0, False),
        Variant(
            f"extra: trim {recut / SAMPLE_RATE:g} s + white 10 dB + mp3",
            lambda x, s: mp3(noisy(x[recut:], 10, 0.0, s), s),
            recut / SAMPLE_RATE,
            False,
        ),
    ]


def read_manifest(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def corpus_clips(corpus: Path, count: int) -> list[str]:
    """``count`` speech clips of 2-12 s spread over the sorted manifest, one per recording
    (LDC93S1 also ships resampled: those copies are positives, not distinct clips)."""
    rels = sorted(
        row["path"]
        for row in read_manifest(corpus / "manifest.csv")
        if row["kind"] == "speech" and 2.0 <= float(row["duration_s"]) <= 12.0 and "LDC93S1_" not in row["path"]
    )
    if count >= len(rels):
        return rels
    return [rels[i] for i in np.linspace(0, len(rels) - 1, count).round().astype(int)]


def kws_takes(kws: Path) -> dict[tuple[str, str, str], list[str]]:
    """Keyword clips by (source, word, speaker)."""
    takes: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for row in read_manifest(kws / "manifest.csv"):
        if "_background_noise_" not in row["path"]:
            takes[(row["path"].split("/")[1], row["word"], row["speaker"])].append(row["path"])
    return takes


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def positives_table(
    rels: list[str], audio: dict[str, np.ndarray], prints: dict[str, Fingerprint], index: FingerprintIndex
) -> tuple[str, float, float]:
    """Per variant: recall/precision of index lookups, pairwise scores, offsets. Also returns the
    audio seconds fingerprinted and the wall seconds it took."""
    rows, audio_s, wall_s = [], 0.0, 0.0
    for variant in variants(SAMPLE_RATE // 2):
        scores, offsets, true_found, false_found = [], [], 0, 0
        for seed, rel in enumerate(rels):
            copy = variant.transform(audio[rel], seed)
            start = time.perf_counter()
            query = fingerprint(copy)
            wall_s += time.perf_counter() - start
            audio_s += copy.size / SAMPLE_RATE
            pair = similarity(prints[rel], query)
            scores.append(pair.score)
            offsets.append(pair.offset_s)
            found = {m.item_id for m in index.query(query)}
            true_found += rel in found
            false_found += len(found - {rel})
        rows.append(
            [
                variant.name if variant.required else f"*{variant.name}*",
                len(rels),
                pct(true_found / len(rels)),
                pct(true_found / max(1, true_found + false_found)),
                f"{min(scores):.3f}",
                f"{np.percentile(scores, 5):.3f}",
                f"{statistics.median(scores):.3f}",
                f"{variant.start_s:.3f} / {statistics.median(offsets):.3f}",
                f"{sum(abs(o - variant.start_s) <= FRAME_S + 1e-9 for o in offsets)}/{len(rels)}",
            ]
        )
    header = [
        "copy",
        "queries",
        "recall",
        "precision",
        "min score",
        "p5 score",
        "median score",
        "offset s: true / median found",
        "offset within ±1 frame",
    ]
    return table(header, rows), audio_s, wall_s


def negatives_table(
    rels: list[str],
    prints: dict[str, Fingerprint],
    kws_prints: dict[str, Fingerprint],
    takes: dict[tuple[str, str, str], list[str]],
) -> str:
    """False matches among distinct recordings, and how close the closest pairs came."""
    groups: dict[str, list[tuple[Match, int]]] = defaultdict(list)
    for first, second in itertools.combinations(rels, 2):
        same = first.split("/")[1] == second.split("/")[1]
        name = "corpus: distinct clips, same source" if same else "corpus: distinct clips, other source"
        smaller = min(prints[first].hashes.size, prints[second].hashes.size)
        groups[name].append((similarity(prints[first], prints[second]), smaller))
    for (source, _, _), paths in sorted(takes.items()):
        for first, second in itertools.combinations(sorted(paths), 2):
            smaller = min(kws_prints[first].hashes.size, kws_prints[second].hashes.size)
            groups[f"kws {source}: same speaker, same word"].append(
                (similarity(kws_prints[first], kws_prints[second]), smaller)
            )
    rows = []
    for name, pairs in sorted(groups.items()):
        rows.append(
            [name, len(pairs), sum(match.is_near_duplicate for match, _ in pairs)]
            + [
                f"{max((m.score for m, n in pairs if n >= at_least), default=0.0):.3f}"
                for at_least in (MIN_MATCHED_HASHES, 100, 300)
            ]
            + [max(match.matched for match, _ in pairs)]
        )
    header = [
        "distinct recordings",
        "pairs",
        "false matches",
        f"max score, both >= {MIN_MATCHED_HASHES} hashes",
        "max score, both >= 100 hashes",
        "max score, both >= 300 hashes",
        "max matched hashes",
    ]
    return table(header, rows)


def short_clips_table(kws_audio: dict[str, np.ndarray], kws_prints: dict[str, Fingerprint], every: int) -> str:
    """Keyword clips and their copies (trims of 0.1 s): how often the evidence rule allows an answer."""
    sample = sorted(kws_audio)[::every]
    rows = []
    for variant in variants(SAMPLE_RATE // 10):
        if not variant.required:
            continue
        by_source: dict[str, list[tuple[float, int, bool]]] = defaultdict(list)
        for seed, rel in enumerate(sample):
            match = similarity(kws_prints[rel], fingerprint(variant.transform(kws_audio[rel], seed)))
            by_source[rel.split("/")[1]].append((match.score, match.matched, match.is_near_duplicate))
        cells: list[object] = [variant.name]
        for source in ("sc_v002_testset", "sc_v001_sample", "fsdd"):
            matches = by_source[source]
            scores = [score for score, matched, _ in matches if matched >= MIN_MATCHED_HASHES]
            cells += [
                pct(sum(d for _, _, d in matches) / len(matches)),
                f"{statistics.median(scores):.2f}" if scores else "-",
            ]
        rows.append(cells)
    header = ["copy"]
    for source in ("Speech Commands v2", "Speech Commands v1", "FSDD"):
        header += [f"{source} recall", f"{source} median score (enough evidence)"]
    return table(header, rows)


def index_cost_table(items: dict[str, Fingerprint], queries: list[Fingerprint]) -> str:
    rows = []
    ids = sorted(items)
    for n in (100, 1000, len(ids)):
        chosen = ids[:: max(1, len(ids) // n)][:n]
        start = time.perf_counter()
        index = FingerprintIndex()
        for item_id in chosen:
            index.add(item_id, items[item_id])
        index.query(queries[0])  # merges the postings
        build_s = time.perf_counter() - start
        times = []
        for query in queries:
            start = time.perf_counter()
            index.query(query)
            times.append(time.perf_counter() - start)
        postings = sum(items[i].hashes.size for i in chosen)
        rows.append(
            [
                n,
                postings,
                f"{postings * 12 / 2**20:.1f}",
                f"{1000 * build_s:.0f}",
                f"{1000 * statistics.median(times):.2f}",
                f"{1000 * np.percentile(times, 95):.2f}",
            ]
        )
    header = ["items", "hashes", "index MiB", "build ms", "query median ms", "query p95 ms"]
    return table(header, rows)


# The index lookup as one SQL join, for every query of a batch at once: what a warehouse runs to
# check a new drop (query_hashes) against every earlier drop (fingerprint_hashes).
LOOKUP_SQL = """
WITH hits AS (
    SELECT q.query_id, h.item_id, h.frame - q.frame AS delta, q.hash, q.frame AS q_frame, h.frame AS i_frame
    FROM query_hashes q JOIN fingerprint_hashes h ON h.hash = q.hash
),
votes AS (SELECT query_id, item_id, delta, count(*) AS n FROM hits GROUP BY ALL),
windowed AS (
    SELECT query_id, item_id, delta,
           sum(n) OVER (PARTITION BY query_id, item_id ORDER BY delta
                        RANGE BETWEEN 1 PRECEDING AND 1 FOLLOWING) AS n
    FROM votes
),
best AS (
    SELECT query_id, item_id, delta FROM windowed
    QUALIFY row_number() OVER (PARTITION BY query_id, item_id ORDER BY n DESC, delta) = 1
),
matched AS (
    SELECT hits.query_id, hits.item_id, best.delta,
           least(count(DISTINCT (hits.hash, hits.q_frame)), count(DISTINCT (hits.hash, hits.i_frame))) AS matched
    FROM hits JOIN best USING (query_id, item_id)
    WHERE hits.delta BETWEEN best.delta - 1 AND best.delta + 1
    GROUP BY ALL
)
SELECT m.query_id, m.item_id, m.delta, m.matched, m.matched / least(i.n_hashes, q.n_hashes) AS score
FROM matched m JOIN fingerprint_items i USING (item_id) JOIN query_items q USING (query_id)
WHERE m.matched >= $min_matched AND m.matched / least(i.n_hashes, q.n_hashes) >= $min_score
"""


def register(con: duckdb.DuckDBPyConnection, name: str, prints: dict[str, Fingerprint], id_column: str) -> None:
    """``{name}_hashes(id, hash, frame)`` and ``{name}_items(id, n_hashes)`` from fingerprints."""
    hashes = pa.table(
        {
            id_column: [i for i, fp in prints.items() for _ in range(fp.hashes.size)],
            "hash": pa.array(np.concatenate([fp.hashes for fp in prints.values()]), pa.uint32()),
            "frame": pa.array(np.concatenate([fp.frames for fp in prints.values()]), pa.int32()),
        }
    )
    counts = pa.table({id_column: list(prints), "n_hashes": [fp.hashes.size for fp in prints.values()]})
    con.register(f"{name}_hashes_arrow", hashes)
    con.register(f"{name}_items_arrow", counts)
    con.execute(f"CREATE TABLE {name}_hashes AS SELECT * FROM {name}_hashes_arrow")
    con.execute(f"CREATE TABLE {name}_items AS SELECT * FROM {name}_items_arrow")


def duckdb_table(items: dict[str, Fingerprint], queries: dict[str, Fingerprint]) -> str:
    """Load the index into DuckDB, look every query up in one statement, compare with numpy."""
    con = duckdb.connect()
    register(con, "fingerprint", items, "item_id")
    register(con, "query", queries, "query_id")
    params = {"min_matched": MIN_MATCHED_HASHES, "min_score": NEAR_DUPLICATE_MIN_SCORE}
    start = time.perf_counter()
    sql_rows = con.execute(LOOKUP_SQL, params).fetchall()
    sql_s = time.perf_counter() - start
    index = FingerprintIndex()
    for item_id, fp in items.items():
        index.add(item_id, fp)
    start = time.perf_counter()
    found: dict[str, list[IndexMatch]] = {query_id: index.query(fp) for query_id, fp in queries.items()}
    numpy_s = time.perf_counter() - start
    from_sql = {(q, i, int(d), int(m), round(float(s), 9)) for q, i, d, m, s in sql_rows}
    from_numpy = {
        (q, m.item_id, round(m.offset_s / FRAME_S), m.matched, round(m.score, 9)) for q, ms in found.items() for m in ms
    }
    rows = [
        ["items / hashes", f"{len(items)} / {sum(fp.hashes.size for fp in items.values())}"],
        ["queries / hashes", f"{len(queries)} / {sum(fp.hashes.size for fp in queries.values())}"],
        ["matches (SQL, numpy)", f"{len(from_sql)}, {len(from_numpy)}"],
        ["identical results", str(from_sql == from_numpy)],
        ["DuckDB, one statement for all queries", f"{1000 * sql_s:.0f} ms"],
        ["numpy index, one query at a time", f"{1000 * numpy_s:.0f} ms"],
    ]
    return table(["DuckDB lookup", "value"], rows)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "corpus")
    parser.add_argument("--kws", type=Path, default=REPO.parent / "shared" / "kws")
    parser.add_argument("--clips", type=int, default=60)
    parser.add_argument("--kws-every", type=int, default=4, help="every n-th keyword clip for the short-clip table")
    args = parser.parse_args(argv)

    rels = corpus_clips(args.corpus, args.clips)
    audio = {rel: decode_mono_16k(args.corpus / rel) for rel in rels}
    start = time.perf_counter()
    prints = {rel: fingerprint(x) for rel, x in audio.items()}
    original_s = time.perf_counter() - start
    takes = kws_takes(args.kws)
    kws_audio = {rel: decode_mono_16k(args.kws / rel) for paths in takes.values() for rel in paths}
    kws_prints = {rel: fingerprint(x) for rel, x in kws_audio.items()}

    index = FingerprintIndex()
    for item_id, fp in itertools.chain(prints.items(), kws_prints.items()):
        index.add(item_id, fp)
    positives, copies_s, copies_wall_s = positives_table(rels, audio, prints, index)
    clip_s = sum(x.size for x in audio.values()) / SAMPLE_RATE

    print(
        f"## Near-duplicate detection (fingerprint.py defaults: score >= {NEAR_DUPLICATE_MIN_SCORE}, "
        f">= {MIN_MATCHED_HASHES} matched hashes)\n"
    )
    print(
        f"Positives: {len(rels)} corpus speech clips ({clip_s:.0f} s, 2-12 s each), each copy looked up in an "
        f"index of the {len(rels)} originals + {len(kws_prints)} keyword clips. Recall: the original is "
        "returned; precision: share of returned items that are the original. Scores are pairwise "
        "(original, copy). *Italic*: harsher than required.\n"
    )
    print(positives + "\n")
    print("Negatives: every pair of distinct recordings (no threshold can be tuned away from these).\n")
    print(negatives_table(rels, prints, kws_prints, takes) + "\n")
    print(
        f"Short clips: every {args.kws_every}th keyword clip (0.3-1 s) against its copy; recall is limited by "
        f"the evidence rule (>= {MIN_MATCHED_HASHES} matched hashes), not by the score.\n"
    )
    print(short_clips_table(kws_audio, kws_prints, args.kws_every) + "\n")

    per_s = np.array([fp.hashes.size / fp.duration_s for fp in prints.values()])
    cost = [
        ["fingerprint, originals", f"{clip_s / original_s:.0f}x real time ({clip_s:.0f} s of audio)"],
        ["fingerprint, all copies", f"{copies_s / copies_wall_s:.0f}x real time ({copies_s:.0f} s of audio)"],
        [
            "hashes per second of audio (median, min-max)",
            f"{np.median(per_s):.0f} ({per_s.min():.0f}-{per_s.max():.0f})",
        ],
        ["index bytes per hash", "12 (hash uint32, frame int32, item int32)"],
    ]
    print(table(["cost (one thread)", "value"], cost) + "\n")
    all_items = {**prints, **kws_prints}
    queries = [fingerprint(noisy(x, 20, 0.0, i)) for i, x in enumerate(audio.values())]
    print(f"Index query time, {len(queries)} queries (corpus clips + white noise 20 dB):\n")
    print(index_cost_table(all_items, queries) + "\n")
    sql_queries = {f"{rel} (mp3)": fingerprint(mp3(audio[rel], 0)) for rel in rels}
    sql_queries |= {f"{rel} (take)": fp for rel, fp in list(kws_prints.items())[:: 4 * args.kws_every]}
    print(duckdb_table(all_items, sql_queries))
    print(f"\nFrame {1000 * FRAME_S:g} ms; parameters: see {Path(fp_module.__file__).relative_to(REPO)}.")


if __name__ == "__main__":
    main()
