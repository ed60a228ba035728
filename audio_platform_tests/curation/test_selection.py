from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import numpy as np
import polars as pl
import pytest

from audio_platform.audio.dnsmos import DnsmosScorer
from audio_platform.audio.dsp import SAMPLE_RATE
from audio_platform.curation.criteria import acoustic_features, add_plausibility_criteria, add_text_criteria
from audio_platform.curation.selection import REJECTION_RULES, CurationPolicy, decide, rejection_rule
from audio_platform.curation.topsis import score_frame
from audio_platform_tests.conftest import corpus_manifest, requires_corpus

GOOD: dict[str, Any] = {
    "text": "a perfectly ordinary sentence",
    "language": "en",
    "language_probability": 0.95,
    "duration_s": 5.0,
    "no_speech_prob": 0.05,
    "compression_ratio": 1.4,
    "clipping_ratio": 0.0,
    "dnsmos_ovrl": 3.2,
    "repeated_ngram_ratio": 0.0,
    "longest_word_chars": 9,
    "chars_per_second": 5.2,
    "filler_phrase": False,
    "near_duplicate_of": None,
    "near_duplicate_similarity": None,
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
        ({"filler_phrase": True}, "filler_phrase (stock ASR hallucination)"),
        ({"filler_phrase": None}, "filler_phrase missing"),
        ({"repeated_ngram_ratio": 0.7273}, "repeated_ngram_ratio 0.73 > 0.50"),
        ({"longest_word_chars": 41}, "longest_word_chars 41 > 30"),
        ({"chars_per_second": 41.23}, "chars_per_second 41.3 > 35.0"),
        ({"chars_per_second": 0.66, "duration_s": 3.0}, "chars_per_second 0.6 < 1.0"),
        # The lower rate bound spares short segments: "I." on 1.5 s is speech.
        ({"chars_per_second": 0.66, "duration_s": 1.5}, None),
        ({"chars_per_second": None}, "chars_per_second missing"),
        (
            {"near_duplicate_of": "seg 1", "near_duplicate_similarity": 0.4249},
            "near_duplicate of seg 1 (similarity 0.42 >= 0.15)",
        ),
        (
            {"near_duplicate_of": "seg 1", "near_duplicate_similarity": 0.15},
            "near_duplicate of seg 1 (similarity 0.15 >= 0.15)",
        ),
        ({"topsis_score": 0.41}, "topsis_score 0.41 < 0.50"),
        # Displayed values round towards failing, never "0.50 < 0.50".
        ({"topsis_score": 0.4999}, "topsis_score 0.49 < 0.50"),
        ({"topsis_score": 0.29}, "topsis_score 0.29 < 0.50"),
        ({"topsis_score": None}, "topsis_score missing"),
        ({"no_speech_prob": 0.6}, None),  # bounds are inclusive
        ({"topsis_score": 0.5}, None),
        ({"repeated_ngram_ratio": 0.5, "longest_word_chars": 30, "chars_per_second": 35.0}, None),
        ({"chars_per_second": 1.0, "duration_s": 10.0}, None),
    ],
)
def test_each_rule_and_its_message(row: dict[str, Any], reason: str | None) -> None:
    out = _decide([row])
    assert out["rejection_reason"].to_list() == [reason]
    assert out["selected"].to_list() == [reason is None]


# The DNSMOS and language-probability floors are off by default.
FLOORS = CurationPolicy(min_dnsmos_ovrl=3.0, min_language_probability=0.7)

RULE_EXAMPLES = [
    ({"text": ""}, "empty_transcript"),
    ({"language": "de"}, "language"),
    ({"language": None}, "language"),
    ({"language_probability": 0.3}, "language_probability"),
    ({"duration_s": 31.0}, "duration"),
    ({"clipping_ratio": 0.05}, "clipping_ratio"),
    ({"dnsmos_ovrl": 2.4}, "dnsmos_ovrl"),
    ({"no_speech_prob": math.nan}, "no_speech_prob"),
    ({"compression_ratio": 2.71}, "compression_ratio"),
    ({"filler_phrase": True}, "filler_phrase"),
    ({"filler_phrase": None}, "filler_phrase"),
    ({"repeated_ngram_ratio": 0.9}, "repeated_ngram_ratio"),
    ({"longest_word_chars": 45}, "longest_word_chars"),
    ({"chars_per_second": 50.0}, "chars_per_second"),
    ({"chars_per_second": 0.2, "duration_s": 10.0}, "chars_per_second"),
    ({"near_duplicate_of": "seg", "near_duplicate_similarity": 0.9}, "near_duplicate"),
    ({"topsis_score": None}, "topsis_score"),
]


