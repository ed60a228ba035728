"""The stage functions on small real data, and the assets that call them: what an asset writes is
exactly what its stage function returns for the same inputs (no logic lives in asset bodies)."""

from __future__ import annotations

import polars as pl
import pytest
from dagster import AssetKey, DagsterInstance, materialize

from audio_platform.audio.asr import AsrConfig, WhisperTranscriber
from audio_platform.audio.decode import decode_mono_16k
from audio_platform.curation.selection import CurationPolicy
from audio_platform.curation.topsis import DEFAULT_CRITERIA
from audio_platform.definitions import build_definitions
from audio_platform.defs.curation import curated_segments
from audio_platform.defs.resources import CurationResource
from audio_platform.defs.scoring import SEGMENT_SCORES, segment_scores
from audio_platform.defs.vad import vad_segments
from audio_platform.stages import curate_shard, score_shard, transcribe_shard
from audio_platform.storage.lake import Lake
from audio_platform.storage.tables import AUDIO_FILES, CURATION_DECISIONS, SEGMENTS, TRANSCRIPTS, WORDS
from audio_platform_tests.conftest import CORPUS, demo_shard_home, requires_corpus

JFK = CORPUS / "audio/whisper/jfk.flac"


def _segments(file_id: str, spans: list[tuple[float, float]], shard: str = "s-0000") -> pl.DataFrame:
    rows = [
        {c: None for c in SEGMENTS.schema}
        | {
            "segment_id": f"{file_id[:16]}-{int(start * 1000)}",
            "file_id": file_id,
            "shard": shard,
            "start_s": start,
            "end_s": end,
            "duration_s": end - start,
            "speech_prob": 0.9,
            "snr_db": 30.0,
            "clipping_ratio": 0.0,
            "loudness_dbfs": -23.0,
            "dc_offset": 0.0,
            "dnsmos_sig": 3.5,
            "dnsmos_bak": 4.0,
            "dnsmos_ovrl": 3.2,
        }
        for start, end in spans
    ]
    return SEGMENTS.conform(pl.DataFrame(rows, schema=SEGMENTS.schema))


@requires_corpus
def test_transcribe_shard_on_real_speech_reports_speech_seconds_as_it_decodes():
    audio = decode_mono_16k(JFK)
    segments = pl.concat([_segments("f" * 64, [(0.3, 4.0), (4.2, 10.8)]), _segments("e" * 64, [(0.3, 4.0)])])
    done: list[float] = []
    transcripts, words = transcribe_shard(
        segments, lambda file_id: audio, WhisperTranscriber(AsrConfig(cpu_threads=2)), on_speech_done=done.append
    )
    assert transcripts.columns == list(TRANSCRIPTS.schema) and words.columns == list(WORDS.schema)
    assert sorted(transcripts["segment_id"].to_list()) == sorted(segments["segment_id"].to_list())
    assert "country" in " ".join(transcripts["text"].to_list()).lower()
    # The configured language (en) is not detected: no probability.
    assert transcripts["language"].unique().to_list() == ["en"] and transcripts["language_probability"].is_null().all()
    assert done and all(seconds >= 0.0 for seconds in done)
    assert sum(done) == pytest.approx(3.7 + 6.6 + 3.7)
    assert words.filter(pl.col("segment_id") == segments["segment_id"][1]).height > 5


def test_score_and_curate_shard_decide_every_segment():
    segments = _segments("a" * 64, [(0.0, 4.0), (5.0, 5.3)])
    transcripts = TRANSCRIPTS.conform(
        pl.DataFrame(
            {
                "segment_id": segments["segment_id"],
                "file_id": segments["file_id"],
                "shard": segments["shard"],
                "text": ["and so my fellow americans ask not", "hm"],
                "language": ["en", "en"],
                "language_probability": [None, None],
                "avg_logprob": [-0.2, -0.9],
                "no_speech_prob": [0.01, 0.3],
                "compression_ratio": [1.2, 1.0],
                "word_count": [7, 1],
                "asr_model": ["tiny.en", "tiny.en"],
            }
        )
    )
    scores = score_shard(segments, transcripts, DEFAULT_CRITERIA)
    assert scores["topsis_score"].is_between(0.0, 1.0).all() and scores.height == 2
    files = pl.DataFrame({"file_id": ["a" * 64], "source_path": ["/drop/a.wav"], "status": ["ok"]})
    decisions = curate_shard(scores, segments, transcripts, files, CurationPolicy())
    assert decisions.height == 2 and decisions.filter(~pl.col("selected"))["rejection_reason"].null_count() == 0
    assert decisions.filter(pl.col("selected"))["segment_id"].to_list() == [segments["segment_id"][0]]
    # A file that is not ok has no candidates.
    assert (
        curate_shard(
            scores, segments, transcripts, files.with_columns(status=pl.lit("removed")), CurationPolicy()
        ).height
        == 0
    )


