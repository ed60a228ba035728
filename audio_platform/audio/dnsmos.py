"""DNSMOS P.835: non-intrusive speech quality (SIG, BAK, OVRL) on the ITU-T P.835 1-5 scale.

Microsoft's DNSMOS (Reddy et al., ICASSP 2022) predicts from the waveform alone what listeners would
rate a clip for the speech signal (SIG), the background noise (BAK) and overall (OVRL). The model is
the ``sig_bak_ovr.onnx`` file shipped in the ``speechmos`` package (0.0.1.1); only that file is used.
``speechmos.dnsmos`` itself is never imported: it needs librosa and requests, which this project
does not install (the P.808 model beside it, the one that needs librosa, is not used).

The computation reproduces ``speechmos.dnsmos.DNSMOS.__call__`` (the same code as the DNS Challenge's
``dnsmos_local.py``, which published DNSMOS numbers and thresholds such as Emilia's come from), for
the non-personalized model:

* 16 kHz audio; a clip shorter than the 9.01 s window is doubled (appended to itself) until it is
  at least a window long;
* windows of 9.01 s (144,160 samples) every 1 s, ``int(floor(seconds) - 9.01) + 1`` of them;
* each window's raw scores mapped by the reference's polynomials (below); the clip's scores are
  the means over its windows.

The reference cuts window ``i`` as ``audio[int(i * 16000) : int((i + 9.01) * 16000)]`` and skips
windows that come out shorter than 144,160 samples. Float rounding makes windows 7-23, 119-..., one
sample short, so the reference skips them and a 30-s clip is scored on its first 7 windows
(the first 16 s). That is reproduced, so the scores are the reference's, not a variant of them;
it also bounds the cost at 7 windows for any clip shorter than 34 s.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from audio_platform.audio.dsp import SAMPLE_RATE
from audio_platform.audio.onnx_models import cpu_session, package_file

if TYPE_CHECKING:
    pass

# speechmos.dnsmos.INPUT_LENGTH and its window in samples.
WINDOW_S = 9.01
WINDOW_SAMPLES = int(WINDOW_S * SAMPLE_RATE)
HOP_SAMPLES = SAMPLE_RATE
_MODEL_FILE = ("dnsmos_models", "sig_bak_ovr.onnx")
_INPUT_NAME = "input_1"
# speechmos.dnsmos.DNSMOS.get_polyfit_val, is_personalized_MOS=False: raw model output -> P.835 MOS.
_POLY_SIG = np.poly1d([-0.08397278, 1.22083953, 0.0052439])
_POLY_BAK = np.poly1d([-0.13166888, 1.60915514, -0.39604546])
_POLY_OVRL = np.poly1d([-0.06766283, 1.11546468, 0.04602535])
# Windows per session.run. The model takes a batch dimension, but on CPU a batch is no faster
# per window than one window at a time (measured 1-8 windows, 1 and 2 threads: ~0.3-0.4 s per
# window either way), while each window in a batch adds ~115 MB of activations.
DEFAULT_BATCH_WINDOWS = 1


@dataclass(frozen=True)
class DnsmosScores:
    """P.835 scores of one clip: speech signal, background, overall (about 1.1-3.9 in practice)."""

    sig: float
    bak: float
    ovrl: float


def model_path() -> Path:
    """The ``sig_bak_ovr.onnx`` shipped in the installed speechmos package."""
    return package_file(
        "speechmos",
        *_MODEL_FILE,
        install_hint="pip install speechmos==0.0.1.1 (--no-deps is enough: only its model files are used)",
    )


def window_starts(n_samples: int) -> list[int]:
    """Start sample of each window the reference scores on a clip of ``n_samples`` (after doubling
    it to at least one window), skipped windows left out."""
    n_hops = int(np.floor(n_samples / SAMPLE_RATE) - WINDOW_S) + 1
    starts = []
    for index in range(n_hops):
        start, end = int(index * HOP_SAMPLES), int((index + WINDOW_S) * HOP_SAMPLES)
        if min(end, n_samples) - start >= WINDOW_SAMPLES:
            starts.append(start)
    return starts


def windows(audio_16k: np.ndarray) -> np.ndarray:
    """The ``(n, 144160)`` float32 windows the reference scores ``audio_16k`` on (n >= 1)."""
    audio = _filled(audio_16k)
    return np.stack([audio[start : start + WINDOW_SAMPLES] for start in window_starts(audio.size)])


def _filled(audio_16k: np.ndarray) -> np.ndarray:
    """The clip as float32 in [-1, 1], doubled until it is at least one window long."""
    audio = np.asarray(audio_16k)
    if audio.ndim != 1:
        raise ValueError(f"audio must be 1-D mono, got shape {audio.shape}")
    if audio.size == 0:
        raise ValueError("DNSMOS needs at least one sample")
    if not np.issubdtype(audio.dtype, np.floating):
        raise ValueError(f"audio must be float in [-1, 1], got dtype {audio.dtype}")
    if not np.isfinite(audio).all():
        raise ValueError("audio contains NaN or infinite samples")
    # The reference refuses samples outside [-1, 1]; resampling can overshoot full scale slightly.
    audio = np.clip(audio.astype(np.float32), -1.0, 1.0)
    copies = 1
    while audio.size * copies < WINDOW_SAMPLES:
        # As the reference does: append the clip to itself until it fills a window.
        copies *= 2
    return np.tile(audio, copies)


class DnsmosScorer:
    """DNSMOS P.835 on CPU. The ONNX session is created on first use and shared by every scorer of
    the same thread count in the process."""

    def __init__(self, num_threads: int = 1, batch_windows: int = DEFAULT_BATCH_WINDOWS) -> None:
        if num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {num_threads}")
        if batch_windows < 1:
            raise ValueError(f"batch_windows must be >= 1, got {batch_windows}")
        self.num_threads = num_threads
        self.batch_windows = batch_windows
        # Fails here, not mid-stage, when speechmos is missing.
        model_path()

    def score(self, audio_16k: np.ndarray) -> tuple[float, float, float]:
        """``(sig, bak, ovrl)`` of one clip of 16 kHz mono float audio in [-1, 1]."""
        (scores,) = self.score_many([audio_16k])
        return scores.sig, scores.bak, scores.ovrl

    def score_many(self, clips: Iterable[np.ndarray]) -> list[DnsmosScores]:
        """Scores of each clip, in order. Windows of consecutive clips share ``session.run`` batches
        of up to ``batch_windows``. Clips are read one at a time and their windows cut as the
        batches fill, so an iterator of slices holds one clip and one batch in memory."""
        raw_per_clip: list[list[np.ndarray]] = []
        for owners, raw in self._raw_batches(clips, raw_per_clip):
            for owner, row in zip(owners, raw, strict=True):
                raw_per_clip[owner].append(row)
        return [_mean_scores(np.stack(rows)) for rows in raw_per_clip]

    def _raw_batches(
        self, clips: Iterable[np.ndarray], raw_per_clip: list[list[np.ndarray]]
    ) -> Iterator[tuple[list[int], np.ndarray]]:
        session = cpu_session(model_path(), self.num_threads)
        batch: list[np.ndarray] = []
        owners: list[int] = []
        for clip in clips:
            owner = len(raw_per_clip)
            raw_per_clip.append([])
            audio = _filled(clip)
            for start in window_starts(audio.size):
                batch.append(audio[start : start + WINDOW_SAMPLES])
                owners.append(owner)
                if len(batch) == self.batch_windows:
                    yield owners, session.run(None, {_INPUT_NAME: np.stack(batch)})[0]
                    batch, owners = [], []
        if batch:
            yield owners, session.run(None, {_INPUT_NAME: np.stack(batch)})[0]


def _mean_scores(raw: np.ndarray) -> DnsmosScores:
    """Map each window's raw (sig, bak, ovrl) through the reference's polynomials, then average."""
    raw = raw.astype(np.float64)
    return DnsmosScores(
        sig=float(np.mean(_POLY_SIG(raw[:, 0]))),
        bak=float(np.mean(_POLY_BAK(raw[:, 1]))),
        ovrl=float(np.mean(_POLY_OVRL(raw[:, 2]))),
    )