@pytest.mark.parametrize(("row", "rule"), RULE_EXAMPLES)
def test_every_rejection_names_its_rule(row: dict[str, Any], rule: str) -> None:
    (reason,) = _decide([row], FLOORS)["rejection_reason"].to_list()
    assert rejection_rule(reason) == rule


def test_rule_names_are_exactly_the_policy_rules() -> None:
    assert {rule for _, rule in RULE_EXAMPLES} == set(REJECTION_RULES)
    with pytest.raises(ValueError, match="not a rejection reason"):
        rejection_rule("cosmic rays")


def test_first_failing_rule_wins() -> None:
    everything_wrong = {
        "text": "",
        "language": "fr",
        "language_probability": 0.3,
        "duration_s": 0.2,
        "clipping_ratio": 0.5,
        "dnsmos_ovrl": 1.5,
        "no_speech_prob": 0.9,
        "compression_ratio": 3.0,
        "filler_phrase": True,
        "repeated_ngram_ratio": 0.8,
        "longest_word_chars": 40,
        "chars_per_second": 40.0,
        "near_duplicate_of": "seg",
        "near_duplicate_similarity": 0.9,
        "topsis_score": 0.1,
    }
    reasons = []
    fields = (
        "text",
        "language",
        "language_probability",
        "duration_s",
        "clipping_ratio",
        "dnsmos_ovrl",
        "no_speech_prob",
        "compression_ratio",
        "filler_phrase",
        "repeated_ngram_ratio",
        "longest_word_chars",
        "chars_per_second",
        "near_duplicate_similarity",
    )
    for field in (*fields, "topsis_score"):
        out = _decide([everything_wrong], FLOORS)
        reasons.append(out["rejection_reason"][0])
        everything_wrong[field] = GOOD[field]
    assert reasons == [
        "empty transcript",
        "language fr not in (en)",
        "language_probability 0.30 < 0.70",
        "duration 0.2 s < 1.0 s",
        "clipping_ratio 0.500 > 0.010",
        "dnsmos_ovrl 1.50 < 3.00",
        "no_speech_prob 0.90 > 0.60",
        "compression_ratio 3.00 > 2.40",
        "filler_phrase (stock ASR hallucination)",
        "repeated_ngram_ratio 0.80 > 0.50",
        "longest_word_chars 40 > 30",
        "chars_per_second 40.0 > 35.0",
        "near_duplicate of seg (similarity 0.90 >= 0.15)",
        "topsis_score 0.10 < 0.50",
    ]
    assert _decide([everything_wrong], FLOORS)["selected"].to_list() == [True]


@pytest.mark.parametrize(
    ("ovrl", "reason"),
    [
        (3.2, None),
        (3.0, None),  # the bound is inclusive
        (2.4149, "dnsmos_ovrl 2.41 < 3.00"),
        (2.999, "dnsmos_ovrl 2.99 < 3.00"),
        (None, "dnsmos_ovrl missing"),
        (math.nan, "dnsmos_ovrl missing"),
    ],
)
def test_dnsmos_floor_rejects_with_the_value(ovrl: float | None, reason: str | None) -> None:
    assert _decide([{"dnsmos_ovrl": ovrl}], FLOORS)["rejection_reason"].to_list() == [reason]
    # Off by default (0): any value, or none, passes.
    assert _decide([{"dnsmos_ovrl": ovrl}])["rejection_reason"].to_list() == [None]


@pytest.mark.parametrize(
    ("probability", "reason"),
    [
        (0.95, None),
        (0.7, None),  # the bound is inclusive
        (0.4249, "language_probability 0.42 < 0.70"),
        # Not measured (a configured language, an English-only model): nothing to gate.
        (None, None),
        (math.nan, "language_probability missing"),
    ],
)
def test_language_probability_floor_rejects_only_a_measured_low_value(
    probability: float | None, reason: str | None
) -> None:
    assert _decide([{"language_probability": probability}], FLOORS)["rejection_reason"].to_list() == [reason]
    # Off by default (0): an uncertain language ID is kept.
    assert _decide([{"language_probability": probability}])["selected"].to_list() == [True]


