from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import numpy as np
import polars as pl
import pytest

from audio_platform.audio.dsp import SAMPLE_RATE
from audio_platform.curation.criteria import acoustic_features, add_text_criteria
from audio_platform.curation.selection import REJECTION_RULES, CurationPolicy, decide, rejection_rule
from audio_platform.curation.topsis import score_frame

GOOD: dict[str, Any] = {
    "text": "a perfectly ordinary sentence",
    "language": "en",
    "duration_s": 5.0,
    "no_speech_prob": 0.05,
    "compression_ratio": 1.4,
    "clipping_ratio": 0.0,
    "topsis_score": 0.9,
}


def _decide(rows: list[dict[str, Any]], policy: CurationPolicy | None = None) -> pl.DataFrame:
    frame = pl.DataFrame([{**GOOD, **row} for row in rows])
    return decide(frame, policy or CurationPolicy())


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({}, None),
        ({"text": ""}, "empty transcript"),
        ({"text": "  \t"}, "empty transcript"),
        ({"text": None}, "empty transcript"),
        ({"language": "de"}, "language de not in (en)"),
        ({"language": None}, "language missing"),
        ({"duration_s": 0.6}, "duration 0.6 s < 1.0 s"),
        ({"duration_s": 30.04}, "duration 30.1 s > 30.0 s"),
        ({"clipping_ratio": 0.0481}, "clipping_ratio 0.049 > 0.010"),
        ({"no_speech_prob": 0.82}, "no_speech_prob 0.82 > 0.60"),
        ({"no_speech_prob": math.nan}, "no_speech_prob missing"),
        ({"compression_ratio": 2.71}, "compression_ratio 2.71 > 2.40"),
        ({"topsis_score": 0.41}, "topsis_score 0.41 < 0.50"),
        # Displayed values round towards failing, never "0.50 < 0.50".
        ({"topsis_score": 0.4999}, "topsis_score 0.49 < 0.50"),
        ({"topsis_score": 0.29}, "topsis_score 0.29 < 0.50"),
        ({"topsis_score": None}, "topsis_score missing"),
        ({"no_speech_prob": 0.6}, None),  # bounds are inclusive
        ({"topsis_score": 0.5}, None),
    ],
)
def test_each_rule_and_its_message(row: dict[str, Any], reason: str | None) -> None:
    out = _decide([row])
    assert out["rejection_reason"].to_list() == [reason]
    assert out["selected"].to_list() == [reason is None]


RULE_EXAMPLES = [
    ({"text": ""}, "empty_transcript"),
    ({"language": "de"}, "language"),
    ({"language": None}, "language"),
    ({"duration_s": 31.0}, "duration"),
    ({"clipping_ratio": 0.05}, "clipping_ratio"),
    ({"no_speech_prob": math.nan}, "no_speech_prob"),
    ({"compression_ratio": 2.71}, "compression_ratio"),
    ({"topsis_score": None}, "topsis_score"),
]


@pytest.mark.parametrize(("row", "rule"), RULE_EXAMPLES)
def test_every_rejection_names_its_rule(row: dict[str, Any], rule: str) -> None:
    (reason,) = _decide([row])["rejection_reason"].to_list()
    assert rejection_rule(reason) == rule


def test_rule_names_are_exactly_the_policy_rules() -> None:
    assert {rule for _, rule in RULE_EXAMPLES} == set(REJECTION_RULES)
    with pytest.raises(ValueError, match="not a rejection reason"):
        rejection_rule("cosmic rays")


def test_first_failing_rule_wins() -> None:
    everything_wrong = {
        "text": "",
        "language": "fr",
        "duration_s": 0.2,
        "clipping_ratio": 0.5,
        "no_speech_prob": 0.9,
        "compression_ratio": 3.0,
        "topsis_score": 0.1,
    }
    reasons = []
    fields = ("text", "language", "duration_s", "clipping_ratio", "no_speech_prob", "compression_ratio")
    for field in (*fields, "topsis_score"):
        out = _decide([everything_wrong])
        reasons.append(out["rejection_reason"][0])
        everything_wrong[field] = GOOD[field]
    assert reasons == [
        "empty transcript",
        "language fr not in (en)",
        "duration 0.2 s < 1.0 s",
        "clipping_ratio 0.500 > 0.010",
        "no_speech_prob 0.90 > 0.60",
        "compression_ratio 3.00 > 2.40",
        "topsis_score 0.10 < 0.50",
    ]
    assert _decide([everything_wrong])["selected"].to_list() == [True]


