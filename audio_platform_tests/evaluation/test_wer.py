"""WER and its text normalization: hand-checked examples plus edit-distance properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audio_platform.evaluation.wer import WerResult, corpus_wer, normalize_text, word_error_rate


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello,   World!", "hello world"),
        ("  And so, my fellow Americans...  ", "and so my fellow americans"),
        ("SIX", "six"),
        ("6", "six"),
        ("1990", "nineteen ninety"),
        ("In 1964.", "in nineteen sixty four"),
        ("1905 1900", "nineteen oh five nineteen hundred"),
        ("2552", "two thousand five hundred fifty two"),
        ("1,234", "one thousand two hundred thirty four"),
        ("EIGHT HUNDRED AND TWENTY THREE", "eight hundred twenty three"),
        ("823", "eight hundred twenty three"),
        ("bread and butter", "bread and butter"),
        ("21st 3rd 40th", "twenty first third fortieth"),
        ("3.14", "three point one four"),
        ("5% of $20", "five percent of twenty dollars"),
        ("007", "zero zero seven"),
        ("forty-five", "forty five"),
        ("P-I-T-T-S-B-U-R-G-H", "p i t t s b u r g h"),
        ("U.S.", "u s"),
        ("don't", "dont"),
        ("Mr. Dashwood and Mrs Annie", "mister dashwood and missus annie"),
        ("бедняга, ребят!", "бедняга ребят"),
        ("", ""),
    ],
)
def test_normalize_text(text: str, expected: str) -> None:
    assert normalize_text(text) == expected


def test_digits_and_number_words_compare_equal() -> None:
    assert word_error_rate("ENTER SIXTY", "Enter 60.").errors == 0
    assert word_error_rate("H Q F X FOUR THOUSAND THREE HUNDRED AND EIGHTY SIX", "H-Q-F-X 4386").errors == 0
    ljspeech = "From February eleven through June thirty, nineteen sixty-four,"
    assert word_error_rate(ljspeech, "from February 11 through June 30, 1964.").errors == 0


def test_counts_each_kind_of_error() -> None:
    result = word_error_rate("the cat sat on the mat", "the cat sat on mat today")
    assert (result.substitutions, result.deletions, result.insertions) == (0, 1, 1)
    assert result.errors == 2
    assert result.reference_words == 6
    assert result.wer == pytest.approx(2 / 6)

    sub = word_error_rate("a b c", "a x c")
    assert (sub.substitutions, sub.deletions, sub.insertions, sub.wer) == (1, 0, 0, pytest.approx(1 / 3))


def test_exact_match_after_normalization_is_zero() -> None:
    result = word_error_rate(
        "And so my fellow Americans, ask not what your country can do for you.",
        "and so my fellow americans ask not what your country can do for you",
    )
    assert result == WerResult(0, 14, 0.0, 0, 0, 0)


def test_empty_reference() -> None:
    assert word_error_rate("", "").wer == 0.0
    result = word_error_rate("", "hello there")
    assert (result.insertions, result.reference_words) == (2, 0)
    assert math.isinf(result.wer)
    assert word_error_rate("hello there", "").deletions == 2


def test_corpus_wer_pools_counts_instead_of_averaging() -> None:
    # Per-utterance WERs are 0.0 and 1.0 (mean 0.5); pooled it is 1 error in 5 words.
    pooled = corpus_wer([("one two three four", "one two three four"), ("five", "six")])
    assert (pooled.errors, pooled.reference_words, pooled.substitutions) == (1, 5, 1)
    assert pooled.wer == pytest.approx(0.2)
    assert corpus_wer([]) == WerResult(0, 0, 0.0, 0, 0, 0)


_words = st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=8).map(" ".join)


@given(_words, _words)
def test_edit_distance_properties(reference: str, hypothesis: str) -> None:
    forward = word_error_rate(reference, hypothesis)
    backward = word_error_rate(hypothesis, reference)
    n_ref, n_hyp = len(reference.split()), len(hypothesis.split())
    # A distance: symmetric, bounded by the longer side, at least the length difference.
    assert forward.errors == backward.errors
    assert abs(n_ref - n_hyp) <= forward.errors <= max(n_ref, n_hyp)
    # Counts are consistent with the lengths: ref = hits + subs + dels, hyp = hits + subs + ins.
    assert n_ref - forward.deletions == n_hyp - forward.insertions
    assert word_error_rate(reference, reference).errors == 0
