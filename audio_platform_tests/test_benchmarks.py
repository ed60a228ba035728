"""Smoke test of the benchmark harness (benchmarks/pipeline_bench.py) on three tiny corpus clips.

Checks the shape of the report only: timings on a shared machine are not assertable.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from audio_platform_tests.conftest import CORPUS, requires_corpus
from audio_platform_tests.kws import KWS, requires_kws
from benchmarks import pipeline_bench as bench

TINY = ("audio/an4/an126-mcen-b.wav", "audio/audiomnist/2_08_8.wav", "audio/keywords/snowboy.wav")


@requires_corpus
@requires_kws
@pytest.mark.e2e
def test_harness_reports_every_stage_system_and_target(tmp_path: Path) -> None:
    results = bench.run_benchmark(CORPUS, long_minutes=0.1, work=tmp_path, only=TINY, kws=KWS, kws_clips=1)

    assert [s.name for s in results.subsets] == [bench.CORPUS, bench.LONG, bench.KWS]
    kws_sources = {Path(rel).parts[1] for rel in results.subsets[2].rel_paths}
    assert len(results.subsets[2].rel_paths) == len(kws_sources) >= 3  # one clip per source, no noise
    assert not any("_background_noise_" in rel for rel in results.subsets[2].rel_paths)
    assert results.subsets[0].rel_paths == tuple(sorted(TINY))
    assert results.subsets[1].rel_paths == (bench.LONG_REL_PATH,)
    assert results.audio_s(bench.LONG) >= 6.0

    stages = bench.stage_table(results)
    assert stages.header == [
        "subset",
        "stage",
        "files",
        "audio s",
        "wall s",
        "CPU s",
        "real time",
        "CPU/wall",
        "peak RSS MiB",
    ]
    assert [(row[0], row[1]) for row in stages.rows] == [
        (subset, stage) for subset in (bench.CORPUS, bench.LONG, bench.KWS, bench.ALL) for stage in bench.STAGES
    ]

    e2e = bench.end_to_end_table(results)
    assert e2e.header == [
        "system",
        *(
            f"{subset} {column}"
            for subset in ("corpus", "long", "kws", "all")
            for column in ("wall s", "CPU s", "real time")
        ),
        "WER corpus",
        "WER long",
        "WER kws",
    ]
    assert [row[0] for row in e2e.rows] == list(bench.SYSTEMS)
    for table in (
        e2e,
        bench.input_table(results),
        bench.comparison_table(results),
        bench.dagster_breakdown_table(results),
        bench.wer_by_source_table(results),
        bench.levers_table(results),
    ):
        assert table.rows
        assert all(len(row) == len(table.header) for row in table.rows)
    sources = ["an4", "audiomnist", "keywords", *sorted(f"kws/{s}" for s in kws_sources), "long"]
    assert [row[0] for row in bench.wer_by_source_table(results).rows] == sources
    levers = bench.levers_table(results)
    assert levers.header == ["source", "reference words", "(b) errors", bench.SHIPPED, *(n for n, _ in bench.LEVERS)]
    assert [row[0] for row in levers.rows] == [*sources, "ASR wall s (all subsets)"]
    assert {run.system for run in results.levers} == {n for n, _ in bench.LEVERS}
    assert len(bench.target_table(results).rows) == 7
    assert results.word_edges is not None and set(results.word_edges.columns) == {"start_ms", "end_ms"}

    # Transcripts are keyed by the subset's own files; the Dagster run computes what the domain stages compute.
    for run in results.runs:
        expected = {s.name: set(s.rel_paths) for s in results.subsets}[run.subset]
        assert set(run.hypotheses) <= expected, run.system
    for subset in (bench.CORPUS, bench.LONG, bench.KWS):
        assert results.wer(bench.PLATFORM_E2E, subset) == results.wer(bench.PLATFORM_STAGES, subset)

    report = bench.render_markdown(results, "test")
    for heading in (
        "## Machine and settings",
        "## Platform stages",
        "## End to end",
        "## Decoding choices",
        "## Targets",
    ):
        assert heading in report