@requires_corpus
def test_the_scoring_and_curation_assets_write_what_their_stages_return(tmp_path):
    settings, shard = demo_shard_home(tmp_path)
    defs = build_definitions(settings)
    lake = Lake(settings.lake_root)
    strict = CurationResource(min_score=0.8)  # what a launchpad edit of the policy does
    result = materialize(
        [segment_scores, curated_segments],
        partition_key=shard,
        resources={**defs.resources, "curation": strict},
        instance=DagsterInstance.from_config(str(settings.dagster_home)),
    )
    assert result.success
    segments, transcripts = lake.read(SEGMENTS.name, shard), lake.read(TRANSCRIPTS.name, shard)
    expected_scores = score_shard(segments, transcripts, DEFAULT_CRITERIA)
    assert lake.read(SEGMENT_SCORES, shard).sort("segment_id").equals(expected_scores.sort("segment_id"))
    expected = curate_shard(expected_scores, segments, transcripts, lake.read(AUDIO_FILES.name, shard), strict.policy())
    written = lake.read(CURATION_DECISIONS.name, shard)
    expected = CURATION_DECISIONS.conform(expected)
    assert written.sort("segment_id").equals(expected.sort("segment_id"))
    assert result.asset_materializations_for_node("curated_segments")[0].asset_key == AssetKey("curated_segments")
    selected = written.filter(pl.col("selected"))
    assert 0 < selected.height < written.height and (selected["topsis_score"] >= 0.8).all()


@requires_corpus
def test_dnsmos_is_measured_on_request_and_ranks_once_weighted(tmp_path):
    """Off by default (null columns, no cost); `vad.dnsmos` on the VAD asset measures it, and a
    weight on the `dnsmos_ovrl` criterion makes it count in the score."""
    settings, shard = demo_shard_home(tmp_path)
    defs = build_definitions(settings)
    lake = Lake(settings.lake_root)
    assert lake.read(SEGMENTS.name, shard)["dnsmos_ovrl"].null_count() == lake.read(SEGMENTS.name, shard).height
    vad = type(defs.resources["vad"])(dnsmos=True)
    curation = CurationResource(criteria_overrides={"dnsmos_ovrl": {"weight": 1.0}})
    result = materialize(
        [vad_segments, segment_scores],
        partition_key=shard,
        resources={**defs.resources, "vad": vad, "curation": curation},
        instance=DagsterInstance.from_config(str(settings.dagster_home)),
    )
    assert result.success
    ovrl = lake.read(SEGMENTS.name, shard)["dnsmos_ovrl"]
    assert ovrl.null_count() == 0 and ovrl.is_between(1.0, 5.0).all()
    scores = lake.read(SEGMENT_SCORES, shard)
    unweighted = score_shard(lake.read(SEGMENTS.name, shard), lake.read(TRANSCRIPTS.name, shard), DEFAULT_CRITERIA)
    assert not scores.sort("segment_id")["topsis_score"].equals(unweighted.sort("segment_id")["topsis_score"])


def test_a_shard_written_before_dnsmos_existed_still_scores():
    """rescore on an old shard: its segments have no dnsmos_* columns."""
    old = _segments("f" * 64, [(0.0, 2.0), (3.0, 5.0)]).drop("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl")
    transcripts = pl.DataFrame(
        [
            {c: None for c in TRANSCRIPTS.schema}
            | {"segment_id": sid, "file_id": "f" * 64, "shard": "s-0000", "text": "hello there", "language": "en"}
            for sid in old["segment_id"]
        ],
        schema=TRANSCRIPTS.schema,
    )
    scored = score_shard(old, transcripts, DEFAULT_CRITERIA)
    assert scored.height == 2 and scored["dnsmos_ovrl"].null_count() == 2
    assert scored["topsis_score"].is_between(0.0, 1.0).all()
