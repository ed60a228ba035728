"""Rows of the segments table: VAD spans with stable ids and their acoustic criteria."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from audio_platform.audio.dnsmos import DnsmosScorer
from audio_platform.audio.dsp import SAMPLE_RATE
from audio_platform.audio.pcm_cache import release_pages
from audio_platform.audio.vad import SpeechSegment
from audio_platform.curation.criteria import acoustic_features


def segment_id(file_id: str, start_s: float) -> str:
    """Stable id: the same file and start always give the same id, across runs and shards."""
    return f"{file_id[:16]}-{round(start_s * 1000):09d}"


def segment_rows(
    file_id: str,
    shard: str,
    audio: np.ndarray,
    spans: Sequence[SpeechSegment],
    dnsmos: DnsmosScorer | None = None,
) -> list[dict[str, object]]:
    """One ``segments`` row per span, with the acoustic criteria measured while the audio is at hand,
    and each span's DNSMOS P.835 scored by ``dnsmos`` when given (null columns otherwise)."""
    rows: list[dict[str, object]] = []
    for span in spans:
        first, last = round(span.start_s * SAMPLE_RATE), round(span.end_s * SAMPLE_RATE)
        features = acoustic_features(audio, span.start_s, span.end_s)
        sig, bak, ovrl = dnsmos.score(audio[first:last]) if dnsmos is not None else (None, None, None)
        release_pages(audio, first, last)
        rows.append(
            {
                "segment_id": segment_id(file_id, span.start_s),
                "file_id": file_id,
                "shard": shard,
                "start_s": span.start_s,
                "end_s": span.end_s,
                "duration_s": span.end_s - span.start_s,
                "speech_prob": span.speech_prob,
                "snr_db": features.snr_db,
                "clipping_ratio": features.clipping_ratio,
                "loudness_dbfs": features.loudness_dbfs,
                "dc_offset": features.dc_offset,
                "dnsmos_sig": sig,
                "dnsmos_bak": bak,
                "dnsmos_ovrl": ovrl,
            }
        )
    return rows
