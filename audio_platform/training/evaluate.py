"""Test-split metrics: clip-level precision/recall/F1/false-reject rate at the validation-chosen
threshold, and false accepts per hour from streaming detection over whole keyword-free files."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from audio_platform.audio.decode import decode_mono_16k
from audio_platform.audio.dsp import SAMPLE_RATE
from audio_platform.training.dataset import KeywordDataset
from audio_platform.training.detect import DEFAULT_HOP_S, detect_stream
from audio_platform.training.model import ModelBundle

# Keyword-free test files shorter than this are joined into one stream (keyword_free_streams).
JOIN_STREAMS_SHORTER_THAN_S = 30.0


@dataclass(frozen=True)
class EvalMetrics:
    threshold: float
    precision: float
    recall: float
    f1: float
    false_reject_rate: float
    false_accepts: int
    stream_hours: float
    false_accepts_per_hour: float  # NaN when the test split has no keyword-free stream audio
    positives: int
    negatives: int
    false_positives: int  # negative test clips scored at or above the threshold (-1: not recorded)
    test_digest: str  # metrics compare only under the same digest (see KeywordDataset.test_digest)

    def confusion(self) -> tuple[int, int, int, int]:
        """(true positives, false positives, false negatives, true negatives) of the test clips."""
        # recall = tp / positives exactly, so rounding recovers the integer count.
        true_positives = round(self.recall * self.positives)
        return (
            true_positives,
            self.false_positives,
            self.positives - true_positives,
            self.negatives - self.false_positives,
        )

    def numeric(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items() if k != "test_digest"}

    @classmethod
    def from_numeric(cls, values: Mapping[str, float], test_digest: str) -> EvalMetrics:
        """Inverse of ``numeric`` (e.g. from MLflow run metrics)."""
        return cls(
            threshold=values["threshold"],
            precision=values["precision"],
            recall=values["recall"],
            f1=values["f1"],
            false_reject_rate=values["false_reject_rate"],
            false_accepts=int(values["false_accepts"]),
            stream_hours=values["stream_hours"],
            false_accepts_per_hour=values["false_accepts_per_hour"],
            positives=int(values["positives"]),
            negatives=int(values["negatives"]),
            # Runs logged before the count existed; only f1 and false accepts/hour are compared.
            false_positives=int(values.get("false_positives", -1)),
            test_digest=test_digest,
        )


def classification_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float, float, float]:
    """Precision, recall and F1 of ``scores >= threshold``; precision is 0 when nothing fires."""
    predicted = np.asarray(scores) >= threshold
    truth = np.asarray(labels) > 0.5
    tp = float(np.sum(predicted & truth))
    precision = tp / max(float(predicted.sum()), 1.0)
    recall = tp / max(float(truth.sum()), 1.0)
    f1 = 2 * tp / max(float(predicted.sum() + truth.sum()), 1.0)
    return precision, recall, f1


def choose_threshold(scores: np.ndarray, labels: np.ndarray, target_recall: float | None = None) -> float:
    """A threshold on (validation) scores, placed midway between neighbouring scores.

    With ``target_recall``: the highest threshold that still accepts that share of the keyword
    clips, so a wake word keeps its recall and fires as rarely as that allows. Without: the
    F1-maximising one; when several cut points tie, the middle one, which leaves margin both ways.
    """
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    ranked = np.asarray(scores, dtype=np.float64)[order]
    truth = (np.asarray(labels) > 0.5)[order]
    if len(ranked) == 0 or not truth.any():
        raise ValueError("choosing a threshold needs at least one positive score")
    tp = np.cumsum(truth)
    # A cut is only possible between distinct scores (or below the lowest one).
    cuts = np.flatnonzero(np.append(ranked[:-1] > ranked[1:], True))
    if target_recall is None:
        f1 = 2 * tp / (np.arange(1, len(ranked) + 1) + truth.sum())
        best = cuts[f1[cuts] >= f1[cuts].max() - 1e-12]
        k = int(best[len(best) // 2])
    else:
        k = int(cuts[tp[cuts] >= target_recall * truth.sum() - 1e-9][0])
    below = ranked[k + 1] if k + 1 < len(ranked) else max(ranked[k] - 1e-3, 0.0)
    return float((ranked[k] + below) / 2)


def verified_scores(bundle: ModelBundle, waves: np.ndarray, floor: float) -> np.ndarray:
    """The spotter's score of each clip-length waveform of ``waves``, set to 0 for the clips at or
    above ``floor`` in which the bundle's verifier does not hear the keyword (clips below it would
    not fire, so they are not transcribed). Without a verifier, the spotter's scores."""
    scores = bundle.score(waves)
    verifier = bundle.verifier
    if verifier is None:
        return scores
    heard = np.flatnonzero(scores >= floor)
    rejected = heard[~verifier.confirms(list(waves[heard]))]
    scores[rejected] = 0.0
    return scores


def keyword_free_streams(dataset: KeywordDataset) -> Iterator[np.ndarray]:
    """The keyword-free test audio that false accepts are counted on, as 16 kHz streams.

    Each long test file without the keyword is one stream. Short ones (one-word recordings) are
    joined end to end, with the test split's generated noise clips, into one stream, as words
    and noise follow each other in a live stream: a detector that fires on the junction of two
    words fires here too.
    """
    joined = [dataset.waves[dataset.mask("test", ("noise",))].reshape(-1)]
    for path in dataset.stream_paths:
        audio = decode_mono_16k(Path(path))
        if len(audio) >= JOIN_STREAMS_SHORTER_THAN_S * SAMPLE_RATE:
            yield audio
        else:
            joined.append(audio)
    stream = np.concatenate(joined)
    if len(stream):
        yield stream


def evaluate_bundle(bundle: ModelBundle, dataset: KeywordDataset, hop_s: float = DEFAULT_HOP_S) -> EvalMetrics:
    """Metrics of ``bundle`` at its own threshold on ``dataset``'s test split and test streams,
    with its verifier when it has one (a clip counts as detected when the spotter fires and Whisper
    hears the keyword)."""
    if abs(bundle.clip_s - dataset.clip_s) > 1e-3:
        raise ValueError(f"the model uses {bundle.clip_s} s clips, the dataset {dataset.clip_s} s")
    mask = dataset.mask("test")
    labels = dataset.labels[mask]
    scores = verified_scores(bundle, dataset.waves[mask], bundle.threshold)
    precision, recall, f1 = classification_metrics(scores, labels, bundle.threshold)

    false_accepts, seconds = 0, 0.0
    for audio in keyword_free_streams(dataset):
        false_accepts += len(detect_stream(bundle, audio, hop_s=hop_s))
        seconds += len(audio) / SAMPLE_RATE
    hours = seconds / 3600
    positives = int(labels.sum())
    false_positives = int(np.sum((scores >= bundle.threshold) & (labels <= 0.5)))
    return EvalMetrics(
        threshold=bundle.threshold,
        precision=precision,
        recall=recall,
        f1=f1,
        false_reject_rate=1.0 - recall if positives else math.nan,
        false_accepts=false_accepts,
        stream_hours=hours,
        false_accepts_per_hour=false_accepts / hours if hours > 0 else math.nan,
        positives=positives,
        negatives=int(len(labels) - positives),
        false_positives=false_positives,
        test_digest=dataset.test_digest,
    )