def test_policy_switches() -> None:
    permissive = CurationPolicy(
        languages=(), require_text=False, reject_filler_phrases=False, reject_near_duplicates=False
    )
    out = _decide([{"text": "", "language": "ja", "filler_phrase": True}], permissive)
    assert out["selected"].to_list() == [True]
    # Rules that are switched off do not need their columns.
    assert decide(
        pl.DataFrame(
            {
                k: [v]
                for k, v in GOOD.items()
                if k
                not in (
                    "text",
                    "language",
                    "language_probability",
                    "filler_phrase",
                    "dnsmos_ovrl",
                    "near_duplicate_of",
                    "near_duplicate_similarity",
                )
            }
        ),
        permissive,
    )["selected"].to_list() == [True]
    # Without require_text, an empty transcript is not "too little text" either.
    empty = {"text": "", "duration_s": 5.0, "chars_per_second": 0.0}
    assert _decide([empty], CurationPolicy(require_text=False))["selected"].to_list() == [True]
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
        {"min_dnsmos_ovrl": -0.5},
        {"min_dnsmos_ovrl": 5.5},
        {"min_dnsmos_ovrl": math.nan},
        {"min_language_probability": -0.1},
        {"min_language_probability": 1.5},
        {"near_duplicate_min_similarity": 0.1},
        {"near_duplicate_min_similarity": 1.2},
        {"max_repeated_ngram_ratio": 1.5},
        {"max_word_chars": 0},
        {"min_chars_per_second": -1.0},
        {"min_chars_per_second": 5.0, "max_chars_per_second": 4.0},
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
    t = np.arange(5 * SAMPLE_RATE) / SAMPLE_RATE  # 5 s: one DNSMOS window each
    speech = 0.1 * np.sin(2 * np.pi * 220 * t) * ((t % 0.33) < 0.2)  # syllable-like bursts
    noisy = speech + rng.normal(0.0, 0.07, t.size)  # about 0 dB SNR
    clipped = np.clip(speech * 30, -1.0, 1.0)
    audio = np.concatenate([speech, noisy, clipped]).astype(np.float32)
    rows = []
    scorer = DnsmosScorer()
    asr = [
        ("clean", "she sells sea shells by the sea shore today", -0.15, 0.02, 1.3),
        ("noisy", "she shells the sea", -0.9, 0.4, 1.2),
        ("clipped", "she sells sea shells by the sea shore today", -0.3, 0.05, 1.3),
    ]
    for i, (segment_id, text, avg_logprob, no_speech_prob, compression_ratio) in enumerate(asr):
        start, end = 5.0 * i, 5.0 * (i + 1)
        features = acoustic_features(audio, start, end)
        _, _, dnsmos_ovrl = scorer.score(audio[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)])
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
                "dnsmos_ovrl": dnsmos_ovrl,
                "near_duplicate_of": None,
                "near_duplicate_similarity": None,
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


def test_plausibility_rules_on_hand_made_transcripts() -> None:
    """Texts -> plausibility columns -> decision: each hallucination falls to its own rule."""
    rows = [
        ("a normal sentence", "she sells sea shells by the sea shore today", 3.0),
        ("looping", ", ".join(["we are going to do this"] * 4), 6.0),
        ("thank you on noise", "Thank you.", 3.0),
        ("real thanks", "thank you very much for coming to the meeting today", 3.5),
        ("credits", "Subtitles by the Amara.org community", 3.0),
        ("garbage token", "so " + "ab" * 20, 2.0),
        # 69 letters in 1.5 s (10 words/s).
        ("too much text", "the quick brown fox jumps over the lazy dog while seven zebras quietly graze beyond", 1.5),
        ("too little text", "Oh.", 6.0),
    ]
    frame = pl.DataFrame(
        [{**GOOD, "segment_id": name, "text": text, "duration_s": duration} for name, text, duration in rows]
    ).drop("repeated_ngram_ratio", "longest_word_chars", "chars_per_second", "filler_phrase")
    decided = decide(add_plausibility_criteria(frame), CurationPolicy())
    reasons = dict(zip(decided["segment_id"], decided["rejection_reason"], strict=True))
    assert reasons == {
        "a normal sentence": None,
        "looping": "repeated_ngram_ratio 0.73 > 0.50",
        "thank you on noise": "filler_phrase (stock ASR hallucination)",
        "real thanks": None,
        "credits": "filler_phrase (stock ASR hallucination)",
        "garbage token": "longest_word_chars 40 > 30",
        "too much text": "chars_per_second 46.0 > 35.0",
        "too little text": "chars_per_second 0.3 < 1.0",
    }


