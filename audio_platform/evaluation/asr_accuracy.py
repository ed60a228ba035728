"""Transcript accuracy against a drop's reference transcripts: per file, per source group, per shard.

A file's hypothesis is its segments' transcripts joined in time order; its reference is the
``reference_text`` of the drop's metadata (``file_metadata``). Both are normalized by
:func:`audio_platform.evaluation.wer.normalize_text` (``NORMALIZATION`` says how, for the
metadata and the docs). WER counts word edits over reference words; CER counts character edits
over the reference's characters, both on the normalized strings (spaces are characters, so a
split word costs one). Pooled figures sum errors and reference lengths, so long files weigh more.
"""

from __future__ import annotations

from pathlib import PurePosixPath

import polars as pl
from rapidfuzz.distance import Levenshtein

from audio_platform.evaluation.wer import normalize_text, word_error_rate
from audio_platform.storage.tables import ASR_EVALUATION

# The per-file columns computed here; the asset adds where the file is and which model spoke.
EVALUATION_SCHEMA = {k: v for k, v in ASR_EVALUATION.schema.items() if k not in ("shard", "drop_id", "asr_model")}

NORMALIZATION = (
    "audio_platform normalize_text: Unicode NFKC, lower case, numbers in digits to English words "
    "(years read as years), apostrophes removed, other punctuation to spaces, mr/mrs spelled out"
)
# Files at the top of the drop have no folder to group by.
DROP_ROOT_GROUP = "(drop root)"


def source_group(rel_path: str, depth: int = 1) -> str:
    """The first ``depth`` folders of ``rel_path`` (a path inside the drop), e.g. ``an4`` for
    ``an4/wav/cen1.wav`` at depth 1; files directly in the drop form ``DROP_ROOT_GROUP``."""
    if depth < 1:
        raise ValueError(f"the source group depth must be at least 1 folder, got {depth}")
    folders = PurePosixPath(rel_path.replace("\\", "/")).parts[:-1]
    return "/".join(folders[:depth]) if folders else DROP_ROOT_GROUP


def referenced_files(files: pl.DataFrame, metadata: pl.DataFrame | None) -> pl.DataFrame:
    """``file_id, rel_path, drop_id, reference_text`` of the ``files`` (``audio_files`` rows that were
    transcribed) whose drop metadata (``file_metadata`` rows, None when the shard has none) holds a
    non-blank reference. Joined on the path too: byte-identical files share a file_id, and each
    has its own row and reference."""
    columns = {"file_id": pl.String, "rel_path": pl.String, "drop_id": pl.String, "reference_text": pl.String}
    if metadata is None:
        return pl.DataFrame(schema=columns)
    with_text = metadata.filter(pl.col("reference_text").str.strip_chars() != "")
    return files.select("file_id", "rel_path", "drop_id").join(
        with_text.select("file_id", "rel_path", "reference_text"), on=["file_id", "rel_path"], how="inner"
    )


def file_hypotheses(segments: pl.DataFrame, transcripts: pl.DataFrame) -> pl.DataFrame:
    """``file_id, hypothesis_text``: each file's transcripts joined in segment start order."""
    return (
        segments.select("segment_id", "file_id", "start_s")
        .join(transcripts.select("segment_id", "text"), on="segment_id", how="inner")
        .with_columns(pl.col("text").str.strip_chars())
        .filter(pl.col("text") != "")
        .sort("file_id", "start_s")
        .group_by("file_id", maintain_order=True)
        .agg(pl.col("text").str.join(" ").alias("hypothesis_text"))
    )


def evaluate_files(references: pl.DataFrame, hypotheses: pl.DataFrame, group_depth: int = 1) -> pl.DataFrame:
    """One row per referenced file: its word and character edits.

    ``references``: ``file_id, rel_path, reference_text`` of the files that were transcribed
    (a file without speech has no hypothesis row: every reference word is a deletion).
    ``hypotheses``: ``file_id, hypothesis_text`` as from ``file_hypotheses``."""
    said = dict(zip(hypotheses["file_id"].to_list(), hypotheses["hypothesis_text"].to_list(), strict=True))
    rows: list[dict[str, object]] = []
    for file_id, rel_path, reference in references.select("file_id", "rel_path", "reference_text").iter_rows():
        hypothesis = said.get(file_id, "")
        words = word_error_rate(reference, hypothesis)
        ref_chars, hyp_chars = normalize_text(reference), normalize_text(hypothesis)
        char_errors = Levenshtein.distance(ref_chars, hyp_chars)
        rows.append(
            {
                "file_id": file_id,
                "rel_path": rel_path,
                "source_group": source_group(rel_path, group_depth),
                "reference_text": reference,
                "hypothesis_text": hypothesis,
                "reference_words": words.reference_words,
                "substitutions": words.substitutions,
                "deletions": words.deletions,
                "insertions": words.insertions,
                "word_errors": words.errors,
                "wer": _rate(words.errors, words.reference_words),
                "reference_chars": len(ref_chars),
                "char_errors": char_errors,
                "cer": _rate(char_errors, len(ref_chars)),
            }
        )
    return pl.DataFrame(rows, schema=EVALUATION_SCHEMA)


def _rate(errors: int, length: int) -> float | None:
    # An empty reference has no rate (any output is infinitely wrong); pooled figures still count its errors.
    return errors / length if length else None


def pooled(evaluation: pl.DataFrame, by: str | None = "source_group") -> pl.DataFrame:
    """Pooled WER and CER per ``by`` value (all rows when ``by`` is None), largest groups first."""
    sums = [
        pl.len().alias("files"),
        pl.col("reference_words").sum(),
        pl.col("word_errors").sum(),
        pl.col("substitutions").sum(),
        pl.col("deletions").sum(),
        pl.col("insertions").sum(),
        pl.col("reference_chars").sum(),
        pl.col("char_errors").sum(),
    ]
    frame = evaluation.group_by(by).agg(sums) if by else evaluation.select(sums)
    rates = frame.with_columns(
        wer=pl.when(pl.col("reference_words") > 0).then(pl.col("word_errors") / pl.col("reference_words")),
        cer=pl.when(pl.col("reference_chars") > 0).then(pl.col("char_errors") / pl.col("reference_chars")),
    )
    return rates.sort(["reference_words", by] if by else "files", descending=[True, False] if by else False)
