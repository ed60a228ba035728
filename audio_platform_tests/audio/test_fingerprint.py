"""Near-duplicate fingerprints on real speech: copies must match, distinct takes must not.

Copies are made at test time from ../shared/corpus clips (codecs, resampling, gain, trims,
noise); negatives are distinct recordings of one word by one speaker from ../shared/kws and
distinct clips of one source (one book, one podcast, one speaker) from the corpus.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections import defaultdict
from collections.abc import Callable
from functools import cache
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from audio_platform.audio.decode import decode_mono_16k
from audio_platform.audio.dsp import SAMPLE_RATE, colored_noise
from audio_platform.audio.fingerprint import (
    BLOCK_FRAMES,
    FRAME_S,
    HOP,
    MIN_MATCHED_HASHES,
    NEAR_DUPLICATE_MIN_SCORE,
    Fingerprint,
    FingerprintIndex,
    fingerprint,
    similarity,
)
from audio_platform_tests.conftest import CORPUS, requires_corpus
from audio_platform_tests.kws import KWS, requires_kws

pytestmark = requires_corpus

# Ten speech clips of 2-6 s from ten sources (read and spontaneous speech, a stuttering podcast,
# an interview; recorded at 16, 22.05 and 48 kHz).
CLIPS = (
    "audio/an4/an128-mcen-b.wav",
    "audio/commonvoice/common_voice_en_17299458.wav",
    "audio/deepspeech/new-home-in-the-stars-16k.wav",
    "audio/librispeech/1034-121119-0022.flac",
    "audio/librivox/sense_and_sensibility_01_austen_64kb-0880.wav",
    "audio/ljspeech/LJ050-0164.wav",
    "audio/pocketsphinx/goforward.wav",
    "audio/sep28k/HeStutters_0_0.wav",
    "audio/vctk/p226_001.wav",
    "audio/voxceleb/id10001_1zcIwhmdeo4_00003.wav",
)
TRIM = SAMPLE_RATE // 2


@cache
def clip(rel: str) -> np.ndarray:
    return decode_mono_16k(CORPUS / rel)


@cache
def clip_fingerprint(rel: str) -> Fingerprint:
    return fingerprint(clip(rel))


def codec_roundtrip(samples: np.ndarray, codec: str, folder: Path) -> np.ndarray:
    """Encode and decode with libsndfile; with PyAV where this libsndfile lacks the codec."""
    fmt, subtype = {"mp3": ("MP3", "MPEG_LAYER_III"), "opus": ("OGG", "OPUS")}[codec]
    if fmt in sf.available_formats() and subtype in sf.available_subtypes(fmt):
        buffer = io.BytesIO()
        sf.write(buffer, samples, SAMPLE_RATE, format=fmt, subtype=subtype)
        buffer.seek(0)
        return sf.read(buffer, dtype="float32")[0]
    suffix, encoder = {"mp3": (".mp3", "libmp3lame"), "opus": (".ogg", "libopus")}[codec]
    if encoder not in av.codecs_available:
        pytest.skip(f"no {codec} encoder in libsndfile {sf.__libsndfile_version__} or PyAV")
    path = folder / f"variant{suffix}"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(encoder, rate=SAMPLE_RATE, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples[None, :], format="flt", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return decode_mono_16k(path)


def with_noise(samples: np.ndarray, snr_db: float, exponent: float) -> np.ndarray:
    noise = colored_noise(np.random.default_rng(len(samples)), samples.size, exponent)
    rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
    return (samples + noise * rms * 10 ** (-snr_db / 20)).astype(np.float32)


# name -> (transformation, where the copy starts in the original, allowed offset error in s).
# Codecs may add an encoder delay where PyAV encodes; libsndfile compensates it.
VARIANTS: dict[str, tuple[Callable[[np.ndarray, Path], np.ndarray], float, float]] = {
    "mp3": (lambda x, d: codec_roundtrip(x, "mp3", d), 0.0, 0.1),
    "opus": (lambda x, d: codec_roundtrip(x, "opus", d), 0.0, 0.1),
    "resampled_8k": (lambda x, d: resample_poly(resample_poly(x, 1, 2), 2, 1).astype(np.float32), 0.0, FRAME_S),
    "gain_+6dB": (lambda x, d: np.clip(2.0 * x, -1.0, 1.0), 0.0, FRAME_S),
    "gain_-6dB": (lambda x, d: 0.5 * x, 0.0, FRAME_S),
    "trim_start_0.5s": (lambda x, d: x[TRIM:], 0.5, FRAME_S),
    "trim_end_0.5s": (lambda x, d: x[:-TRIM], 0.0, FRAME_S),
    "white_noise_20dB": (lambda x, d: with_noise(x, 20, 0.0), 0.0, FRAME_S),
    "white_noise_10dB": (lambda x, d: with_noise(x, 10, 0.0), 0.0, FRAME_S),
    "pink_noise_10dB": (lambda x, d: with_noise(x, 10, 1.0), 0.0, FRAME_S),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_clip_matches_its_transformed_copy_at_the_right_offset(variant: str, tmp_path: Path) -> None:
    transform, offset_s, tolerance_s = VARIANTS[variant]
    for rel in CLIPS:
        match = similarity(clip_fingerprint(rel), fingerprint(transform(clip(rel), tmp_path)))
        assert match.is_near_duplicate, (rel, match)
        assert match.offset_s == pytest.approx(offset_s, abs=tolerance_s), (rel, match)


def test_resampled_copies_in_the_corpus_itself_match() -> None:
    """LDC93S1 ships as 16 kHz mono, 8 kHz and 44.1 kHz stereo: one recording."""
    original = clip_fingerprint("audio/deepspeech/LDC93S1.wav")
    for rel in ("audio/deepspeech/LDC93S1_pcms16le_1_8000.wav", "audio/deepspeech/LDC93S1_pcms16le_2_44100.wav"):
        match = similarity(original, clip_fingerprint(rel))
        assert match.is_near_duplicate and abs(match.offset_s) <= FRAME_S, (rel, match)


def test_distinct_clips_of_one_source_do_not_match() -> None:
    """Same reader and book, same podcast, same speaker and session: still distinct audio."""
    with open(CORPUS / "manifest.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    by_source: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        folder = row["path"].split("/")[1]
        if folder in {"ljspeech", "librivox", "sep28k", "voxceleb", "an4", "pocketsphinx"}:
            by_source[folder].append(row["path"])
    rels = [rel for folder in sorted(by_source) for rel in sorted(by_source[folder])[:6]]
    index = FingerprintIndex()
    for rel in rels:
        index.add(rel, clip_fingerprint(rel))
    for rel in rels:
        assert [m.item_id for m in index.query(clip_fingerprint(rel))] == [rel]
        others = [m for m in index.query(clip_fingerprint(rel), min_score=0.0, min_matched=1) if m.item_id != rel]
        # Not even close on the share alone, before the MIN_MATCHED_HASHES evidence rule.
        assert max((m.score for m in others), default=0.0) < NEAR_DUPLICATE_MIN_SCORE / 2, rel


@requires_kws
def test_distinct_takes_of_one_word_by_one_speaker_do_not_match() -> None:
    """Every pair of takes of one word by one speaker (Speech Commands; FSDD's four very consistent
    speakers saying 0.3-0.6 s digits are the hardest case), then every keyword clip against all."""
    with open(KWS / "manifest.csv", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if "_background_noise_" not in row["path"]]
    prints = {row["path"]: fingerprint(decode_mono_16k(KWS / row["path"])) for row in rows}
    takes: dict[tuple[str, str], list[str]] = defaultdict(list)
    for row in rows:
        takes[(row["word"], row["speaker"])].append(row["path"])
    pairs = [pair for paths in takes.values() for pair in itertools.combinations(paths, 2)]
    assert len(pairs) > 8000
    for first, second in pairs:
        assert not similarity(prints[first], prints[second]).is_near_duplicate, (first, second)
    index = FingerprintIndex()
    for rel, fp in prints.items():
        index.add(rel, fp)
    for rel, fp in prints.items():
        assert {m.item_id for m in index.query(fp)} <= {rel}


def test_index_returns_what_pairwise_similarity_does(tmp_path: Path) -> None:
    index = FingerprintIndex()
    for rel in CLIPS:
        index.add(rel, clip_fingerprint(rel))
    queries = [
        fingerprint(transform(clip(rel), tmp_path)) for rel in CLIPS[:3] for transform, _, _ in VARIANTS.values()
    ]
    queries.append(
        fingerprint((0.1 * colored_noise(np.random.default_rng(1), 5 * SAMPLE_RATE, 1.0)).astype(np.float32))
    )
    for query in queries:
        found = {m.item_id: m for m in index.query(query, min_score=0.0, min_matched=1)}
        for rel in CLIPS:
            pairwise = similarity(clip_fingerprint(rel), query)
            if pairwise.matched == 0:
                assert rel not in found
            else:
                indexed = found[rel]
                assert (indexed.score, indexed.offset_s, indexed.matched) == (
                    pairwise.score,
                    pairwise.offset_s,
                    pairwise.matched,
                )
        assert [m.item_id for m in index.query(query)] == [
            rel for rel in sorted(found, key=lambda r: -found[r].score) if found[rel].is_near_duplicate
        ]


def test_silence_and_noise_match_no_speech() -> None:
    silence = fingerprint(np.zeros(5 * SAMPLE_RATE, dtype=np.float32))
    assert silence.hashes.size == 0
    index = FingerprintIndex()
    for rel in CLIPS:
        index.add(rel, clip_fingerprint(rel))
    assert len(index) == len(CLIPS)
    rng = np.random.default_rng(0)
    for exponent in (0.0, 1.0, 2.0):  # white, pink, brown
        noise = fingerprint((0.1 * colored_noise(rng, 5 * SAMPLE_RATE, exponent)).astype(np.float32))
        assert index.query(noise) == []
        assert all(not similarity(clip_fingerprint(rel), noise).is_near_duplicate for rel in CLIPS)
    assert index.query(silence) == []
    assert similarity(clip_fingerprint(CLIPS[0]), silence).matched == 0


def test_clip_with_a_jingle_still_matches_relative_to_the_shorter() -> None:
    t = np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE
    # Three 0.67 s notes at -12 dBFS: a jingle that has strong peaks of its own.
    jingle = (0.25 * np.sin(2 * np.pi * np.array([523.0, 659.0, 784.0])[(3 * t / 2).astype(int)] * t)).astype(
        np.float32
    )
    for rel in CLIPS[:5]:
        original = clip_fingerprint(rel)
        prefixed = fingerprint(np.concatenate([jingle, clip(rel)]))
        suffixed = fingerprint(np.concatenate([clip(rel), jingle]))
        for longer, offset_s in ((prefixed, 2.0), (suffixed, 0.0)):
            match = similarity(longer, original)
            assert match.is_near_duplicate and match.score > 0.8, (rel, match)
            assert match.offset_s == pytest.approx(offset_s, abs=FRAME_S)
            # The other way round: where the longer file starts relative to the clip.
            assert similarity(original, longer).offset_s == pytest.approx(-offset_s, abs=FRAME_S)


def test_clip_found_across_a_block_boundary_of_a_long_recording() -> None:
    """Inputs over BLOCK_FRAMES are fingerprinted block by block; a copy across the seam is found."""
    filler = [clip(rel) for rel in CLIPS[1:]]
    long = np.concatenate(filler * 3)
    seam = BLOCK_FRAMES * FRAME_S
    assert long.size / SAMPLE_RATE > seam + 10
    # On a frame boundary: a copy shifted by a fraction of a hop scores ~0.5 wherever it is.
    start = round((seam - 1.0) / FRAME_S) * HOP
    target = clip(CLIPS[0])
    long[start : start + target.size] = target
    match = similarity(fingerprint(long), clip_fingerprint(CLIPS[0]))
    assert match.is_near_duplicate and match.score > 0.8, match
    assert match.offset_s == pytest.approx(start / SAMPLE_RATE, abs=FRAME_S)


def test_too_short_clips_never_match() -> None:
    """A clip with fewer hashes than MIN_MATCHED_HASHES gives no answer rather than a false one."""
    fp = fingerprint(clip(CLIPS[0])[SAMPLE_RATE : SAMPLE_RATE + SAMPLE_RATE // 5])  # 0.2 s of speech
    assert 0 < fp.hashes.size < MIN_MATCHED_HASHES
    index = FingerprintIndex()
    index.add("short", fp)
    assert index.query(fp) == []
    itself = similarity(fp, fp)
    assert itself.score == 1.0 and not itself.is_near_duplicate
    with pytest.raises(ValueError, match="already indexed"):
        index.add("short", fp)