@requires_corpus
def test_corpus_transcripts_pass_every_plausibility_rule() -> None:
    """The corpus's reference transcripts (real speech), with their files' durations as a proxy
    for a segment's, pass the default plausibility rules: the defaults reject none of it."""
    rows = [row for row in corpus_manifest().values() if row["transcript"].strip()]
    assert len(rows) > 100
    frame = pl.DataFrame(
        [{**GOOD, "text": row["transcript"], "duration_s": float(row["duration_s"])} for row in rows]
    ).drop("repeated_ngram_ratio", "longest_word_chars", "chars_per_second", "filler_phrase")
    # Only the plausibility rules are under test: some corpus files are shorter than a
    # segment may be (single AN4 words) or not English (DeepSpeech's Russian clip).
    policy = CurationPolicy(min_duration_s=0.0, max_duration_s=1000.0, languages=())
    decided = decide(add_plausibility_criteria(frame), policy)
    rejected = decided.filter(~pl.col("selected")).select("text", "duration_s", "rejection_reason")
    assert rejected.height == 0, rejected.rows()


def test_the_curation_resource_exposes_every_policy_field_with_its_default() -> None:
    from audio_platform.defs.resources import CurationResource

    policy_fields = set(asdict(CurationPolicy()))
    assert policy_fields <= set(CurationResource.model_fields)
    assert CurationResource().policy() == CurationPolicy()
    strict = CurationResource(max_word_chars=20, reject_filler_phrases=False, min_chars_per_second=0.0).policy()
    assert (strict.max_word_chars, strict.reject_filler_phrases, strict.min_chars_per_second) == (20, False, 0.0)


def test_curate_shard_computes_the_plausibility_columns_itself() -> None:
    """A segment_scores shard written before the plausibility columns existed still curates,
    and the policy sees the hallucination in the transcript."""
    from audio_platform.stages import curate_shard

    ids = ["a-0", "a-5000"]
    scores = pl.DataFrame(
        {"segment_id": ids, "shard": ["s"] * 2, "topsis_score": [0.9] * 2, "clipping_ratio": [0.0] * 2}
    )
    segments = pl.DataFrame(
        {"segment_id": ids, "file_id": ["a"] * 2, "start_s": [0.0, 5.0], "end_s": [4.0, 8.0], "duration_s": [4.0, 3.0]}
    )
    transcripts = pl.DataFrame(
        {
            "segment_id": ids,
            "text": ["and so my fellow americans ask not", "Thank you."],
            "language": ["en"] * 2,
            "no_speech_prob": [0.1] * 2,
            "compression_ratio": [1.2] * 2,
        }
    )
    files = pl.DataFrame({"file_id": ["a"], "source_path": ["/drop/a.wav"], "status": ["ok"]})
    decisions = curate_shard(scores, segments, transcripts, files, CurationPolicy())
    assert decisions["rejection_reason"].to_list() == [None, "filler_phrase (stock ASR hallucination)"]
    # Segments written before DNSMOS existed: fine while the floor is off, "missing" when it is on.
    # Transcripts written before language_probability existed: not measured, so they pass its floor.
    assert curate_shard(scores, segments, transcripts, files, FLOORS)["rejection_reason"].to_list() == [
        "dnsmos_ovrl missing",
        "dnsmos_ovrl missing",
    ]
    measured = segments.with_columns(dnsmos_ovrl=pl.Series([3.4, 2.1]))
    assert curate_shard(scores, measured, transcripts, files, FLOORS)["rejection_reason"].to_list() == [
        None,
        "dnsmos_ovrl 2.10 < 3.00",
    ]
    # A detected language's probability reaches the policy from the transcripts.
    detected = transcripts.with_columns(language_probability=pl.Series([0.4, None], dtype=pl.Float64))
    assert curate_shard(scores, measured, detected, files, FLOORS)["rejection_reason"].to_list() == [
        "language_probability 0.40 < 0.70",
        "dnsmos_ovrl 2.10 < 3.00",
    ]
    assert curate_shard(scores, measured, detected, files, CurationPolicy(min_language_probability=0.0))[
        "rejection_reason"
    ].to_list() == [None, "filler_phrase (stock ASR hallucination)"]