def test_policy_switches() -> None:
    permissive = CurationPolicy(languages=(), require_text=False)
    out = _decide([{"text": "", "language": "ja"}], permissive)
    assert out["selected"].to_list() == [True]
    # Rules that are switched off do not need their columns.
    assert decide(
        pl.DataFrame({k: [v] for k, v in GOOD.items() if k not in ("text", "language")}), permissive
    )["selected"].to_list() == [True]
    multi = _decide([{"language": "de"}, {"language": "fr"}], CurationPolicy(languages=("en", "de")))
    assert multi["rejection_reason"].to_list() == [None, "language fr not in (en, de)"]


def test_decide_keeps_input_and_is_idempotent() -> None:
    frame = pl.DataFrame([GOOD, {**GOOD, "topsis_score": 0.2}])
    once = decide(frame, CurationPolicy())
    assert once.select(frame.columns).equals(frame)
    assert once.schema["selected"] == pl.Boolean
    assert once.schema["rejection_reason"] == pl.String
    assert decide(once, CurationPolicy()).equals(once)
    assert decide(frame.clear(), CurationPolicy()).height == 0


def test_decide_requires_columns() -> None:
    with pytest.raises(ValueError, match="compression_ratio"):
        decide(pl.DataFrame({k: [v] for k, v in GOOD.items() if k != "compression_ratio"}), CurationPolicy())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_score": 1.5},
        {"min_duration_s": -1.0},
        {"min_duration_s": 10.0, "max_duration_s": 5.0},
        {"languages": ("en", "")},
        {"max_no_speech_prob": 1.2},
        {"max_compression_ratio": 0.0},
        {"max_clipping_ratio": -0.1},
    ],
)
def test_policy_validation(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        CurationPolicy(**kwargs)


def test_policy_accepts_config_lists() -> None:
    policy = CurationPolicy(**{**asdict(CurationPolicy()), "languages": ["en", "de"]})
    assert policy.languages == ("en", "de")
    assert hash(policy) == hash(CurationPolicy(languages=("en", "de")))


def test_pipeline_on_synthetic_audio() -> None:
    """Audio -> acoustic features -> table criteria -> score -> decision."""
    rng = np.random.default_rng(7)
    t = np.arange(4 * SAMPLE_RATE) / SAMPLE_RATE
    speech = 0.1 * np.sin(2 * np.pi * 220 * t) * ((t % 0.33) < 0.2)  # syllable-like bursts
    noisy = speech + rng.normal(0.0, 0.07, t.size)  # about 0 dB SNR
    clipped = np.clip(speech * 30, -1.0, 1.0)
    audio = np.concatenate([speech, noisy, clipped]).astype(np.float32)
    rows = []
    asr = [
        ("clean", "she sells sea shells by the sea shore today", -0.15, 0.02, 1.3),
        ("noisy", "she shells the sea", -0.9, 0.4, 1.2),
        ("clipped", "she sells sea shells by the sea shore today", -0.3, 0.05, 1.3),
    ]
    for i, (segment_id, text, avg_logprob, no_speech_prob, compression_ratio) in enumerate(asr):
        start, end = 4.0 * i, 4.0 * (i + 1)
        features = acoustic_features(audio, start, end)
        rows.append(
            {
                "segment_id": segment_id,
                "duration_s": end - start,
                "speech_prob": 0.95,
                "text": text,
                "language": "en",
                "avg_logprob": avg_logprob,
                "no_speech_prob": no_speech_prob,
                "compression_ratio": compression_ratio,
                **asdict(features),
            }
        )
    decided = decide(score_frame(add_text_criteria(pl.DataFrame(rows))), CurationPolicy())
    scores = dict(zip(decided["segment_id"], decided["topsis_score"], strict=True))
    assert scores["clean"] > scores["clipped"] > scores["noisy"]
    assert decided["selected"].to_list() == [True, False, False]
    assert decided["rejection_reason"][1].startswith("topsis_score")
    # Clipping alone leaves the score above the threshold; the gate rejects it.
    assert scores["clipped"] > CurationPolicy().min_score
    assert decided["rejection_reason"][2].startswith("clipping_ratio")
