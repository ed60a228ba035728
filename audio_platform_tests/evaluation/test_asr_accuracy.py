"""ASR accuracy per file and pooled, checked against jiwer (an independent implementation)."""

from __future__ import annotations

import jiwer
import polars as pl
import pytest

from audio_platform.evaluation.asr_accuracy import (
    DROP_ROOT_GROUP,
    evaluate_files,
    file_hypotheses,
    pooled,
    referenced_files,
    source_group,
)
from audio_platform.evaluation.wer import normalize_text

REFERENCES = pl.DataFrame(
    {
        "file_id": ["a", "b", "c", "d"],
        "rel_path": ["an4/wav/cen1.wav", "an4/wav/cen2.wav", "ljspeech/LJ001.wav", "top.flac"],
        "reference_text": [
            "Mister Smith paid 25 dollars",
            "yes stop",
            "The Secret Service's budget, in 1964.",
            "one word",
        ],
    }
)
# Segments and transcripts as the ASR stage writes them: two segments for "a" (out of order), none for "d".
SEGMENTS = pl.DataFrame(
    {
        "segment_id": ["a2", "a1", "b1", "c1"],
        "file_id": ["a", "a", "b", "c"],
        "start_s": [2.0, 0.0, 0.0, 0.0],
    }
)
TRANSCRIPTS = pl.DataFrame(
    {
        "segment_id": ["a1", "a2", "b1", "c1"],
        "text": [
            " Mr. Smith",
            "paid twenty five dollars. ",
            "yes, top",
            "the secret services budget in nineteen sixty four",
        ],
    }
)


def test_file_hypotheses_join_segments_in_time_order() -> None:
    hypotheses = file_hypotheses(SEGMENTS, TRANSCRIPTS)
    assert dict(hypotheses.iter_rows()) == {
        "a": "Mr. Smith paid twenty five dollars.",
        "b": "yes, top",
        "c": "the secret services budget in nineteen sixty four",
    }


def test_per_file_figures_equal_jiwer_on_the_normalized_texts() -> None:
    evaluation = evaluate_files(REFERENCES, file_hypotheses(SEGMENTS, TRANSCRIPTS))
    assert evaluation.height == 4
    for row in evaluation.iter_rows(named=True):
        reference, hypothesis = normalize_text(row["reference_text"]), normalize_text(row["hypothesis_text"])
        words = jiwer.process_words(reference, hypothesis or " ")  # jiwer refuses an empty hypothesis
        assert (row["substitutions"], row["deletions"], row["insertions"]) == (
            words.substitutions,
            words.deletions,
            words.insertions,
        ), row["rel_path"]
        assert row["wer"] == pytest.approx(words.wer)
        characters = jiwer.process_characters(reference, hypothesis or " ")
        assert row["char_errors"] == characters.substitutions + characters.deletions + characters.insertions
        assert row["cer"] == pytest.approx(characters.cer)
    by_file = {row["file_id"]: row for row in evaluation.iter_rows(named=True)}
    assert by_file["a"]["word_errors"] == 0  # "Mr." / "25" / punctuation are normalized away
    assert (by_file["b"]["substitutions"], by_file["b"]["word_errors"]) == (1, 1)  # stop -> top
    assert by_file["d"]["hypothesis_text"] == "" and by_file["d"]["deletions"] == 2  # no speech found


def test_pooled_sums_errors_over_reference_lengths() -> None:
    evaluation = evaluate_files(REFERENCES, file_hypotheses(SEGMENTS, TRANSCRIPTS))
    groups = {row["source_group"]: row for row in pooled(evaluation).iter_rows(named=True)}
    assert set(groups) == {"an4", "ljspeech", DROP_ROOT_GROUP}
    an4 = groups["an4"]
    assert (an4["files"], an4["reference_words"], an4["word_errors"]) == (2, 8, 1)
    assert an4["wer"] == pytest.approx(1 / 8)
    overall = pooled(evaluation, by=None).row(0, named=True)
    assert overall["word_errors"] == int(evaluation["word_errors"].sum())
    assert overall["wer"] == pytest.approx(evaluation["word_errors"].sum() / evaluation["reference_words"].sum())


def test_an_empty_reference_has_no_rate_but_its_errors_count() -> None:
    references = pl.DataFrame({"file_id": ["x"], "rel_path": ["x.wav"], "reference_text": ["..."]})
    hypotheses = pl.DataFrame({"file_id": ["x"], "hypothesis_text": ["hello"]})
    row = evaluate_files(references, hypotheses).row(0, named=True)
    assert (row["reference_words"], row["insertions"], row["wer"], row["cer"]) == (0, 1, None, None)
    assert pooled(evaluate_files(references, hypotheses), by=None)["wer"][0] is None


@pytest.mark.parametrize(
    ("rel_path", "depth", "group"),
    [
        ("an4/wav/cen1.wav", 1, "an4"),
        ("an4/wav/cen1.wav", 2, "an4/wav"),
        ("an4/wav/cen1.wav", 5, "an4/wav"),
        ("cen1.wav", 1, DROP_ROOT_GROUP),
        ("a b/ü#1/x.wav", 2, "a b/ü#1"),
    ],
)
def test_source_group_is_the_first_folders_under_the_drop(rel_path: str, depth: int, group: str) -> None:
    assert source_group(rel_path, depth) == group


def test_source_group_depth_must_name_a_folder() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        source_group("a/b.wav", 0)


def test_byte_identical_files_each_keep_their_own_reference() -> None:
    # Same bytes, same file_id; the duplicate is not transcribed, so only the owner is evaluated.
    files = pl.DataFrame({"file_id": ["h"], "rel_path": ["a/yes_1.wav"], "drop_id": ["d"]})
    metadata = pl.DataFrame(
        {
            "file_id": ["h", "h", "k"],
            "rel_path": ["a/yes_1.wav", "b/no_1.wav", "c/blank.wav"],
            "reference_text": ["yes", "no", "  "],
        }
    )
    references = referenced_files(files, metadata)
    assert references.select("rel_path", "reference_text").rows() == [("a/yes_1.wav", "yes")]
    assert referenced_files(files, None).is_empty()
