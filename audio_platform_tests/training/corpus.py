"""Platform-shaped tables (audio_files, segments, words) from the shared corpus.

The corpus has transcripts but no word timestamps. The platform's Whisper tiny.en writes most
spoken numbers as digits ('7186'), so it finds almost none of the AN4 'six' tokens. Word times
therefore come from a crude alignment: the transcript's words are spread over the energy-trimmed
speech span in proportion to their syllable counts. The keyword mostly ends an AN4 utterance, so
the estimate is anchored there, and the 1 s clips leave room for the error.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import polars as pl

from audio_platform.audio.decode import decode_mono_16k
from audio_platform.curation.criteria import acoustic_features

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
# Speech with a plain transcript, plus ESC-50 as speech-free audio. Left out: the vad/ files
# (rebuilt from these clips, so they would leak across splits) and the two-speaker stereo file.
_SPEECH_DIRS = ("an4", "audiomnist", "vctk", "librivox", "ljspeech", "pocketsphinx", "deepspeech", "keywords")
_EXCLUDED = ("audio/whisper/stereo_diarization.wav",)


def _speech_span(audio: np.ndarray) -> tuple[float, float]:
    """First and last 10 ms hop above max(peak - 40 dB, 10th percentile + 10 dB), as in vad/README."""
    frames = np.lib.stride_tricks.sliding_window_view(audio, 400)[::160]
    energy = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    threshold = max(energy.max() - 40, np.percentile(energy, 10) + 10)
    loud = np.flatnonzero(energy > threshold)
    return float(loud[0] * 0.01), float(loud[-1] * 0.01 + 0.025)


def _syllables(word: str) -> int:
    return 1 if len(word) == 1 else max(1, len(re.findall(r"[aeiouy]+", word.lower())))


def _aligned(text: str, start: float, end: float) -> list[tuple[str, float, float]]:
    tokens = [t for t in re.split(r"[\s\-]+", text) if re.search(r"\w", t)]
    weights = np.array([_syllables(t) for t in tokens], dtype=float)
    edges = start + (end - start) * np.concatenate([[0.0], np.cumsum(weights)]) / weights.sum()
    return [(t, float(a), float(b)) for t, a, b in zip(tokens, edges[:-1], edges[1:], strict=True)]


def corpus_tables() -> dict[str, pl.DataFrame]:
    rows = pl.read_csv(CORPUS / "manifest.csv", infer_schema=False)
    chosen = rows.filter(
        ~pl.col("path").is_in(_EXCLUDED)
        & (
            (pl.col("path").str.split("/").list.get(1).is_in(_SPEECH_DIRS) & pl.col("transcript").is_not_null())
            | (pl.col("kind") == "nonspeech")
        )
    )
    files, segments, words = [], [], []
    for row in chosen.iter_rows(named=True):
        path = CORPUS / row["path"]
        audio = decode_mono_16k(path)
        file_id = row["path"].removeprefix("audio/").replace("/", "_")
        files.append(
            {
                "file_id": file_id,
                "shard": row["path"].split("/")[1],
                "source_path": str(path),
                "status": "ok",
                "duration_s": len(audio) / 16000,
                "speaker": row["speaker"],
            }
        )
        if row["kind"] == "nonspeech":
            continue
        start, end = _speech_span(audio)
        segment_id = f"{file_id}:0"
        quality = acoustic_features(audio, start, end)
        segments.append(
            {
                "segment_id": segment_id,
                "file_id": file_id,
                "start_s": start,
                "end_s": end,
                "snr_db": quality.snr_db,
                "clipping_ratio": quality.clipping_ratio,
            }
        )
        for index, (word, a, b) in enumerate(_aligned(row["transcript"], start, end)):
            # Reference words: as sure as a word can be.
            words.append(
                {
                    "segment_id": segment_id,
                    "word_index": index,
                    "word": word,
                    "start_s": a,
                    "end_s": b,
                    "probability": 1.0,
                }
            )
    return {"audio_files": pl.DataFrame(files), "segments": pl.DataFrame(segments), "words": pl.DataFrame(words)}
