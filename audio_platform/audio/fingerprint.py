"""Near-duplicate audio detection: landmark fingerprints (Shazam/audfprint style) and their lookup.

Exact-byte dedupe misses the same recording after re-encoding (MP3, Opus), resampling to 8 kHz,
a gain change, trimming or added noise. A landmark fingerprint survives all of these because it
keeps only the *positions* of strong spectral peaks, which none of those operations move much:

1. STFT of the 16 kHz signal, 64 ms Hann windows every 16 ms, keeping 150-3500 Hz only, so that
   a copy that went through 8 kHz (and its anti-alias filter) has the very same band.
2. Peaks: local maxima of the dB spectrogram (±``PEAK_DT_FRAMES`` frames, ±``PEAK_DF_BINS``
   bins) that are (a) within ``PEAK_RANGE_DB`` of the loudest bin of the surrounding second, so
   levels are relative (gain does not matter) and quiet passages still get peaks, and (b)
   ``ABOVE_FLOOR_DB`` over their bin's noise floor (``FLOOR_PERCENTILE`` over time), so a
   stationary noise floor, recorded or added, yields no peaks of its own (this rule took the
   worst copy at 10 dB SNR from 0.07 to 0.4). The peak time is refined by a parabola through
   its neighbouring frames: without it a trim that is not a whole number of 16 ms hops moves
   many peaks by a frame (copies trimmed by 0.5 s: median score 0.42 without, 0.6 with).
3. Landmarks: each peak is paired with the next ``FAN_OUT`` peaks up to ``MAX_DT_FRAMES`` later
   and within ``MAX_DF_BINS``; (f1, f2 - f1, dt in half frames) packs into a uint32 hash stored
   with the anchor's frame. Half-frame dt (from the refined times) lowered the top scores of
   distinct takes of one word by one speaker by ~40 %, those of copies by 5-20 %.

Two fingerprints match when many hashes agree on *one* time offset (a vote over anchor-frame
differences, ±1 frame since anchors are rounded to frames). Chance collisions scatter over
offsets; a copy lines them up. ``score`` is the share of the smaller fingerprint's hashes on the
winning offset, so a clip inside a longer file (or with a jingle added) still scores as its
duplicate, and the offset says where it sits.

Defaults and the decision rule come from benchmarks/near_duplicates.py (60 corpus clips x 11
required transformations, 1,770 pairs of distinct corpus clips, 8,769 pairs of distinct takes of
one word by one speaker): copies of 2-12 s clips scored >= 0.31, distinct 2-12 s clips <= 0.013.
Distinct takes of a digit by one very consistent FSDD speaker (0.3-0.6 s, waveforms up to 0.96
correlated) reach 0.29, but on at most 16 matching hashes, hence :data:`MIN_MATCHED_HASHES`.
A copy misaligned by half a hop inside a longer file scores ~0.5, not ~0.95: still 3x the
threshold, but the margin that noise and codecs then eat.

:class:`FingerprintIndex` is the same vote over many items at once, from an inverted index
hash -> (item, frame); it maps one-to-one onto a database table ``(item_id, hash, frame)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.ndimage import maximum_filter, maximum_filter1d

from audio_platform.audio.dsp import SAMPLE_RATE

N_FFT = 1024
HOP = 256
FRAME_S = HOP / SAMPLE_RATE  # 16 ms
MIN_HZ, MAX_HZ = 150.0, 3500.0
_BINS = slice(round(MIN_HZ * N_FFT / SAMPLE_RATE), round(MAX_HZ * N_FFT / SAMPLE_RATE) + 1)
PEAK_DT_FRAMES, PEAK_DF_BINS = 3, 4
PEAK_RANGE_DB = 30.0
FLOOR_PERCENTILE = 20.0
ABOVE_FLOOR_DB = 25.0
_REFERENCE_FRAMES = round(1.0 / FRAME_S)
# Below this absolute level (dB re a full-scale sine) nothing is a peak: digital silence has none.
_SILENCE_DB = -90.0
FAN_OUT = 8
MAX_DT_FRAMES = 48  # 0.77 s
MAX_DF_BINS = 48  # 750 Hz
_DT_STEPS = 2 * MAX_DT_FRAMES + 1  # dt in half frames
_DF_STEPS = 2 * MAX_DF_BINS + 1
# Long inputs are fingerprinted in blocks (bounded memory); each block also analyses a margin
# on both sides that covers the peak neighbourhood, the 1 s level reference and the target zone,
# so only the noise floor is per block (it then follows changing noise in long recordings).
BLOCK_FRAMES = round(60.0 / FRAME_S)
_MARGIN_FRAMES = 2 * MAX_DT_FRAMES + _REFERENCE_FRAMES
# Copies scored >= 0.31 under every required transformation; distinct recordings <= 0.013
# (2-12 s), or up to 0.29 on fewer than MIN_MATCHED_HASHES matches (sub-second keyword takes).
NEAR_DUPLICATE_MIN_SCORE = 0.15
# Fewer hashes than this on the best offset is not evidence, whatever their share: distinct
# pairs reached at most 18 in the benchmark (10,539 pairs, scores <= 0.29). Clips that
# yield fewer hashes never match, no answer rather than a false one: 37 % of the 0.3-0.6 s FSDD
# digits, 6 % of the 1 s Speech Commands clips.
MIN_MATCHED_HASHES = 20


@dataclass(frozen=True)
class Fingerprint:
    """Landmark hashes of one recording and the frame (``frame_s`` apart) of each anchor peak.

    Sorted by (hash, frame), without repeated pairs.
    """

    hashes: np.ndarray  # uint32
    frames: np.ndarray  # int32
    duration_s: float
    frame_s: float = FRAME_S


@dataclass(frozen=True)
class Match:
    """``matched`` hashes agree on one offset; ``score`` is their share of the smaller fingerprint.

    ``offset_s`` is where the compared (query) audio starts in the reference (item) audio:
    positive when the query lacks the reference's first ``offset_s`` seconds.
    """

    score: float
    offset_s: float
    matched: int

    @property
    def is_near_duplicate(self) -> bool:
        """The decision rule: a large enough share, on enough hashes to be evidence."""
        return self.score >= NEAR_DUPLICATE_MIN_SCORE and self.matched >= MIN_MATCHED_HASHES


@dataclass(frozen=True)
class IndexMatch(Match):
    item_id: str


def fingerprint(samples: np.ndarray) -> Fingerprint:
    """Landmark fingerprint of 16 kHz mono samples (as ``decode.decode_mono_16k`` returns them)."""
    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    n_frames = 1 + max(0, samples.size - N_FFT) // HOP
    hashes, frames = [], []
    for first in range(0, n_frames, BLOCK_FRAMES):
        start = max(0, first - _MARGIN_FRAMES)
        stop = min(n_frames, first + BLOCK_FRAMES + _MARGIN_FRAMES)
        t, f = _peaks(_log_spectrogram(samples[start * HOP : (stop - 1) * HOP + N_FFT]))
        block_hashes, anchors = _landmarks(t + start, f)
        own = (anchors >= first) & (anchors < first + BLOCK_FRAMES)
        hashes.append(block_hashes[own])
        frames.append(anchors[own])
    pairs = np.unique(np.concatenate(hashes).astype(np.int64) << 32 | np.concatenate(frames))
    return Fingerprint(
        (pairs >> 32).astype(np.uint32), (pairs & 0xFFFFFFFF).astype(np.int32), samples.size / SAMPLE_RATE
    )


def similarity(reference: Fingerprint, query: Fingerprint) -> Match:
    """How much of the shorter of the two is a copy of the other, and where ``query`` starts.

    The raw measurement, also on too little evidence: decide with ``Match.is_near_duplicate``.
    """
    index = FingerprintIndex()
    index.add("reference", reference)
    found = index.query(query, min_score=0.0, min_matched=1)
    return Match(found[0].score, found[0].offset_s, found[0].matched) if found else Match(0.0, 0.0, 0)


class FingerprintIndex:
    """Inverted index hash -> (item, anchor frame) over many fingerprints, queried by offset votes.

    Why this shape: a query must not compare against every item. The postings live in three
    parallel numpy arrays sorted by hash, so each query hash is a binary search and only items
    sharing hashes are touched; every hit votes for (item, item frame - query frame). Per item,
    the best offset (votes summed over ±1 frame) then counts its distinct matching hashes, on
    both sides so a held tone's repeated hashes count once. :func:`similarity` is this index
    with one item, so pairwise and indexed results are the same by construction.

    Memory: 12 bytes per hash, about 300 hashes per second of speech, i.e. ~13 MB per audio
    hour. Beyond RAM, the same data is a table ``fingerprint_hashes(item_id, hash UINTEGER,
    frame INTEGER)`` (plus ``n_hashes`` per item) and a query is a join on ``hash`` with a
    GROUP BY (item_id, offset) for the vote; benchmarks/near_duplicates.py runs that SQL in
    DuckDB and checks it against this class.
    """

    def __init__(self) -> None:
        self._ids: list[str] = []
        self._known: set[str] = set()
        self._counts: list[int] = []
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._hashes = np.zeros(0, dtype=np.uint32)
        self._frames = np.zeros(0, dtype=np.int32)
        self._items = np.zeros(0, dtype=np.int32)

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, item_id: str, fp: Fingerprint, n_hashes: int | None = None) -> None:
        """Index ``fp`` under ``item_id``; it is merged into the sorted postings on the next query.

        ``n_hashes``: the item's whole hash count when ``fp`` holds only the hashes a query can
        hit (postings pre-filtered on the query's hashes, e.g. read from a table): scores are
        shares of whole fingerprints, and hashes no query holds never vote anyway."""
        if item_id in self._known:
            raise ValueError(f"item {item_id!r} is already indexed")
        self._pending.append((fp.hashes, fp.frames))
        self._ids.append(item_id)
        self._known.add(item_id)
        self._counts.append(int(fp.hashes.size) if n_hashes is None else n_hashes)

    def query(
        self, fp: Fingerprint, min_score: float = NEAR_DUPLICATE_MIN_SCORE, min_matched: int = MIN_MATCHED_HASHES
    ) -> list[IndexMatch]:
        """Items of which ``fp`` is a near-duplicate (or which are near-duplicates of it), best first.

        The defaults are the decision rule of ``Match.is_near_duplicate``.
        """
        self._merge_pending()
        left = np.searchsorted(self._hashes, fp.hashes, side="left")
        hits = np.searchsorted(self._hashes, fp.hashes, side="right") - left
        if hits.sum() == 0:
            return []
        query_entry = np.repeat(np.arange(fp.hashes.size), hits)
        posting = np.repeat(left - np.cumsum(hits) + hits, hits) + np.arange(query_entry.size)
        items = self._items[posting].astype(np.int64)
        offsets = self._frames[posting].astype(np.int64) - fp.frames[query_entry]

        voted, best_offset = _best_offsets(items, offsets)
        on_best = np.abs(offsets - best_offset[np.searchsorted(voted, items)]) <= 1
        matched = np.minimum(
            _count_distinct(items[on_best], query_entry[on_best], voted),
            _count_distinct(items[on_best], posting[on_best], voted),
        )
        smaller = np.minimum(np.asarray(self._counts, dtype=np.int64)[voted], fp.hashes.size)
        scores = matched / smaller
        keep = (scores >= min_score) & (matched >= min_matched)
        found = [
            IndexMatch(float(score), float(offset) * fp.frame_s, int(count), self._ids[item])
            for item, offset, count, score in zip(
                voted[keep], best_offset[keep], matched[keep], scores[keep], strict=True
            )
        ]
        return sorted(found, key=lambda match: (-match.score, -match.matched))

    def _merge_pending(self) -> None:
        if not self._pending:
            return
        first_new = len(self._ids) - len(self._pending)
        hashes = np.concatenate([self._hashes, *(h for h, _ in self._pending)])
        frames = np.concatenate([self._frames, *(f for _, f in self._pending)])
        items = np.concatenate(
            [self._items] + [np.full(h.size, first_new + i, dtype=np.int32) for i, (h, _) in enumerate(self._pending)]
        )
        order = np.argsort(hashes, kind="stable")
        self._hashes, self._frames, self._items = hashes[order], frames[order], items[order]
        self._pending = []


def _log_spectrogram(samples: np.ndarray) -> np.ndarray:
    """dB magnitude (a full-scale sine at 0 dB) as float32, frames x bins of MIN_HZ..MAX_HZ."""
    if samples.size < N_FFT:
        samples = np.pad(samples, (0, N_FFT - samples.size))
    window = np.hanning(N_FFT).astype(np.float32)
    frames = sliding_window_view(samples, N_FFT)[::HOP] * window
    magnitude = np.abs(np.fft.rfft(frames, axis=1)[:, _BINS]) * np.float32(2.0 / window.sum())
    return np.float32(20.0) * np.log10(np.maximum(magnitude, np.float32(1e-10)))


def _peaks(spectrogram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Times (frames, refined to a fraction) and bins of the landmark peaks, in time order."""
    neighbourhood = maximum_filter(
        spectrogram, size=(2 * PEAK_DT_FRAMES + 1, 2 * PEAK_DF_BINS + 1), mode="constant", cval=-np.inf
    )
    reference = maximum_filter1d(spectrogram.max(axis=1), _REFERENCE_FRAMES, mode="nearest")
    floor = np.percentile(spectrogram, FLOOR_PERCENTILE, axis=0)
    t, f = np.nonzero(
        (spectrogram == neighbourhood)
        & (spectrogram >= reference[:, None] - PEAK_RANGE_DB)
        & (spectrogram >= floor[None, :] + ABOVE_FLOOR_DB)
        & (spectrogram > _SILENCE_DB)
    )
    # Vertex of the parabola through the peak and its neighbouring frames.
    before = spectrogram[np.maximum(t - 1, 0), f].astype(np.float64)
    after = spectrogram[np.minimum(t + 1, spectrogram.shape[0] - 1), f].astype(np.float64)
    curvature = before - 2.0 * spectrogram[t, f] + after
    shift = np.where(curvature < 0, 0.5 * (before - after) / np.minimum(curvature, -1e-9), 0.0)
    time = t + np.clip(shift, -0.5, 0.5)
    order = np.lexsort((f, time))
    return time[order], f[order].astype(np.int64)


def _landmarks(time: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hash each peak with its first FAN_OUT successors in the target zone; hashes and anchor frames."""
    if time.size < 2:
        return np.zeros(0, dtype=np.uint32), np.zeros(0, dtype=np.int64)
    # Candidates are the next `reach` peaks in time order: enough to fill the fan-out in practice.
    reach = min(time.size - 1, 4 * FAN_OUT)
    anchor = np.arange(time.size)[:, None]
    target = anchor + np.arange(1, reach + 1)[None, :]
    exists = target < time.size
    target = np.minimum(target, time.size - 1)
    dt = np.round(2.0 * (time[target] - time[anchor])).astype(np.int64)
    df = f[target] - f[anchor]
    chosen = exists & (dt < _DT_STEPS) & (np.abs(df) <= MAX_DF_BINS)
    chosen &= np.cumsum(chosen, axis=1) <= FAN_OUT
    anchors = np.broadcast_to(anchor, chosen.shape)[chosen]
    hashes = (f[anchors] * _DF_STEPS + df[chosen] + MAX_DF_BINS) * _DT_STEPS + dt[chosen]
    return hashes.astype(np.uint32), np.round(time[anchors]).astype(np.int64)


def _best_offsets(items: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each voted item (ascending) and its offset with the most votes, counting the ±1 neighbours."""
    shift = 1 - int(offsets.min())
    span = int(offsets.max()) + shift + 2  # keys of one item never reach the next item's ±1
    keys, votes = np.unique(items * span + offsets + shift, return_counts=True)
    windowed = votes.copy()
    for step in (-1, 1):
        at = np.minimum(np.searchsorted(keys, keys + step), keys.size - 1)
        neighbour = keys[at] == keys + step
        windowed[neighbour] += votes[at[neighbour]]
    key_items = keys // span
    order = np.lexsort((-windowed, key_items))
    voted, first = np.unique(key_items[order], return_index=True)
    return voted, keys[order][first] - voted * span - shift


def _count_distinct(items: np.ndarray, values: np.ndarray, voted: np.ndarray) -> np.ndarray:
    """For each of ``voted`` (ascending item ids), how many distinct ``values`` it has."""
    keys = np.unique(items * (int(values.max(initial=0)) + 1) + values)
    per_item = keys // (int(values.max(initial=0)) + 1)
    return np.searchsorted(per_item, voted, side="right") - np.searchsorted(per_item, voted, side="left")
